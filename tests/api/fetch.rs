//! The README walkthrough's last step, end to end with the real binary:
//! `casegate centre keygen`, registration, a grant, `casegate fetch` —
//! files match byte for byte, land under their names grouped by category
//! and DICOM series, never outside --out, and an interrupted fetch resumes.

use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::spawn_app;
use crate::grants::grant;
use crate::tus::pattern;

const BIN: &str = env!("CARGO_BIN_EXE_casegate");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_register_grant_fetch_resume() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(Some("walkthrough")).await;
    let report = pattern(300_000, 71);
    let evil = pattern(1_000, 72);
    use casegate::upload::dicom::testdata::ct_file;
    let ct = ct_file("1.2.3.4", "1.2.3.4.5", "Doe^Jane", 100_000);
    app.upload(
        &patient,
        "Befund Pathologie.pdf",
        Some("pathology_report"),
        &report,
        100_000,
    )
    .await;
    app.upload(
        &patient,
        "../../../escape.txt",
        Some("patient_questions"),
        &evil,
        1_000,
    )
    .await;
    app.upload(&patient, "IM0001.dcm", Some("imaging_dicom"), &ct, 50_000)
        .await;

    let keys = app.dir.path().join("centre-keys");
    let out = Command::new(BIN)
        .args(["centre", "keygen", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["centre.pem", "centre-key.pem", "x25519.key", "x25519.pub"] {
        assert!(keys.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(keys.join("x25519.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        !Command::new(BIN)
            .args(["centre", "keygen", "--out"])
            .arg(&keys)
            .status()
            .unwrap()
            .success(),
        "never overwrites keys"
    );

    let read = |f: &str| std::fs::read_to_string(keys.join(f)).unwrap();
    let centre_id = app
        .register_centre_from(
            "Institut Beispiel",
            &read("centre.pem"),
            &read("x25519.pub"),
        )
        .await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre_id, "expires_in_secs": 3600, "max_downloads": 3 }),
    )
    .await;

    let dest = app.dir.path().join("received");
    let fetch = || {
        Command::new(BIN)
            .arg("fetch")
            .args([
                "--server",
                &format!("https://127.0.0.1:{}", app.centre_addr.port()),
            ])
            .args(["--grant", &token])
            .arg("--cert")
            .arg(keys.join("centre.pem"))
            .arg("--key")
            .arg(keys.join("centre-key.pem"))
            .arg("--x25519-key")
            .arg(keys.join("x25519.key"))
            .arg("--out")
            .arg(&dest)
            .arg("--ca")
            .arg(app.dir.path().join("certs/dev-ca.pem"))
            .output()
            .unwrap()
    };
    let out = fetch();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report_path = dest.join("pathology_report/Befund Pathologie.pdf");
    assert_eq!(std::fs::read(&report_path).unwrap(), report);
    assert_eq!(
        std::fs::read(dest.join("patient_questions/_.._.._escape.txt")).unwrap(),
        evil
    );
    assert_eq!(
        std::fs::read(dest.join("DICOM/1.2.3.4/1.2.3.4.5/1.2.3.4.5.6.dcm")).unwrap(),
        ct
    );
    assert!(!app.dir.path().join("escape.txt").exists());
    // Patient records are owner-only on the centre's machine too.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&report_path), 0o600);
        assert_eq!(mode(report_path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dest), 0o700);
    }

    // Interrupted: the report is gone, a partial sealed download is left.
    let centre_client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem).unwrap())
        .identity(
            reqwest::Identity::from_pem(
                format!(
                    "{}{}",
                    std::fs::read_to_string(keys.join("centre.pem")).unwrap(),
                    std::fs::read_to_string(keys.join("centre-key.pem")).unwrap()
                )
                .as_bytes(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let info: Value = centre_client
        .get(format!(
            "https://127.0.0.1:{}/api/v1/grant",
            app.centre_addr.port()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report_id = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["size"] == 300_000)
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let partial = centre_client
        .get(format!(
            "https://127.0.0.1:{}/api/v1/grant/files/{report_id}/sealed",
            app.centre_addr.port()
        ))
        .bearer_auth(&token)
        .header("Range", "bytes=0-99999")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::remove_file(&report_path).unwrap();
    let sealed_partial = dest.join(format!(".casegate-partial/{report_id}.sealed"));
    std::fs::create_dir_all(sealed_partial.parent().unwrap()).unwrap();
    std::fs::write(&sealed_partial, &partial).unwrap();
    let out = fetch();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&report_path).unwrap(), report);
    assert!(!sealed_partial.exists());
    assert!(
        !dest.join(".casegate-partial").exists(),
        "nothing left to resume"
    );
    // Two downloads from byte 0 of the report so far: the first fetch and
    // the partial one above; the resume was a continuation.
    let list: Value = app
        .get_json(&format!("/api/v1/cases/{case}/grants"), &app.coordinator)
        .await;
    let used = list["grants"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file_id"] == report_id.as_str())
        .unwrap()["downloads"]
        .clone();
    assert_eq!(used, 2);

    // A wrong X25519 key cannot open the sealed keys.
    std::fs::remove_file(&report_path).unwrap();
    let wrong = casegate::crypto::sealed_key::generate_keypair().0;
    std::fs::remove_file(keys.join("x25519.key")).unwrap();
    casegate::fsutil::create_secret_file(
        &keys.join("x25519.key"),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(wrong.as_ref())
            .as_bytes(),
    )
    .unwrap();
    let out = fetch();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_verbs_over_http() {
    let app = spawn_app().await;
    let ca = app.dir.path().join("certs/dev-ca.pem");
    let server = app.url("");
    let admin = |args: &[&str]| -> (bool, Value, String) {
        let out = Command::new(BIN)
            .arg("admin")
            .args(args)
            .args(["--server", &server, "--token", &app.coordinator])
            .arg("--ca")
            .arg(&ca)
            .env_remove("CASEGATE_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        (
            out.status.success(),
            serde_json::from_str(&stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, created, _) = admin(&["case", "create", "--reference", "CLI-1"]);
    assert!(ok);
    let case = created["case_id"].as_str().unwrap().to_owned();
    let patient = created["upload_token"].as_str().unwrap().to_owned();
    app.upload(&patient, "x.pdf", None, &pattern(10_000, 3), 10_000)
        .await;

    let keys = app.dir.path().join("k");
    assert!(
        Command::new(BIN)
            .args(["centre", "keygen", "--out"])
            .arg(&keys)
            .status()
            .unwrap()
            .success()
    );
    let cert = keys.join("centre.pem").display().to_string();
    let key = keys.join("x25519.pub").display().to_string();
    let (ok, centre, err) = admin(&[
        "centre",
        "register",
        "--name",
        "CLI Centre",
        "--country",
        "NL",
        "--cert",
        &cert,
        "--x25519-pub",
        &key,
    ]);
    assert!(ok, "{err}");
    let centre_id = centre["centre_id"].as_str().unwrap().to_owned();
    let (ok, g, err) = admin(&[
        "grant",
        "create",
        &case,
        "--centre",
        &centre_id,
        "--expires-in",
        "600",
        "--max-downloads",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(g["grant_token"].as_str().unwrap().starts_with("cgg_"));
    let (ok, list, _) = admin(&["grant", "list", &case]);
    assert!(ok);
    assert_eq!(list["grants"][0]["state"], "active");
    let (ok, _, _) = admin(&["centre", "disable", &centre_id]);
    assert!(ok);
    let (_, list, _) = admin(&["grant", "list", &case]);
    assert_eq!(
        list["grants"][0]["state"], "revoked",
        "disabling a centre revokes its grants"
    );
    let (ok, _, err) = admin(&["case", "show", "case_00000000000000000000000000000000"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, _) = admin(&["case", "delete", &case]);
    assert!(ok);
    app.stop().await;
}
