//! The stock Python DICOMweb client (`dicomweb-client` from PyPI) against
//! the real server, over the centre's client certificate and grant token,
//! on real DICOM files (`CASEGATE_TEST_SAMPLE_DICOM`, made by
//! `scripts/sample-dicom.sh real`): searches, a series retrieval, metadata
//! and frames, each compared with pydicom's reading of the originals by
//! `tests/clients/dicomweb_check.py`. Skipped where the Python modules or
//! the samples are missing, unless CASEGATE_REQUIRE_CLIENTS /
//! CASEGATE_REQUIRE_SAMPLES say they must be there (CI sets both).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::spawn_app;
use crate::grants::grant;

fn python_client_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import dicomweb_client, pydicom"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CASEGATE_REQUIRE_CLIENTS").is_none(),
            "dicomweb-client and pydicom are required (CASEGATE_REQUIRE_CLIENTS) but not installed"
        );
        eprintln!("skipped: dicomweb-client / pydicom not installed (see scripts/test-all.sh)");
    }
    ok
}

fn sample_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CASEGATE_TEST_SAMPLE_DICOM").map(PathBuf::from);
    if dir.is_none() {
        assert!(
            std::env::var_os("CASEGATE_REQUIRE_SAMPLES").is_none(),
            "CASEGATE_REQUIRE_SAMPLES is set but CASEGATE_TEST_SAMPLE_DICOM is not"
        );
        eprintln!("skipped: CASEGATE_TEST_SAMPLE_DICOM is not set");
    }
    dir
}

/// Every file under `dir` that starts like a DICOM file (preamble, `DICM`).
fn dicom_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            dicom_files(&path, out);
        } else if std::fs::read(&path).is_ok_and(|b| b.len() > 132 && &b[128..132] == b"DICM") {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn stock_dicomweb_client_reads_a_granted_study_as_uploaded() {
    if !python_client_available() {
        return;
    }
    let Some(samples) = sample_dir() else {
        return;
    };
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let mut files = Vec::new();
    dicom_files(&samples, &mut files);
    assert!(
        files.len() > 20,
        "{} DICOM files in the samples",
        files.len()
    );
    for path in &files {
        let name = path
            .strip_prefix(&samples)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(path).unwrap();
        app.upload(
            &patient,
            &name,
            Some("imaging_dicom"),
            &bytes,
            4 * 1024 * 1024,
        )
        .await;
    }

    // The centre, with its certificate and key on disk for the client.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["centre.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (_, public) = casegate::crypto::sealed_key::generate_keypair();
    use base64::Engine;
    let body = json!({ "name": "Radiology", "country": "CH", "client_cert_pem": cert.pem(),
        "x25519_public_key": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public) });
    let resp = app
        .request(
            reqwest::Method::POST,
            "/api/v1/centres",
            Some(&app.coordinator),
            Some(body),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let centre: Value = resp.json().await.unwrap();
    let body =
        json!({ "centre_id": centre["centre_id"], "expires_in_secs": 3600, "max_downloads": 5 });
    let (_, token) = grant(&app, &case, body).await;
    let dir = app.dir.path();
    let (cert_path, key_path) = (dir.join("centre.pem"), dir.join("centre-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    // Which files the gateway indexed as DICOM, from the manifest.
    let manifest = app.patient_manifest(&patient).await;
    let listed: Vec<Value> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            json!({ "path": samples.join(f["filename"].as_str().unwrap()),
                    "visible": f["dicom"].is_object() && f["state"] == "complete" })
        })
        .collect();
    let spec = json!({
        "url": format!("https://127.0.0.1:{}/dicomweb", app.centre_addr.port()),
        "token": token, "cert": cert_path, "key": key_path,
        "ca": dir.join("certs/dev-ca.pem"), "files": listed,
    });
    let spec_path = dir.join("dicomweb-check.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let clients = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"));
    let ca = dir.join("certs/dev-ca.pem");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(clients.join("dicomweb_check.py"))
            .arg(&spec_path)
            // requests prefers these to a session's own `verify`.
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("CURL_CA_BUNDLE", &ca)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "dicomweb_check.py failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["instances"].as_u64().unwrap() > 20, "{report}");
    assert!(report["frames"].as_u64().unwrap() > 10, "{report}");
    app.stop().await;
}
