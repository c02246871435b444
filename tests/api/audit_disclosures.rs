//! The accounting of disclosures (`GET /api/v1/cases/{case_id}/disclosures`
//! and `casegate audit disclosures`) through the real server: two centres
//! download a case's files (whole, cut, cut and continued, sealed), and the
//! report and the patient's access view list the same downloads field by
//! field; the report names a checkpoint that covers the entries it
//! reflects; its CSV defuses formulas and its HTML page escapes a hostile
//! file name under a strict CSP; bad formats and unknown cases are refused
//! (and audited); a deleted case still reports its disclosures.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::common::{TestApp, spawn_app};
use crate::fetch_hostile::{Reply, fake_gateway};
use crate::grants::{Centre, grant, register_centre, register_centre_at};
use crate::startup::{start_with, value};
use crate::tus::{pattern, sha256_hex};

const BIN: &str = env!("CARGO_BIN_EXE_casegate");
/// Larger than what the loopback socket buffers hold (receive buffers grow
/// to 32 MiB here), so an abandoned download is really cut.
const BIG: usize = 64 << 20;

/// Reads at least `want` bytes of a download, then drops it (the
/// connection goes away mid-body).
async fn read_then_abandon(resp: reqwest::Response, want: usize) -> Vec<u8> {
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut got = Vec::new();
    let mut body = resp.bytes_stream();
    while got.len() < want {
        got.extend_from_slice(&body.next().await.expect("body ended early").unwrap());
    }
    got
}

async fn download(centre: &Centre, path: &str, token: &str) -> Vec<u8> {
    let resp = centre.get(path, token).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.bytes().await.unwrap().to_vec()
}

fn report_path(case: &str, format: &str) -> String {
    format!("/api/v1/cases/{case}/disclosures?format={format}")
}

