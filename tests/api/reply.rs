//! The return channel through the real server: a centre returns its
//! opinion over tus on the centre listener (interrupted and resumed), a
//! coordinator adds a translation of a patient's file, nothing reaches the
//! patient before a coordinator releases it, then the patient downloads
//! both (Range continuation included); other centres never see a reply;
//! every step is audited and no plaintext reaches the disk.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app};
use crate::grants::{Centre, grant, register_centre};
use crate::tus::{meta, pattern, sha256_hex};

/// A tus client for one uploader: the centre listener with a client
/// certificate, or the main listener.
pub struct Uploader<'a> {
    pub client: &'a reqwest::Client,
    /// Where upload paths (and the creation path) are resolved.
    pub base: String,
    pub token: String,
    /// The creation path: `/tus/` or `/api/v1/grant/tus/`.
    pub create: &'static str,
}

impl<'a> Uploader<'a> {
    pub fn centre(centre: &'a Centre, token: &str) -> Uploader<'a> {
        Uploader {
            client: &centre.client,
            base: centre.base.clone(),
            token: token.to_owned(),
            create: "/api/v1/grant/tus/",
        }
    }

    pub fn main(app: &'a TestApp, token: &str) -> Uploader<'a> {
        Uploader {
            client: &app.client,
            base: app.url(""),
            token: token.to_owned(),
            create: "/tus/",
        }
    }

    pub fn tus(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
    }

    /// POST: the status and, on 201, the upload's path.
    pub async fn create(&self, length: usize, metadata: &str) -> (StatusCode, String) {
        let resp = self
            .tus(Method::POST, self.create)
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location)
    }

    pub async fn patch(&self, path: &str, offset: usize, bytes: &[u8]) -> StatusCode {
        self.tus(Method::PATCH, path)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn head(&self, path: &str) -> (StatusCode, Option<usize>) {
        let resp = self.tus(Method::HEAD, path).send().await.unwrap();
        let offset = resp
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (resp.status(), offset)
    }

    /// A whole upload: created, the first half sent, the client "lost",
    /// the offset asked with HEAD and the rest sent from there.
    pub async fn upload_resumed(&self, metadata: &str, data: &[u8]) -> String {
        let (status, path) = self.create(data.len(), metadata).await;
        assert_eq!(status, 201, "create");
        let half = data.len() / 2;
        assert_eq!(self.patch(&path, 0, &data[..half]).await, 204);
        let (status, offset) = self.head(&path).await;
        assert_eq!((status, offset), (StatusCode::OK, Some(half)));
        assert_eq!(self.patch(&path, half, &data[half..]).await, 204);
        path
    }
}

pub fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// A document with a marker no stored byte may contain in the clear.
pub fn document(marker: &str, len: usize, seed: u64) -> Vec<u8> {
    let mut data = b"%PDF-1.7\n".to_vec();
    while data.len() < len {
        data.extend_from_slice(marker.as_bytes());
        data.extend_from_slice(&pattern(4096, seed + data.len() as u64));
    }
    data.truncate(len);
    data
}

fn file_index(manifest: &Value, file_id: &str) -> usize {
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["file_id"] == file_id)
        .unwrap()
}

pub fn file_id_of(manifest: &Value, filename: &str) -> String {
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == filename)
        .unwrap_or_else(|| panic!("{filename} not in {manifest}"))["file_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The file names listed under `key`, sorted.
pub fn filenames(manifest: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = manifest[key]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| f["filename"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every file under `dir` whose bytes contain `marker`.
pub fn files_containing(dir: &std::path::Path, marker: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, marker));
        } else if std::fs::read(&path)
            // The database's -shm and -wal files go away as its last
            // connection closes, which may be while this walks.
            .unwrap_or_else(|e| {
                eprintln!("{}: {e}", path.display());
                Vec::new()
            })
            .windows(marker.len())
            .any(|w| w == marker)
        {
            found.push(path);
        }
    }
    found
}

/// The patient's download of `file_id`: status, ETag and body.
pub async fn patient_get(
    app: &TestApp,
    patient: &str,
    file_id: &str,
    range: Option<&str>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut req = app
        .client
        .get(app.url(&format!("/api/v1/patient/files/{file_id}")))
        .bearer_auth(patient);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), etag, resp.bytes().await.unwrap().to_vec())
}

