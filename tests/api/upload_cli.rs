//! `casegate upload` as a patient runs it: the real binary against the real
//! gateway. A hospital-CD-like folder (DICOMDIR, DICOM/ST*/SE*/IM* files of
//! equal names and sizes in different series, OS litter) plus reports goes
//! up once with the right SHA-256s and categories; a run killed mid-file
//! resumes from the gateway's offset; a gateway killed mid-file is waited
//! out and the file continues; a rerun sends nothing; a lost resume
//! state still sends nothing twice; bad links and tokens are refused with
//! a clear sentence and nothing sent; the token never reaches the state
//! folder or the gateway's logs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::common::{spawn_app, spawn_app_with};
use crate::tus::pattern;
use crate::upload_cli_harness::{
    BIN, LoggedGateway, Script, assert_each_once, fake_gateway, patient_folder, recorded_url,
    recording_proxy, scripted_gateway, sha, text, upload, upload_to,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cd_folder_goes_up_once_and_a_rerun_sends_nothing() {
    let app = spawn_app().await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    let expected = patient_folder(&work);
    let run = || {
        upload(&app, &work, &token)
            .args(["--yes", "CD", "Reports"])
            .output()
            .unwrap()
    };

    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("2 studies, 3 series, 8 images")
            && stderr.contains("2 documents")
            && stderr.contains("pathology_report: 1, lab_results: 1"),
        "{stderr}"
    );
    for skipped in [
        "CD/DICOMDIR",
        "CD/.DS_Store",
        "CD/Thumbs.db",
        "CD/._IM0000",
        "Reports/empty.txt: empty file",
    ] {
        assert!(
            stderr.contains(&format!("skipped {skipped}")),
            "{skipped}: {stderr}"
        );
    }
    assert!(
        !stderr.contains("old.pdf"),
        "hidden folders are not entered: {stderr}"
    );
    let manifest = app.patient_manifest(&token).await;
    assert_each_once(&manifest, &expected);
    let studies = manifest["studies"].as_array().unwrap();
    let mut shape: Vec<(String, Vec<usize>)> = studies
        .iter()
        .map(|s| {
            let mut series: Vec<usize> = s["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|se| se["file_ids"].as_array().unwrap().len())
                .collect();
            series.sort();
            (s["study_instance_uid"].as_str().unwrap().to_owned(), series)
        })
        .collect();
    shape.sort();
    assert_eq!(
        shape,
        vec![
            ("1.2.840.1".to_owned(), vec![3, 4]),
            ("1.2.840.2".to_owned(), vec![1])
        ]
    );

    let csv =
        std::fs::read_to_string(work.join(format!("casegate-upload/{case}-receipt.csv"))).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), expected.len(), "{csv}");
    for (shown, (data, category)) in &expected {
        let want = format!(
            "\"{shown}\",{},\"{category}\",\"{h}\",\"{h}\",yes,\"\"",
            data.len(),
            h = sha(data)
        );
        assert!(rows.contains(&want.as_str()), "{want}\n{csv}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10 of 10 files confirmed"), "{stdout}");

    // The same command again: nothing is sent, the receipt is printed.
    let again = run();
    assert!(again.status.success(), "{}", text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("nothing to send") && !stderr.contains("sending "),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("10 of 10 files confirmed"));
    // Without the resume state (another computer, a deleted folder) the
    // manifest alone keeps every file — same-named CD files included —
    // from going up twice.
    std::fs::remove_dir_all(work.join("casegate-upload")).unwrap();
    let fresh = run();
    assert!(fresh.status.success(), "{}", text(&fresh));
    assert!(
        String::from_utf8_lossy(&fresh.stderr)
            .contains("10 of 10 files are on the gateway already"),
        "{}",
        text(&fresh)
    );
    assert_each_once(&app.patient_manifest(&token).await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_file_resumes_from_the_gateway_offset() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 1 << 20).await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    let mut expected = BTreeMap::new();
    std::fs::create_dir_all(work.join("scans")).unwrap();
    for (name, len, seed) in [
        ("big.bin", 40 << 20, 1),
        ("a.pdf", 70_000, 2),
        ("b.pdf", 80_000, 3),
        ("c.pdf", 90_000, 4),
    ] {
        let data = pattern(len, seed);
        std::fs::write(work.join("scans").join(name), &data).unwrap();
        expected.insert(format!("scans/{name}"), (data, "other"));
    }
    let mut child = upload(&app, &work, &token)
        .args(["--yes", "--max-rate", "8000000", "--parallel", "2", "scans"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("big.bin: 30%") {
            child.kill().unwrap(); // SIGKILL: no chance to tidy up
            break;
        }
    }
    child.wait().unwrap();
    assert!(seen.iter().any(|l| l.contains("big.bin: 30%")), "{seen:#?}");

    // The gateway holds part of the file, durably.
    let url =
        recorded_url(&work.join("casegate-upload"), "big.bin").expect("state records the upload");
    let path = url
        .split_once("/tus/")
        .map(|(_, id)| format!("/tus/{id}"))
        .unwrap();
    let head = app
        .tus(reqwest::Method::HEAD, &path, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let offset: u64 = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset > 0 && offset < 40 << 20, "offset {offset}");

    // The same gateway under another address (the link's name, here
    // localhost, after a first run with --server 127.0.0.1): the state
    // keeps paths, so the upload continues.
    assert!(url.starts_with("/tus/"), "{url}");
    let other_name = format!("https://localhost:{}", app.addr.port());
    let out = upload_to(&app, &other_name, &work, &token)
        .args(["--yes", "scans"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sending scans/big.bin (41.94 MB, continuing from"),
        "{stderr}"
    );
    assert_each_once(&app.patient_manifest(&token).await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_or_yes_nothing_is_sent() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    patient_folder(&work);
    let out = upload(&app, &work, &token).arg("Reports").output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run again with --yes"),
        "{}",
        text(&out)
    );
    assert_eq!(
        app.patient_manifest(&token).await["files"],
        serde_json::json!([])
    );
    assert!(!work.join("casegate-upload").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unknown_and_malformed_tokens_send_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    patient_folder(&work);

    let unknown = format!("cgu_{}", "A".repeat(43));
    let out = upload(&app, &work, &unknown)
        .args(["--yes", "Reports"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not accept this upload link") && stderr.contains("coordinator"),
        "{stderr}"
    );
    assert!(!stderr.contains(&unknown[4..]), "{stderr}");

    let out = upload(&app, &work, "cgu_short")
        .args(["--yes", "Reports"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an upload token"),
        "{}",
        text(&out)
    );

    app.clock.advance(31 * 24 * 3600);
    let out = upload(&app, &work, &token)
        .args(["--yes", "Reports"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upload link has expired")
            && stderr.contains("ask your coordinator for a new link"),
        "{stderr}"
    );
    assert_eq!(
        app.patient_manifest(&token).await["files"],
        serde_json::json!([])
    );
    for entry in std::fs::read_dir(work.join("casegate-upload")).unwrap() {
        let stored = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&stored).contains(&token[4..]),
            "token in the state folder"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_checked_before_anything_is_sent() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    patient_folder(&work);
    let ca = app.dir.path().join("certs/dev-ca.pem");
    let with_link = |link: &str, server: Option<String>| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&work)
            .env_remove("CASEGATE_UPLOAD_TOKEN")
            .env_remove("CASEGATE_UPLOAD_LINK")
            .arg("upload")
            .args(["--link", link])
            .arg("--ca")
            .arg(&ca)
            .args(["--yes", "Reports"]);
        if let Some(s) = server {
            cmd.args(["--server", &s]);
        }
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    let port = app.addr.port();
    for bad in [
        format!("http://127.0.0.1:{port}/upload#token={token}"),
        format!("https://127.0.0.1:{port}/upload?token={token}"),
        format!("https://127.0.0.1:{port}/elsewhere#token={token}"),
        format!("https://127.0.0.1:{port}/upload"),
    ] {
        let out = with_link(&bad, None);
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("upload link") || stderr.contains("the link"),
            "{stderr}"
        );
        assert!(!stderr.contains(&token[4..]), "{stderr}");
    }
    assert_eq!(
        app.patient_manifest(&token).await["files"],
        serde_json::json!([])
    );
    // The coordinator's link names the public address; --server reaches
    // this gateway instead.
    let link = format!("https://gateway.invalid/upload#token={token}");
    let out = with_link(&link, Some(app.url("")));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        app.patient_manifest(&token).await["files"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let direct = with_link(
        &format!("https://127.0.0.1:{port}/upload#token={token}"),
        None,
    );
    assert!(direct.status.success(), "{}", text(&direct));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_reaches_the_gateway_logs_or_the_state() {
    let gw = LoggedGateway::start();
    let ca = gw.dir.path().join("certs/dev-ca.pem");
    let (_, token) = gw.create_case().await;
    let work = gw.dir.path().join("patient");
    patient_folder(&work);
    // Through a proxy that records every byte the client sends: the
    // gateway never logs query strings, so its logs alone could not show
    // a token in a URL.
    let port: u16 = gw.base.rsplit(':').next().unwrap().parse().unwrap();
    let (proxy, sent, task) = recording_proxy(&gw.dir.path().join("certs"), port).await;
    let link = format!("{proxy}/upload#token={token}");
    let out = Command::new(BIN)
        .current_dir(&work)
        .env_remove("CASEGATE_UPLOAD_TOKEN")
        .env("CASEGATE_UPLOAD_LINK", &link)
        .arg("upload")
        .arg("--ca")
        .arg(&ca)
        .args(["--yes", "CD", "Reports"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let secret = &token[4..];
    assert!(!text(&out).contains(secret), "the client printed the token");
    std::thread::sleep(Duration::from_millis(300));
    let logs = gw.lines.lock().unwrap().join("\n");
    assert!(
        logs.contains("path=/tus/") && logs.contains("method=PATCH"),
        "the logs show requests: {logs}"
    );
    assert!(!logs.contains(secret), "the token is in the gateway's log");
    task.abort();
    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).into_owned();
    let requests: Vec<&str> = sent
        .split("\r\n")
        .filter(|l| {
            ["GET ", "POST ", "HEAD ", "PATCH ", "DELETE "]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .collect();
    assert!(
        requests.iter().any(|l| l.starts_with("PATCH /tus/")) && requests.len() > 10,
        "{requests:#?}"
    );
    for line in &requests {
        assert!(
            !line.contains(secret),
            "the token is in a request URL: {line}"
        );
    }
    // Nowhere else either: each time it was sent, it was the header.
    assert!(sent.contains(secret), "the proxy saw the requests");
    assert_eq!(
        sent.matches(secret).count(),
        sent.matches(&format!("authorization: Bearer {token}"))
            .count(),
        "the token travelled outside the Authorization header"
    );
    let mut stack: Vec<PathBuf> = vec![work.join("casegate-upload")];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            assert!(
                !String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains(secret),
                "{}",
                p.display()
            );
        }
    }
    assert!(files >= 2, "state and receipt are written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_crash_mid_file_is_waited_out_and_the_file_continues() {
    let mut gw = LoggedGateway::start();
    let ca = gw.dir.path().join("certs/dev-ca.pem");
    let (client, token) = gw.create_case().await;
    let work = gw.dir.path().join("patient");
    std::fs::create_dir_all(&work).unwrap();
    let data = pattern(24 << 20, 9);
    std::fs::write(work.join("scan.bin"), &data).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(&work)
        .env_remove("CASEGATE_UPLOAD_LINK")
        .env("CASEGATE_UPLOAD_TOKEN", &token)
        .arg("upload")
        .args(["--server", &gw.base])
        .arg("--ca")
        .arg(&ca)
        .args(["--yes", "--max-rate", "6000000", "scan.bin"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let crash = line.contains("scan.bin: 30%");
        seen.push(line);
        if crash {
            break;
        }
    }
    gw.crash_and_restart();
    let status = child.wait().unwrap();
    seen.extend(rx.try_iter());
    let said = seen.join("\n");
    assert!(status.success(), "{said}");
    assert!(said.contains("trying again in"), "{said}");
    let continued = said
        .lines()
        .find_map(|l| l.strip_prefix("  scan.bin: continuing from "))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        continued != "0 B",
        "the bytes before the crash were kept: {said}"
    );
    let manifest: Value = client
        .get(format!("{}/api/v1/patient/case", gw.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{manifest:#}");
    assert_eq!(files[0]["sha256"], sha(&data).as_str());
    assert_eq!(files[0]["state"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_case_names_the_file_left_out_and_the_others_still_go() {
    let app = spawn_app_with(|c| c.uploads.max_case_files = 2).await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("papers")).unwrap();
    for (i, name) in ["one.pdf", "two.pdf", "three.pdf"].iter().enumerate() {
        std::fs::write(
            work.join("papers").join(name),
            pattern(10_000, i as u64 + 1),
        )
        .unwrap();
    }
    let out = upload(&app, &work, &token)
        .args(["--yes", "--category", "lab_results", "papers"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the case has reached its size or file limit")
            && stderr.contains("not confirmed"),
        "{stderr}"
    );
    let manifest = app.patient_manifest(&token).await;
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{manifest:#}");
    assert!(files.iter().all(|f| f["category"] == "lab_results"));
    let csv =
        std::fs::read_to_string(work.join(format!("casegate-upload/{case}-receipt.csv"))).unwrap();
    let refused: Vec<&str> = csv.lines().filter(|l| l.contains(",no,")).collect();
    assert_eq!(refused.len(), 1, "{csv}");
    assert!(refused[0].contains("size or file limit"), "{csv}");
    assert!(
        stderr.contains(refused[0].split('"').nth(1).unwrap()),
        "the file is named: {stderr}"
    );

    let bad = upload(&app, &work, &token)
        .args(["--yes", "--category", "x-rays", "papers"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a category"),
        "{}",
        text(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_the_same_command_continues() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 1 << 20).await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("scans")).unwrap();
    let data = pattern(16 << 20, 5);
    std::fs::write(work.join("scans/ct.bin"), &data).unwrap();
    let mut child = upload(&app, &work, &token)
        .args(["--yes", "--max-rate", "4000000", "scans"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("ct.bin: 20%") {
            let pid = child.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-INT", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped. What was sent is safe")),
        "{rest:#?}"
    );
    // The state was written whole: the journal is empty, the JSON file
    // holds the upload.
    let state = work.join("casegate-upload");
    assert_eq!(
        std::fs::metadata(state.join(format!("{case}.journal")))
            .unwrap()
            .len(),
        0
    );
    let json = std::fs::read_to_string(state.join(format!("{case}.json"))).unwrap();
    assert!(
        json.contains("\"uploading\"") && json.contains("/tus/up_"),
        "{json}"
    );

    let out = upload(&app, &work, &token)
        .args(["--yes", "scans"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("continuing from"),
        "{}",
        text(&out)
    );
    let manifest = app.patient_manifest(&token).await;
    assert_eq!(manifest["files"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["files"][0]["sha256"], sha(&data).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_plain_http_never_carries_the_token() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    patient_folder(&work);
    // To its own host and port: reqwest would keep the Authorization
    // header there.
    let redirect = "HTTP/1.1 307 Temporary Redirect\r\n\
        Location: http://127.0.0.1:{port}/api/v1/patient/case\r\n\
        Content-Length: 0\r\nConnection: close\r\n\r\n";
    let (fake, heard, task) = fake_gateway(&app, redirect).await;
    let out = upload_to(&app, &fake, &work, &token)
        .args(["--yes", "Reports"])
        .output()
        .unwrap();
    task.abort();
    assert!(!out.status.success(), "{}", text(&out));
    let heard = String::from_utf8_lossy(&heard.lock().unwrap()).into_owned();
    assert!(
        heard.is_empty(),
        "the redirect was followed over plain http: {heard}"
    );
    assert!(!text(&out).contains(&token[4..]), "{}", text(&out));
    assert_eq!(
        app.patient_manifest(&token).await["files"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_the_gateway_rewrites_or_not_utf8_are_sent_once() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    // Persian names hold a zero-width non-joiner; soft hyphens come from
    // word processors. The gateway stores both as `_`.
    let names = [
        ("گزارش\u{200c}پاتولوژی.pdf", "گزارش_پاتولوژی.pdf", 1),
        ("Befund\u{ad}bericht.pdf", "Befund_bericht.pdf", 2),
    ];
    for (name, _, seed) in names {
        std::fs::write(work.join("docs").join(name), pattern(20_000, seed)).unwrap();
    }
    std::fs::write(work.join("docs/Icon\r"), b"mac folder icon").unwrap();
    // A USB stick written on a Chinese Windows: GBK, not UTF-8.
    use std::os::unix::ffi::OsStrExt;
    let gbk = std::ffi::OsStr::from_bytes(b"\xb2\xa1\xc0\xed.pdf");
    std::fs::write(work.join("docs").join(gbk), pattern(20_000, 3)).unwrap();
    let run = || {
        upload(&app, &work, &token)
            .args(["--yes", "docs"])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("skipped docs/Icon"),
        "{}",
        text(&out)
    );
    let stored = |manifest: &Value| {
        let mut v: Vec<String> = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let mut want: Vec<String> = names.iter().map(|n| n.1.to_owned()).collect();
    want.push("\u{fffd}\u{fffd}\u{fffd}\u{fffd}.pdf".to_owned());
    want.sort();
    assert_eq!(stored(&app.patient_manifest(&token).await), want);

    let again = run();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing to send"),
        "{}",
        text(&again)
    );
    assert_eq!(stored(&app.patient_manifest(&token).await), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_for_the_same_case_waits_its_turn() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("scans")).unwrap();
    let data = pattern(8 << 20, 6);
    std::fs::write(work.join("scans/ct.bin"), &data).unwrap();
    let mut first = upload(&app, &work, &token)
        .args(["--yes", "--max-rate", "4000000", "scans"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("ct.bin: 10%") {
            break;
        }
    }
    let second = upload(&app, &work, &token)
        .args(["--yes", "scans"])
        .output()
        .unwrap();
    assert!(!second.status.success(), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another upload for this case"),
        "{}",
        text(&second)
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(first.wait().unwrap().success(), "{rest:#?}");
    let manifest = app.patient_manifest(&token).await;
    assert_eq!(
        manifest["files"].as_array().unwrap().len(),
        1,
        "{manifest:#}"
    );
    assert_eq!(manifest["files"][0]["sha256"], sha(&data).as_str());
}

/// Writes a resume-state entry for `file` as an earlier run would have.
fn remember_in_state(state: &std::path::Path, case: &str, file: &std::path::Path, entry: Value) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let json = state.join(format!("{case}.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let file = file.canonicalize().unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    let mut entry = entry;
    entry["size"] = meta.len().into();
    entry["mtime_ns"] = (meta.mtime() * 1_000_000_000 + meta.mtime_nsec()).into();
    let key = casegate::hex::encode(file.as_os_str().as_bytes());
    v["files"][key] = entry;
    std::fs::write(&json, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_uploads_are_asked_first_and_gone_ones_start_afresh() {
    let app = spawn_app().await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    std::fs::write(work.join("docs/a.pdf"), pattern(10_000, 1)).unwrap();
    let run = || {
        upload(&app, &work, &token)
            .args(["--yes", "docs"])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", text(&out));

    // b.pdf: an earlier run saw every byte go, the manifest does not list
    // it complete (here: the gateway holds part of it). c.pdf: the
    // gateway has no such upload (404).
    let b = pattern(100_000, 2);
    let c = pattern(50_000, 3);
    std::fs::write(work.join("docs/b.pdf"), &b).unwrap();
    std::fs::write(work.join("docs/c.pdf"), &c).unwrap();
    let path = app
        .tus_create(&token, b.len() as u64, &crate::tus::meta("b.pdf", None))
        .await;
    assert_eq!(
        app.tus_patch(&token, &path, 0, b[..30_000].to_vec())
            .await
            .status(),
        204
    );
    // d.pdf: an unfinished upload the gateway has since terminated (410).
    let d = pattern(40_000, 6);
    std::fs::write(work.join("docs/d.pdf"), &d).unwrap();
    let ended = app
        .tus_create(&token, d.len() as u64, &crate::tus::meta("d.pdf", None))
        .await;
    let deleted = app
        .tus(reqwest::Method::DELETE, &ended, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let state = work.join("casegate-upload");
    for (name, url, data) in [
        ("b.pdf", path.clone(), &b),
        ("c.pdf", "/tus/up_NotAnUploadOfThisCase0".to_owned(), &c),
    ] {
        let entry = serde_json::json!({"upload_url": url, "state": "complete",
            "sha256": sha(data)});
        remember_in_state(&state, &case, &work.join("docs").join(name), entry);
    }
    let entry = serde_json::json!({"upload_url": ended, "state": "uploading", "sha256": null});
    remember_in_state(&state, &case, &work.join("docs/d.pdf"), entry);
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sending docs/b.pdf (100.00 kB, continuing from"),
        "{stderr}"
    );
    let mut expected = BTreeMap::new();
    for (name, data) in [
        ("docs/a.pdf", pattern(10_000, 1)),
        ("docs/b.pdf", b),
        ("docs/c.pdf", c),
        ("docs/d.pdf", d),
    ] {
        expected.insert(name.to_owned(), (data, "other"));
    }
    assert_each_once(&app.patient_manifest(&token).await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_manifest_is_refused_unread() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    patient_folder(&work);
    let huge = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Content-Length: 100000000000\r\nConnection: close\r\n\r\n{\"case_id\":";
    let (fake, _, task) = fake_gateway(&app, huge).await;
    let out = upload_to(&app, &fake, &work, &token)
        .args(["--yes", "Reports"])
        .output()
        .unwrap();
    task.abort();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("case manifest is larger than 64 MiB"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_says_so_at_once() {
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    patient_folder(&work);
    // The system's trust store does not know the gateway's dev CA.
    let out = Command::new(BIN)
        .current_dir(&work)
        .env_remove("CASEGATE_UPLOAD_LINK")
        .env_remove("CASEGATE_CA")
        .env("CASEGATE_UPLOAD_TOKEN", &token)
        .arg("upload")
        .args(["--server", &app.url("")])
        .args(["--yes", "Reports"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("certificate is not trusted")
            && stderr.contains("--ca")
            && !stderr.contains("trying again"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_between_runs_replaces_its_unfinished_upload() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 1 << 20).await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("scans")).unwrap();
    std::fs::write(work.join("scans/ct.bin"), pattern(16 << 20, 7)).unwrap();
    let mut child = upload(&app, &work, &token)
        .args(["--yes", "--max-rate", "4000000", "scans"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().contains("ct.bin: 20%") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let old = recorded_url(&work.join("casegate-upload"), "ct.bin").unwrap();
    let old = format!("/tus/{}", old.rsplit_once("/tus/").unwrap().1);
    assert_eq!(
        app.tus(reqwest::Method::HEAD, &old, &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The patient replaces the file (a new export) and runs again.
    let new = pattern(3 << 20, 8);
    std::fs::write(work.join("scans/ct.bin"), &new).unwrap();
    let out = upload(&app, &work, &token)
        .args(["--yes", "scans"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let status = app
        .tus(reqwest::Method::HEAD, &old, &token)
        .send()
        .await
        .unwrap()
        .status();
    assert!(
        status == 404 || status == 410,
        "old upload still there: {status}"
    );
    let mut expected = BTreeMap::new();
    expected.insert("scans/ct.bin".to_owned(), (new, "other"));
    assert_each_once(&app.patient_manifest(&token).await, &expected);
}

/// The pydicom test CD (`scripts/sample-dicom.sh real DIR`, then
/// `CASEGATE_TEST_SAMPLE_DICOM=DIR`; `scripts/test-all.sh` does both): real
/// DICOMDIR trees with CR, CT and MR studies, files named by number in many
/// folders. Skipped without it, unless `CASEGATE_REQUIRE_SAMPLES` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_dicomdir_cd_goes_up_once() {
    let Some(sample) = std::env::var_os("CASEGATE_TEST_SAMPLE_DICOM") else {
        assert!(
            std::env::var_os("CASEGATE_REQUIRE_SAMPLES").is_none(),
            "CASEGATE_REQUIRE_SAMPLES is set but CASEGATE_TEST_SAMPLE_DICOM is not"
        );
        eprintln!("skipped: CASEGATE_TEST_SAMPLE_DICOM is not set");
        return;
    };
    let cd = std::path::Path::new(&sample).join("dicomdirtests");
    let app = spawn_app().await;
    let (_, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(&work).unwrap();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut stack = vec![cd.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_lowercase();
            if path.is_dir() {
                stack.push(path);
            } else if name != "dicomdir" && std::fs::metadata(&path).unwrap().len() > 0 {
                *expected
                    .entry(sha(&std::fs::read(&path).unwrap()))
                    .or_default() += 1;
            }
        }
    }
    let run = || {
        upload(&app, &work, &token)
            .arg("--yes")
            .arg(&cd)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let manifest = app.patient_manifest(&token).await;
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for f in manifest["files"].as_array().unwrap() {
        // `DICOMDIR-nopatient`, a stray index under another name, is
        // kept but flagged (DICOM, but not an image).
        assert!(f["state"] == "complete" || f["state"] == "flagged", "{f}");
        *stored
            .entry(f["sha256"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(stored, expected);
    assert!(
        !manifest["studies"].as_array().unwrap().is_empty(),
        "{manifest:#}"
    );
    let again = run();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing to send"),
        "{}",
        text(&again)
    );
    assert_eq!(
        app.patient_manifest(&token).await["files"]
            .as_array()
            .unwrap()
            .len(),
        expected.values().sum::<usize>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_takes_no_bytes_is_not_asked_again_and_again() {
    let app = spawn_app().await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    std::fs::write(work.join("docs/a.pdf"), pattern(100_000, 1)).unwrap();
    // Every PATCH is answered 204 with the offset where it started.
    let manifest = format!(r#"{{"case_id":"{case}","files":[],"studies":[]}}"#);
    let script: Script = Arc::new(move |head: &str| {
        let answer = |status: &str, headers: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\n{headers}Tus-Resumable: 1.0.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if head.starts_with("GET /api/v1/patient/case") {
            answer("200 OK", "Content-Type: application/json\r\n", &manifest)
        } else if head.starts_with("POST /tus/") {
            answer(
                "201 Created",
                "Location: /tus/up_Stuck\r\nUpload-Offset: 0\r\n",
                "",
            )
        } else if head.starts_with("HEAD ") {
            answer(
                "200 OK",
                "Upload-Offset: 0\r\nUpload-Length: 100000\r\n",
                "",
            )
        } else {
            answer("204 No Content", "Upload-Offset: 0\r\n", "")
        }
    });
    let (fake, heads, task) = scripted_gateway(&app, script).await;
    let mut child = upload_to(&app, &fake, &work, &token)
        .args(["--yes", "docs"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    // A client asking again at once keeps printing; 20 s in all.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        let paused = line.contains("took none of the bytes sent; trying again in");
        said.push(line);
        if paused {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    task.abort();
    assert!(
        said.iter()
            .any(|l| l.contains("took none of the bytes sent")),
        "{:#?}",
        &said[..said.len().min(20)]
    );
    let patches = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("PATCH "))
        .count();
    assert!(patches <= 2, "{patches} PATCHes before the first pause");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_is_followed_by_asking_the_offset_and_the_hash_still_agrees() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = spawn_app().await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    let data = pattern(100_000, 4);
    std::fs::write(work.join("docs/a.pdf"), &data).unwrap();
    // The first PATCH (from 0) is refused with 409: meanwhile the gateway
    // got 50,000 bytes by another way. HEAD says so; the rest goes from
    // there, and the manifest then lists the whole file.
    let (patches, digest) = (Arc::new(AtomicUsize::new(0)), sha(&data));
    let seen = Arc::clone(&patches);
    let script: Script = Arc::new(move |head: &str| {
        let answer = |status: &str, headers: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\n{headers}Tus-Resumable: 1.0.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let done = seen.load(Ordering::SeqCst) >= 2;
        if head.starts_with("GET /api/v1/patient/case") {
            let files = if done {
                format!(
                    r#"[{{"file_id":"file_1","filename":"a.pdf","category":"other","size":100000,"sha256":"{digest}","state":"complete"}}]"#
                )
            } else {
                "[]".to_owned()
            };
            let body = format!(r#"{{"case_id":"{case}","files":{files},"studies":[]}}"#);
            answer("200 OK", "Content-Type: application/json\r\n", &body)
        } else if head.starts_with("POST /tus/") {
            answer(
                "201 Created",
                "Location: /tus/up_Raced\r\nUpload-Offset: 0\r\n",
                "",
            )
        } else if head.starts_with("HEAD ") {
            answer(
                "200 OK",
                "Upload-Offset: 50000\r\nUpload-Length: 100000\r\n",
                "",
            )
        } else if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            answer(
                "409 Conflict",
                "Content-Type: application/problem+json\r\n",
                "{}",
            )
        } else {
            answer("204 No Content", "Upload-Offset: 100000\r\n", "")
        }
    });
    let (fake, heads, task) = scripted_gateway(&app, script).await;
    let out = upload_to(&app, &fake, &work, &token)
        .args(["--yes", "docs"])
        .output()
        .unwrap();
    task.abort();
    assert!(out.status.success(), "{}", text(&out));
    let offsets: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("PATCH "))
        .filter_map(|h| {
            h.lines().find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("upload-offset:")
                    .map(|v| v.trim().to_owned())
            })
        })
        .collect();
    assert_eq!(offsets, ["0", "50000"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 of 1 files confirmed"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_still_works_while_the_receipt_waits_for_the_gateway() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = spawn_app().await;
    let (case, token) = app.create_case(None).await;
    let work = app.dir.path().join("patient");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    std::fs::write(work.join("docs/a.pdf"), pattern(10_000, 5)).unwrap();
    // The file goes through; the manifest for the receipt never comes.
    let gets = Arc::new(AtomicUsize::new(0));
    let script: Script = Arc::new(move |head: &str| {
        let answer = |status: &str, headers: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\n{headers}Tus-Resumable: 1.0.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if head.starts_with("GET ") {
            if gets.fetch_add(1, Ordering::SeqCst) > 0 {
                return String::new(); // silence
            }
            let body = format!(r#"{{"case_id":"{case}","files":[],"studies":[]}}"#);
            answer("200 OK", "Content-Type: application/json\r\n", &body)
        } else if head.starts_with("POST ") {
            answer(
                "201 Created",
                "Location: /tus/up_Quiet\r\nUpload-Offset: 0\r\n",
                "",
            )
        } else {
            answer("204 No Content", "Upload-Offset: 10000\r\n", "")
        }
    });
    let (fake, _, task) = scripted_gateway(&app, script).await;
    let mut child = upload_to(&app, &fake, &work, &token)
        .args(["--yes", "docs"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("sent docs/a.pdf") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = tx.send((child.wait().unwrap(), rest));
    });
    let (status, rest) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("Ctrl-C was not heard while the receipt waited");
    task.abort();
    assert!(!status.success(), "{rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped. What was sent is safe")),
        "{rest:#?}"
    );
}