/// The JSON report, once no download in it is still running (an abandoned
/// download's lease is settled asynchronously).
async fn settled_report(app: &TestApp, case: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = app
            .request(
                Method::GET,
                &report_path(case, "json"),
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 200);
        let report: Value = resp.json().await.unwrap();
        let running = report["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "in_progress");
        if !running {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "downloads still running: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A case with a big and a small file, two centres, and every kind of
/// download: (case, patient token, big file id, small file id, grant ids).
async fn disclosed_case(app: &TestApp) -> (String, String, String, String, [String; 2]) {
    let (case, patient) = app.create_case(None).await;
    let big = pattern(BIG, 3);
    let small = pattern(70_000, 4);
    app.upload(
        &patient,
        "CT thorax.bin",
        Some("imaging_dicom"),
        &big,
        4 << 20,
    )
    .await;
    app.upload(
        &patient,
        "<script>alert(1)</script>.pdf",
        Some("pathology_report"),
        &small,
        64_000,
    )
    .await;
    let a = register_centre(app, "Clinique Lumière").await;
    let b = register_centre(app, "=HYPERLINK(\"http://evil.example\",\"x\")").await;
    let body =
        |c: &Centre| json!({ "centre_id": c.id, "expires_in_secs": 3600, "max_downloads": 3 });
    let (grant_a, token_a) = grant(app, &case, body(&a)).await;
    let (grant_b, token_b) = grant(app, &case, body(&b)).await;
    let (listing, _) = a.grant_listing(&token_a).await;
    let id_of = |size: usize| {
        listing["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["size"] == size)
            .unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (big_id, small_id) = (id_of(BIG), id_of(70_000));
    let (big_path, small_path) = (
        format!("/api/v1/grant/files/{big_id}"),
        format!("/api/v1/grant/files/{small_id}"),
    );

    // Centre A: the small file whole; the big one cut, then continued.
    assert_eq!(download(&a, &small_path, &token_a).await, small);
    let resp = a.get(&big_path, &token_a).send().await.unwrap();
    let mut got = read_then_abandon(resp, 1 << 20).await;
    let rest = a
        .continue_from(&big_path, &token_a, got.len(), Duration::from_secs(10))
        .await;
    got.extend(rest);
    assert_eq!(sha256_hex(&got), sha256_hex(&big));
    // Centre B: the small file sealed; the big one cut and left.
    let sealed = download(&b, &format!("{small_path}/sealed"), &token_b).await;
    assert!(sealed.len() > small.len());
    let resp = b.get(&big_path, &token_b).send().await.unwrap();
    read_then_abandon(resp, 1 << 20).await;
    (case, patient, big_id, small_id, [grant_a, grant_b])
}

#[tokio::test]
async fn the_report_and_the_patients_view_agree_and_name_their_checkpoint() {
    let app = spawn_app().await;
    let (case, patient, big_id, small_id, [grant_a, grant_b]) = disclosed_case(&app).await;
    let report = settled_report(&app, &case).await;
    assert_eq!(report["case_id"], case.as_str());
    assert_eq!(report["case_state"], "open");
    let rows = report["disclosures"].as_array().unwrap();
    let shape: Vec<(String, &str, &str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["centre_name"].as_str().unwrap().chars().take(8).collect(),
                r["file_id"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                "Clinique".into(),
                small_id.as_str(),
                "plaintext",
                "completed",
                1
            ),
            (
                "Clinique".into(),
                big_id.as_str(),
                "plaintext",
                "completed",
                2
            ),
            (
                "=HYPERLI".into(),
                small_id.as_str(),
                "sealed",
                "completed",
                1
            ),
            ("=HYPERLI".into(), big_id.as_str(), "plaintext", "cut", 1),
        ],
        "{report:#}"
    );
    let (a_big, b_big) = (&rows[1], &rows[3]);
    assert_eq!(a_big["grant_id"], grant_a.as_str());
    assert_eq!(b_big["grant_id"], grant_b.as_str());
    assert_eq!(a_big["filename"], "CT thorax.bin");
    assert_eq!(a_big["category"], "imaging_dicom");
    assert_eq!(rows[0]["filename"], "<script>alert(1)</script>.pdf");
    assert_eq!(a_big["size"], BIG as i64);
    // Cut and continued: at least the whole file was handed over.
    assert!(a_big["bytes_served"].as_i64().unwrap() >= BIG as i64);
    let b_served = b_big["bytes_served"].as_i64().unwrap();
    assert!((1 << 20..BIG as i64).contains(&b_served), "{b_served}");
    for r in rows {
        assert_eq!(r["centre_country"], "CH");
        assert!(r["last_byte_at"].as_str().unwrap() >= r["first_byte_at"].as_str().unwrap());
    }

    // The patient's view: the same downloads, field by field.
    let access = app.get_json("/api/v1/patient/access", &patient).await;
    let accesses = access["accesses"].as_array().unwrap();
    assert_eq!(accesses.len(), rows.len(), "{access:#}");
    for (p, r) in accesses.iter().zip(rows) {
        assert_eq!(p["file_id"], r["file_id"]);
        assert_eq!(p["filename"], r["filename"]);
        assert_eq!(p["category"], r["category"]);
        assert_eq!(p["centre"]["name"], r["centre_name"]);
        assert_eq!(p["centre"]["country"], r["centre_country"]);
        assert_eq!(p["at"], r["first_byte_at"]);
        for field in ["last_byte_at", "bytes_served", "size", "status", "kind"] {
            assert_eq!(p[field], r[field], "{field}");
        }
    }

    // The checkpoint covers every entry the report reflects, and each
    // download's entries are among them.
    let last_seq = report["audit_entries"]["last_seq"].as_i64().unwrap();
    let cp = &report["checkpoint"];
    let size = cp["tree_size"].as_i64().unwrap();
    assert!(size >= last_seq, "{report:#}");
    let note = cp["note"].as_str().unwrap();
    let mut lines = note.lines();
    assert_eq!(lines.next(), cp["origin"].as_str());
    assert_eq!(lines.next(), Some(size.to_string().as_str()));
    assert_eq!(lines.next(), cp["root"].as_str());
    // Each row names its entries: each request's start and end.
    let audit = app.audit().await;
    let counts: Vec<usize> = rows
        .iter()
        .map(|r| r["audit_seqs"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [2, 4, 2, 2], "{report:#}");
    for r in rows {
        let seqs = r["audit_seqs"].as_array().unwrap();
        let mut starts = 0;
        for seq in seqs {
            let seq = seq.as_i64().unwrap();
            assert!(seq <= last_seq);
            let e = &audit[(seq - 1) as usize];
            assert_eq!(e["seq"], seq);
            let action = format!("download.{}", r["kind"].as_str().unwrap());
            assert_eq!(e["action"], action.as_str(), "{e}");
            assert_eq!(
                (&e["file_id"], &e["grant_id"]),
                (&r["file_id"], &r["grant_id"])
            );
            starts += usize::from(e["reason"].as_str().unwrap().starts_with("start: "));
        }
        // One start and one end entry per request.
        assert_eq!(starts * 2, seqs.len(), "{r}");
        assert_eq!(r["requests"].as_u64().unwrap() as usize, starts, "{r}");
    }
    let b_end = &audit[(rows[3]["audit_seqs"][1].as_i64().unwrap() - 1) as usize];
    assert_eq!(b_end["outcome"], "deny", "{b_end}");
    // Reading the report is audited, with the case.
    assert!(audit.iter().any(|e| e["action"] == "audit.disclosures.read"
        && e["outcome"] == "allow"
        && e["case_id"] == case.as_str()
        && e["seq"].as_i64().unwrap() > last_seq));
    // Reading it again signs nothing new: the checkpoint made for the
    // last read already covers what this one reflects (each read's own
    // entry must not make every read sign, and copy, a checkpoint).
    let again = settled_report(&app, &case).await;
    let more = settled_report(&app, &case).await;
    assert_eq!(
        again["checkpoint"]["tree_size"],
        more["checkpoint"]["tree_size"]
    );
    app.stop().await;
}

#[tokio::test]
async fn csv_defuses_formulas_and_html_escapes_under_a_strict_policy() {
    let app = spawn_app().await;
    let (case, ..) = disclosed_case(&app).await;
    settled_report(&app, &case).await;

    let resp = app
        .request(
            Method::GET,
            &report_path(&case, "csv"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[0].starts_with("centre_name,centre_country,centre_id,grant_id,file_id,filename,")
    );
    // The centre named like a formula: quoted (it holds commas and quotes),
    // and its first character is no longer `=`.
    assert!(
        lines[3].starts_with("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",CH,"),
        "{}",
        lines[3]
    );
    assert!(lines.iter().skip(1).all(|l| !l.starts_with('=')));
    assert!(lines[1].contains(",<script>alert(1)</script>.pdf,pathology_report,"));

    let resp = app
        .request(
            Method::GET,
            &report_path(&case, "html"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let page = resp.text().await.unwrap();
    assert!(!page.to_lowercase().contains("<script"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;.pdf"));
    assert!(page.contains("=HYPERLINK(&quot;http://evil.example&quot;"));
    assert!(!page.contains("src=") && !page.contains("href="));
    assert!(page.contains("Read under checkpoint"));
    assert!(page.contains(&case));

    // A bad format is refused before anything is read.
    let resp = app
        .request(
            Method::GET,
            &report_path(&case, "pdf"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "invalid_request"
    );
    let resp = app
        .request(
            Method::GET,
            &format!("/api/v1/cases/{case}/disclosures?format=json&case_id=x"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn unknown_cases_are_404_and_audited() {
    let app = spawn_app().await;
    let unknown = casegate::ids::CaseId::generate().to_string();
    for case in [unknown.as_str(), "case_nonsense"] {
        let resp = app
            .request(
                Method::GET,
                &report_path(case, "json"),
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 404, "{case}");
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");
    }
    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "audit.disclosures.read"
        && e["outcome"] == "deny"
        && e["case_id"] == unknown.as_str()
        && e["reason"] == "no such case"));
    app.stop().await;
}

async fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let ca = app.dir.path().join("ca.pem");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    Command::new(BIN)
        .args(["audit", "disclosures"])
        .args(args)
        .args(["--server", &app.url(""), "--ca", ca.to_str().unwrap()])
        .env("CASEGATE_TOKEN", &app.compliance)
        .env_remove("CASEGATE_CONFIG")
        .env("CASEGATE_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// A crypto-shredded case's downloads stay reported, with ids, centres and
/// times; the names are gone. The CLI writes the CSV and prints a table.
#[tokio::test]
async fn a_deleted_case_still_reports_its_disclosures_and_the_cli_writes_them() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(100_000, 9);
    app.upload(
        &patient,
        "=cmd|' /C calc'!A0.pdf",
        Some("lab_results"),
        &data,
        64_000,
    )
    .await;
    let centre = register_centre(&app, "Centre Oscar").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 });
    let (grant_id, token) = grant(&app, &case, body).await;
    let (_, file_id) = centre.grant_listing(&token).await;
    download(&centre, &format!("/api/v1/grant/files/{file_id}"), &token).await;

    let out_dir = app.dir.path().join("officer");
    std::fs::create_dir_all(&out_dir).unwrap();
    let before = out_dir.join("before.csv");
    let out = cli(
        &app,
        &[&case, "--format", "csv", "--out", before.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(&before).unwrap();
    assert!(
        csv.contains(",'=cmd|' /C calc'!A0.pdf,lab_results,"),
        "{csv}"
    );
    // Never overwritten.
    let again = cli(
        &app,
        &[&case, "--format", "csv", "--out", before.to_str().unwrap()],
    )
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read_to_string(&before).unwrap(), csv);

    let resp = app
        .request(
            Method::DELETE,
            &format!("/api/v1/cases/{case}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    let report = settled_report(&app, &case).await;
    assert_eq!(report["case_state"], "deleted");
    assert!(report["case_deleted_at"].is_string());
    let rows = report["disclosures"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let row = &rows[0];
    assert_eq!(row["file_id"], file_id.as_str());
    assert_eq!(row["grant_id"], grant_id.as_str());
    assert_eq!(row["centre_id"], centre.id.as_str());
    assert_eq!(row["centre_name"], "Centre Oscar");
    assert_eq!(row["status"], "completed");
    assert_eq!(row["bytes_served"], 100_000);
    assert!(row["filename"].is_null() && row["category"].is_null());

    let after = out_dir.join("after.csv");
    let out = cli(
        &app,
        &[&case, "--format", "csv", "--out", after.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(&after).unwrap();
    let line = csv.lines().nth(1).unwrap();
    assert!(
        line.contains(&format!(",{file_id},(deleted),(deleted),plaintext,")),
        "{line}"
    );
    assert!(line.starts_with("Centre Oscar,CH,"), "{line}");

    let out = cli(&app, &[&case]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains(&format!(
        "Accounting of disclosures for case {case} (deleted)"
    )));
    assert!(table.contains("Read under checkpoint: "));
    assert!(
        table.contains("Centre Oscar") && table.contains("completed"),
        "{table}"
    );

    let out = cli(&app, &["case_nonsense"]).await;
    assert!(!out.status.success());
    app.stop().await;
}

/// A hostile "gateway" that answers the report with endless JSON: the CLI
/// stops at its bound instead of filling memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_report_with_a_bound() {
    let app = spawn_app().await;
    let case = casegate::ids::CaseId::generate().to_string();
    let path = format!("/api/v1/cases/{case}/disclosures?format=json");
    let reply = Reply {
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"disclosures":["#.to_vec(),
        junk: 96 << 20,
        content_length: None,
    };
    let fake = fake_gateway(&app, [(path.clone(), reply)].into()).await;
    let ca = app.dir.path().join("ca.pem");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "disclosures", &case, "--ca", ca.to_str().unwrap()])
        .args([
            "--server",
            &format!("https://127.0.0.1:{}", fake.addr.port()),
        ])
        .env("CASEGATE_TOKEN", &app.compliance)
        .env_remove("CASEGATE_CONFIG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("larger than 64 MiB"), "{stderr}");
    let mut written = None;
    for _ in 0..100 {
        written = fake.written.lock().unwrap().get(&path).copied();
        if written.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = written.unwrap();
    assert!(written < 80 << 20, "the CLI read {written} bytes");
    app.stop().await;
}

/// A download cut by kill -9 of the gateway: at the next start its lease is
/// settled from its last recorded progress, so the report shows it — cut,
/// then continued to the end — with no end entry for the killed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_by_kill_9_is_reported_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start_with(dir.path(), &[]);
    let mut child = Killed(child);
    let main = format!(
        "https://{}",
        value(&lines, "listening on https://").unwrap()
    );
    let centre_base = format!(
        "https://{}",
        value(&lines, "centre listener on https://").unwrap()
    );
    let coordinator = value(&lines, "coordinator token: ").unwrap().to_owned();
    let compliance = value(&lines, "compliance token: ").unwrap().to_owned();
    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let client = crate::common::client_trusting(&ca);
    let case: Value = client
        .post(format!("{main}/api/v1/cases"))
        .bearer_auth(&coordinator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case_id = case["case_id"].as_str().unwrap().to_owned();
    let data = pattern(BIG, 12);
    let created = client
        .post(format!("{main}/tus/"))
        .bearer_auth(case["upload_token"].as_str().unwrap())
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", BIG.to_string())
        .header("Upload-Metadata", crate::tus::meta("mri.bin", None))
        .header("Content-Type", "application/offset+octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut centre =
        register_centre_at(&client, &main, &coordinator, &ca, &centre_base, "Centre K").await;
    let grant: Value = client
        .post(format!("{main}/api/v1/cases/{case_id}/grants"))
        .bearer_auth(&coordinator)
        .json(&json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = grant["grant_token"].as_str().unwrap().to_owned();
    let (_, file_id) = centre.grant_listing(&token).await;
    let path = format!("/api/v1/grant/files/{file_id}");
    let resp = centre.get(&path, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The body stays open across the kill: the gateway gets no chance to
    // settle the download itself.
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < 1 << 20 {
        got.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    std::process::Command::new("kill")
        .args(["-KILL", &child.0.id().to_string()])
        .status()
        .unwrap();
    child.0.wait().unwrap();
    drop(body);

    let (child, lines) = start_with(dir.path(), &[]);
    let _child = Killed(child);
    let main = format!(
        "https://{}",
        value(&lines, "listening on https://").unwrap()
    );
    centre.base = format!(
        "https://{}",
        value(&lines, "centre listener on https://").unwrap()
    );
    got.extend(
        centre
            .continue_from(&path, &token, got.len(), Duration::from_secs(10))
            .await,
    );
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    let report: Value = client
        .get(format!("{main}/api/v1/cases/{case_id}/disclosures"))
        .bearer_auth(&compliance)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = report["disclosures"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    assert_eq!(rows[0]["status"], "completed", "{report:#}");
    assert_eq!(rows[0]["requests"], 2);
    // Start of each request, end of the continuation; the killed one has none.
    assert_eq!(
        rows[0]["audit_seqs"].as_array().unwrap().len(),
        3,
        "{report:#}"
    );
    assert!(rows[0]["last_byte_at"].is_string());
    // What the killed request handed over is implied by the continuation.
    assert!(
        rows[0]["bytes_served"].as_i64().unwrap() >= BIG as i64,
        "{report:#}"
    );
}

/// A gateway process, killed when the test ends (also when it fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