pub async fn release(app: &TestApp, case: &str, file_id: &str) -> StatusCode {
    let path = format!("/api/v1/cases/{case}/files/{file_id}/release");
    app.request(Method::POST, &path, Some(&app.coordinator), None)
        .await
        .status()
}

#[tokio::test]
async fn the_centre_replies_the_coordinator_translates_and_releases_the_patient_downloads() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "befund.pdf", None, &pattern(70_000, 3), 30_000)
        .await;
    let records = app.patient_manifest(&patient).await;
    let records_id = file_id_of(&records, "befund.pdf");
    let (reviewer, other) = (
        register_centre(&app, "Reviewer").await,
        register_centre(&app, "Other").await,
    );
    let (_, reviewer_token) = grant(
        &app,
        &case,
        json!({"centre_id": reviewer.id, "expires_in_secs": 3600, "max_downloads": 1}),
    )
    .await;
    let (_, other_token) = grant(
        &app,
        &case,
        json!({"centre_id": other.id, "expires_in_secs": 3600, "max_downloads": 1}),
    )
    .await;

    // The centre's opinion, 3 MiB, interrupted and resumed.
    let marker = "OPINION-MARKER-7f3a";
    let opinion = document(marker, 3 * 1024 * 1024 + 17, 11);
    let centre = Uploader::centre(&reviewer, &reviewer_token);
    let path = centre
        .upload_resumed(&meta("Zweitmeinung.pdf", None), &opinion)
        .await;
    assert!(path.starts_with("/api/v1/grant/tus/up_"), "{path}");

    // The coordinator's translation of the patient's report.
    let translation = document("TRANSLATION-MARKER-c4", 200_000, 5);
    let coordinator = Uploader::main(&app, &app.coordinator);
    let metadata = format!(
        "{},case_id {},translation_of {},language {}",
        meta("report-en.pdf", None),
        b64(&case),
        b64(&records_id),
        b64("en-GB")
    );
    coordinator.upload_resumed(&metadata, &translation).await;

    // The coordinator sees both, with their sources.
    let full = app
        .get_json(&format!("/api/v1/cases/{case}"), &app.coordinator)
        .await;
    let opinion_id = file_id_of(&full, "Zweitmeinung.pdf");
    let translation_id = file_id_of(&full, "report-en.pdf");
    let by_id = |id: &str| {
        full["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file_id"] == id)
            .unwrap()
            .clone()
    };
    let o = by_id(&opinion_id);
    assert_eq!(
        o["source"],
        json!({"kind": "centre", "centre_id": reviewer.id})
    );
    assert_eq!(
        (o["category"].as_str(), o["state"].as_str()),
        (Some("second_opinion_report"), Some("complete"))
    );
    assert_eq!(o["sha256"], sha256_hex(&opinion));
    assert_eq!(o["released_at"], Value::Null);
    let t = by_id(&translation_id);
    assert_eq!(t["source"], json!({"kind": "coordinator"}));
    assert_eq!(t["category"], "translation");
    assert_eq!(
        (t["translation_of"].as_str(), t["language"].as_str()),
        (Some(records_id.as_str()), Some("en-GB"))
    );
    assert_eq!(by_id(&records_id)["source"], json!({"kind": "patient"}));

    // The replying centre sees its reply; the other centre sees nothing of it.
    let (listing, _) = reviewer.grant_listing(&reviewer_token).await;
    assert_eq!(filenames(&listing, "replies"), ["Zweitmeinung.pdf"]);
    assert_eq!(filenames(&listing, "files"), ["befund.pdf"]);
    let (listing, _) = other.grant_listing(&other_token).await;
    assert!(filenames(&listing, "replies").is_empty(), "{listing}");
    assert_eq!(filenames(&listing, "files"), ["befund.pdf"]);
    let resp = other
        .get(&format!("/api/v1/grant/files/{opinion_id}"), &other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // A later grant without a file list does not take the reply along.
    let third = register_centre(&app, "Third").await;
    let (_, third_token) = grant(
        &app,
        &case,
        json!({"centre_id": third.id, "expires_in_secs": 3600, "max_downloads": 1}),
    )
    .await;
    let (listing, _) = third.grant_listing(&third_token).await;
    assert_eq!(
        filenames(&listing, "files").len(),
        2,
        "records and translation: {listing}"
    );
    assert!(!filenames(&listing, "files").contains(&"Zweitmeinung.pdf".to_owned()));

    // Nothing reaches the patient before a release.
    assert_eq!(
        filenames(&app.patient_manifest(&patient).await, "files"),
        ["befund.pdf"]
    );
    for id in [&opinion_id, &translation_id] {
        assert_eq!(patient_get(&app, &patient, id, None).await.0, 404);
    }
    // Not even by who downloaded it: the third centre's grant took the
    // translation along, and its download stays out of the patient's
    // access view until the release.
    let resp = third
        .get(
            &format!("/api/v1/grant/files/{translation_id}"),
            &third_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), translation.as_slice());
    let accessed = |access: Value| -> Vec<String> {
        access["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["file_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let access = app.get_json("/api/v1/patient/access", &patient).await;
    assert!(
        !accessed(access.clone()).contains(&translation_id),
        "{access}"
    );

    // Released (twice: the second changes nothing).
    for id in [&opinion_id, &translation_id, &opinion_id] {
        assert_eq!(release(&app, &case, id).await, 204);
    }
    let access = app.get_json("/api/v1/patient/access", &patient).await;
    assert!(
        accessed(access.clone()).contains(&translation_id),
        "{access}"
    );
    let seen = app.patient_manifest(&patient).await;
    assert_eq!(
        filenames(&seen, "files"),
        ["Zweitmeinung.pdf", "befund.pdf", "report-en.pdf"]
    );
    let o = &seen["files"][file_index(&seen, &opinion_id)];
    assert_eq!(
        o["source"],
        json!({"kind": "centre", "centre_id": reviewer.id})
    );
    assert_eq!(o["sha256"], sha256_hex(&opinion));
    assert!(o["released_at"].is_string());

    // The patient downloads both; the opinion in two parts (a Range
    // continuation after a broken download).
    let (status, etag, body) = patient_get(&app, &patient, &translation_id, None).await;
    assert_eq!(
        (status, etag),
        (
            StatusCode::OK,
            Some(format!("\"{}\"", sha256_hex(&translation)))
        )
    );
    assert_eq!(sha256_hex(&body), sha256_hex(&translation));
    let cut = 1_234_567;
    let (status, _, head) = patient_get(
        &app,
        &patient,
        &opinion_id,
        Some(&format!("bytes=0-{}", cut - 1)),
    )
    .await;
    assert_eq!((status, head.len()), (StatusCode::PARTIAL_CONTENT, cut));
    let (status, etag, tail) =
        patient_get(&app, &patient, &opinion_id, Some(&format!("bytes={cut}-"))).await;
    assert_eq!(status, 206);
    assert_eq!(etag, Some(format!("\"{}\"", sha256_hex(&opinion))));
    assert_eq!(sha256_hex(&[head, tail].concat()), sha256_hex(&opinion));
    assert_eq!(
        patient_get(&app, &patient, &opinion_id, Some("bytes=99999999-"))
            .await
            .0,
        416
    );

    // The accounting of disclosures lists what went back to the patient.
    let path = format!("/api/v1/cases/{case}/disclosures");
    let report = app.get_json(&path, &app.compliance).await;
    let events: Vec<(String, String)> = report["to_patient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["filename"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let count = |event: &str, name: &str| {
        events
            .iter()
            .filter(|(e, n)| e == event && n == name)
            .count()
    };
    assert_eq!(
        count("release", "Zweitmeinung.pdf"),
        2,
        "the release and the repeated one: {events:?}"
    );
    assert_eq!(count("release", "report-en.pdf"), 1);
    assert_eq!(
        count("download", "Zweitmeinung.pdf"),
        2,
        "the download and its continuation"
    );
    assert_eq!(count("download", "report-en.pdf"), 1);
    let disclosed = report["disclosures"].as_array().unwrap();
    assert_eq!(
        disclosed.len(),
        1,
        "the third centre's download: {disclosed:?}"
    );
    assert_eq!(disclosed[0]["file_id"], translation_id.as_str());
    let csv = app
        .request(
            Method::GET,
            &format!("{path}?format=csv"),
            Some(&app.compliance),
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.matches(",release_to_patient,").count(), 3, "{csv}");
    assert_eq!(csv.matches(",patient_download,").count(), 3, "{csv}");
    let html = app
        .request(
            Method::GET,
            &format!("{path}?format=html"),
            Some(&app.compliance),
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Released to the patient") && html.contains("downloaded by the patient"));

    // Every step in the audit log, with who did it.
    let audit = app.audit().await;
    let has = |action: &str, role: &str, file: &str| {
        audit.iter().any(|e| {
            e["action"] == action
                && e["role"] == role
                && e["outcome"] == "allow"
                && e["file_id"] == file
        })
    };
    for action in [
        "upload.create",
        "upload.patch",
        "upload.head",
        "upload.complete",
    ] {
        assert!(has(action, "centre", &opinion_id), "{action} by the centre");
        assert!(
            has(action, "coordinator", &translation_id),
            "{action} by the coordinator"
        );
    }
    let created = audit
        .iter()
        .find(|e| e["action"] == "upload.create" && e["file_id"] == opinion_id.as_str())
        .unwrap();
    assert_eq!(created["centre_id"], reviewer.id.as_str(), "{created}");
    // Every entry of the centre's requests names the centre and the grant,
    // so the log's centre_id filter finds the whole reply.
    let actor = format!("centre:{}", reviewer.id);
    let by_centre: Vec<&Value> = audit
        .iter()
        .filter(|e| e["actor"] == actor.as_str())
        .collect();
    assert!(by_centre.len() >= 4);
    for e in by_centre {
        assert_eq!(e["centre_id"], reviewer.id.as_str(), "{e}");
        assert!(
            e["grant_id"]
                .as_str()
                .is_some_and(|g| g.starts_with("grant_")),
            "{e}"
        );
    }
    assert!(has("file.release", "coordinator", &opinion_id));
    assert!(has("file.release", "coordinator", &translation_id));
    assert!(has("patient.download", "patient", &opinion_id));
    assert!(has("patient.download", "patient", &translation_id));
    let denied = audit
        .iter()
        .filter(|e| e["action"] == "patient.download" && e["outcome"] == "deny")
        .count();
    assert!(denied >= 2, "unreleased downloads are audited denials");

    // No plaintext at rest: not in the objects, not in the database.
    let dir = app.stop().await;
    for marker in [marker, "TRANSLATION-MARKER-c4"] {
        let leaked = files_containing(&dir.path().join("data"), marker.as_bytes());
        assert!(leaked.is_empty(), "{marker} in {leaked:?}");
    }
}

/// tuspy, unchanged, returns a centre's opinion over mutual TLS: 3 MiB,
/// interrupted after two chunks and resumed by a fresh uploader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_returns_an_opinion_over_mutual_tls() {
    use crate::clients::{available, clients_dir};
    let mut probe = std::process::Command::new("python3");
    probe.args(["-c", "import tusclient"]);
    if !available("tuspy (pip install tuspy)", &mut probe) {
        return;
    }
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "scan.pdf", None, b"records", 100)
        .await;
    let centre = register_centre(&app, "Reviewer").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({"centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1}),
    )
    .await;
    let opinion = document("TUSPY-OPINION-MARKER", 3 * 1024 * 1024, 21);
    let dir = app.dir.path();
    let (file, cert, key) = (
        dir.join("opinion.pdf"),
        dir.join("c.pem"),
        dir.join("k.pem"),
    );
    std::fs::write(&file, &opinion).unwrap();
    std::fs::write(&cert, &centre.identity.0).unwrap();
    std::fs::write(&key, &centre.identity.1).unwrap();
    let out = std::process::Command::new("python3")
        .current_dir(clients_dir())
        .arg("tuspy_upload.py")
        .arg(&file)
        .arg("opinion.pdf")
        .arg("second_opinion_report")
        .env(
            "CASEGATE_TUS_URL",
            format!("{}/api/v1/grant/tus/", centre.base),
        )
        .env("CASEGATE_TOKEN", &token)
        .env("CASEGATE_CLIENT_CERT", &cert)
        .env("CASEGATE_CLIENT_KEY", &key)
        .env("REQUESTS_CA_BUNDLE", dir.join("certs/dev-ca.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tuspy failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (listing, _) = centre.grant_listing(&token).await;
    let reply = &listing["replies"][0];
    assert_eq!(reply["filename"], "opinion.pdf");
    assert_eq!(reply["state"], "complete");
    assert_eq!(reply["sha256"], sha256_hex(&opinion));
    // Without the certificate the same token gets nowhere.
    let resp = app
        .client
        .post(format!("{}/api/v1/grant/tus/", centre.base))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1")
        .header("Upload-Metadata", meta("x.pdf", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let dir = app.stop().await;
    let leaked = files_containing(&dir.path().join("data"), b"TUSPY-OPINION-MARKER");
    assert!(leaked.is_empty(), "{leaked:?}");
}
