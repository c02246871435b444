//! `casegate reply` end to end: a centre returns its opinion over mutual
//! TLS with progress, is killed mid-file and resumes from the gateway's
//! offset, a rerun sends nothing; a refused category or a grant without
//! replies sends nothing and says why.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::{TestApp, spawn_app_with};
use crate::grants::{Centre, grant, register_centre};
use crate::tus::{pattern, sha256_hex};
use crate::upload_cli_harness::{BIN, text};

/// `casegate reply` as `centre` with `token`, working in `work`.
fn reply(app: &TestApp, centre: &Centre, work: &Path, token: &str) -> Command {
    std::fs::create_dir_all(work).unwrap();
    std::fs::write(work.join("centre.pem"), &centre.identity.0).unwrap();
    std::fs::write(work.join("centre-key.pem"), &centre.identity.1).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(work)
        .env_remove("CASEGATE_GRANT")
        .env_remove("CASEGATE_CA")
        .arg("reply")
        .args(["--server", &centre.base])
        .args(["--grant", token])
        .args(["--cert", "centre.pem", "--key", "centre-key.pem"])
        .arg("--ca")
        .arg(app.dir.path().join("certs/dev-ca.pem"))
        .stdin(Stdio::null());
    cmd
}

async fn replying_centre(app: &TestApp, may_reply: bool) -> (Centre, String) {
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "records.pdf", None, b"records", 100)
        .await;
    let centre = register_centre(app, "Reviewer").await;
    let body = json!({"centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1, "may_reply": may_reply});
    let (_, token) = grant(app, &case, body).await;
    (centre, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_killed_mid_file_resumes_and_a_rerun_sends_nothing() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 1 << 20).await;
    let (centre, token) = replying_centre(&app, true).await;
    let work = app.dir.path().join("centre");
    let opinion = pattern(12 << 20, 9);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("opinion.pdf"), &opinion).unwrap();
    let mut child = reply(&app, &centre, &work, &token)
        .args(["--yes", "--max-rate", "4000000", "opinion.pdf"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("opinion.pdf: 30%") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("opinion.pdf: 30%")),
        "{seen:#?}"
    );

    let out = reply(&app, &centre, &work, &token)
        .args(["--yes", "opinion.pdf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("continuing from"),
        "{}",
        text(&out)
    );
    let (listing, _) = centre.grant_listing(&token).await;
    let replies = listing["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "{listing}");
    assert_eq!(replies[0]["filename"], "opinion.pdf");
    assert_eq!(replies[0]["category"], "second_opinion_report");
    assert_eq!(replies[0]["sha256"], sha256_hex(&opinion));

    let out = reply(&app, &centre, &work, &token)
        .args(["--yes", "opinion.pdf"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to send"),
        "{}",
        text(&out)
    );
    let audit = app.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "upload.complete" && e["role"] == "centre")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_replies_send_nothing_and_say_why() {
    let app = spawn_app_with(|_| {}).await;
    let (centre, token) = replying_centre(&app, false).await;
    let work = app.dir.path().join("centre");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("opinion.pdf"), b"%PDF opinion").unwrap();
    let out = reply(&app, &centre, &work, &token)
        .args(["--yes", "--category", "translation", "opinion.pdf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("second_opinion_report or other"),
        "{}",
        text(&out)
    );
    let out = reply(&app, &centre, &work, "cgu_not-a-grant")
        .args(["--yes", "opinion.pdf"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a grant token"),
        "{}",
        text(&out)
    );
    let out = reply(&app, &centre, &work, &token)
        .args(["--yes", "opinion.pdf"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        text(&out)
    );
    let (listing, _) = centre.grant_listing(&token).await;
    assert_eq!(listing["replies"], json!([]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_verbs_issue_a_grant_without_replies_and_release_a_file() {
    let app = spawn_app_with(|_| {}).await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "records.pdf", None, b"records", 100)
        .await;
    let centre = register_centre(&app, "Reviewer").await;
    let server = app.url("");
    let admin = |args: &[&str]| {
        Command::new(BIN)
            .arg("admin")
            .args(args)
            .args(["--server", &server, "--token", &app.coordinator])
            .arg("--ca")
            .arg(app.dir.path().join("certs/dev-ca.pem"))
            .env_remove("CASEGATE_TOKEN")
            .output()
            .unwrap()
    };
    let out = admin(&[
        "grant",
        "create",
        &case,
        "--centre",
        &centre.id,
        "--no-reply",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let grants = app
        .get_json(&format!("/api/v1/cases/{case}/grants"), &app.coordinator)
        .await;
    assert_eq!(grants["grants"][0]["may_reply"], false);

    let coordinator = crate::reply::Uploader::main(&app, &app.coordinator);
    let metadata = format!(
        "{},case_id {}",
        crate::tus::meta("summary.pdf", None),
        crate::reply::b64(&case)
    );
    coordinator.upload_resumed(&metadata, b"a summary").await;
    let manifest = app
        .get_json(&format!("/api/v1/cases/{case}"), &app.coordinator)
        .await;
    let file_id = crate::reply::file_id_of(&manifest, "summary.pdf");
    let out = admin(&["case", "release", &case, "../../x"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        app.patient_manifest(&patient).await["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = admin(&["case", "release", &case, &file_id]);
    assert!(out.status.success(), "{}", text(&out));
    let seen = app.patient_manifest(&patient).await;
    assert_eq!(
        crate::reply::filenames(&seen, "files"),
        ["records.pdf", "summary.pdf"]
    );
    app.stop().await;
}
