//! Download grants through both listeners with real mutual TLS: issuing,
//! listing, plaintext and sealed downloads with ranges, and every refusal
//! (no certificate, another centre's certificate, forged token, expired,
//! exhausted, revoked — also mid-download — file outside the grant,
//! deleted case), each audited.

use casegate::crypto::format::{ObjectHeader, decrypt_object};
use casegate::crypto::{FileKey, sealed_key};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::common::TestApp;
use crate::common::spawn_app;
use crate::tus::{object_digest_hex, pattern, sha256_hex};

pub struct Centre {
    pub id: String,
    pub client: reqwest::Client,
    pub secret: Zeroizing<[u8; 32]>,
    pub base: String,
    /// Its client certificate and key (PEM), for clients other than reqwest.
    #[allow(dead_code)] // the reply tests hand them to tuspy and `casegate reply`
    pub identity: (String, String),
}

fn client_with_identity(app: &TestApp, identity: Option<(&str, &str)>) -> reqwest::Client {
    client_with_identity_for(&app.ca_pem, identity)
}

fn client_with_identity_for(ca_pem: &[u8], identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap());
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

pub async fn register_centre(app: &TestApp, name: &str) -> Centre {
    register_centre_at(
        &app.client,
        &app.url(""),
        &app.coordinator,
        &app.ca_pem,
        &format!("https://127.0.0.1:{}", app.centre_addr.port()),
        name,
    )
    .await
}

/// Registers a centre with the gateway at `main_base` (as its coordinator)
/// and returns it ready to talk to `centre_base`.
pub async fn register_centre_at(
    client: &reqwest::Client,
    main_base: &str,
    coordinator: &str,
    ca_pem: &[u8],
    centre_base: &str,
    name: &str,
) -> Centre {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["centre.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (secret, public) = sealed_key::generate_keypair();
    use base64::Engine;
    let body = json!({
        "name": name, "country": "CH", "client_cert_pem": cert.pem(),
        "x25519_public_key": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
    });
    let resp = client
        .post(format!("{main_base}/api/v1/centres"))
        .bearer_auth(coordinator)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    Centre {
        id: v["centre_id"].as_str().unwrap().to_owned(),
        client: client_with_identity_for(ca_pem, Some((&cert.pem(), &key.serialize_pem()))),
        secret,
        base: centre_base.to_owned(),
        identity: (cert.pem(), key.serialize_pem()),
    }
}

pub async fn grant(app: &TestApp, case: &str, body: Value) -> (String, String) {
    let resp = app
        .request(
            Method::POST,
            &format!("/api/v1/cases/{case}/grants"),
            Some(&app.coordinator),
            Some(body),
        )
        .await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let v: Value = resp.json().await.unwrap();
    (
        v["grant_id"].as_str().unwrap().to_owned(),
        v["grant_token"].as_str().unwrap().to_owned(),
    )
}

impl Centre {
    /// Retries a Range continuation from `from` until it is served, for at
    /// most `patience`: a cut or abandoned download's lease is settled
    /// asynchronously, and until then the continuation may be refused.
    pub async fn continue_from(
        &self,
        path: &str,
        token: &str,
        from: usize,
        patience: std::time::Duration,
    ) -> Vec<u8> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let resp = self
                .get(path, token)
                .header("Range", format!("bytes={from}-"))
                .send()
                .await
                .unwrap();
            if resp.status() == 206 {
                return resp.bytes().await.unwrap().to_vec();
            }
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert!(
                std::time::Instant::now() < deadline,
                "continuation from {from} refused: {status} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The grant's file list (`GET /api/v1/grant`) and its first file's id.
    pub async fn grant_listing(&self, token: &str) -> (Value, String) {
        let info: Value = self
            .get("/api/v1/grant", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let file_id = info["files"][0]["file_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (info, file_id)
    }

    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
    }
}

async fn code(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["code"].as_str().unwrap_or("").to_owned(), id)
}

#[tokio::test]
async fn grant_download_plaintext_and_sealed() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let a = pattern(200_000, 41);
    let b = pattern(70_000, 42);
    app.upload(
        &patient,
        "Pathologie Bericht — Müller.pdf",
        Some("pathology_report"),
        &a,
        64_000,
    )
    .await;
    app.upload(&patient, "labs.csv", Some("lab_results"), &b, 64_000)
        .await;
    let centre = register_centre(&app, "Clinique Lumière").await;
    let (grant_id, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 5 }),
    )
    .await;

    let (info, _) = centre.grant_listing(&token).await;
    assert_eq!(info["grant_id"], grant_id.as_str());
    assert_eq!(info["case_id"], case.as_str());
    let files = info["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let fa = files.iter().find(|f| f["size"] == 200_000).unwrap();
    assert_eq!(fa["filename"], "Pathologie Bericht — Müller.pdf");
    assert_eq!(fa["sha256"], sha256_hex(&a));
    assert_eq!(fa["downloads_left"], 5);
    let file_a = fa["file_id"].as_str().unwrap().to_owned();

    // Plaintext, whole.
    let resp = centre
        .get(&format!("/api/v1/grant/files/{file_a}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["etag"],
        format!("\"{}\"", sha256_hex(&a)).as_str()
    );
    assert_eq!(resp.headers()["content-length"], "200000");
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''Pathologie%20Bericht%20%E2%80%94%20M%C3%BCller.pdf"),
        "{disposition}"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), a.as_slice());

    // Plaintext, a range across chunk boundaries (a continuation).
    let resp = centre
        .get(&format!("/api/v1/grant/files/{file_a}"), &token)
        .header("Range", "bytes=65530-131080")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 65530-131080/200000");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &a[65530..=131080]);

    // Sealed: the stored object and its file key sealed to the centre.
    let resp = centre
        .get(&format!("/api/v1/grant/files/{file_a}/sealed"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sealed_key_header = resp.headers()["casegate-sealed-key"]
        .to_str()
        .unwrap()
        .to_owned();
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let object = resp.bytes().await.unwrap().to_vec();
    assert_eq!(etag, format!("\"{}\"", object_digest_hex(&object)));
    let header = ObjectHeader::decode(&object).unwrap();
    let dek = sealed_key::open(
        &centre.secret,
        &sealed_key::info(&grant_id, &case, &file_a),
        &object[..32],
        &sealed_key::decode(&sealed_key_header).unwrap(),
    )
    .unwrap();
    let key = FileKey::from_parts(header.key_id, dek.as_slice().try_into().unwrap());
    assert_eq!(decrypt_object(&key, &case, &file_a, &object).unwrap(), a);
    // A sealed range.
    let resp = centre
        .get(&format!("/api/v1/grant/files/{file_a}/sealed"), &token)
        .header("Range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &object[100..]);

    // Coordinator's view: state and use counts; patient's view: who and when.
    let list: Value = app
        .get_json(&format!("/api/v1/cases/{case}/grants"), &app.coordinator)
        .await;
    let g = &list["grants"][0];
    assert_eq!(g["state"], "active");
    let used = g["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file_id"] == file_a.as_str())
        .unwrap();
    assert_eq!(
        used["downloads"], 2,
        "two downloads from byte 0; ranges from later bytes are continuations"
    );
    let access: Value = app.get_json("/api/v1/patient/access", &patient).await;
    let accesses = access["accesses"].as_array().unwrap();
    assert_eq!(accesses.len(), 2);
    assert_eq!(accesses[0]["centre"]["name"], "Clinique Lumière");
    assert_eq!(accesses[0]["centre"]["country"], "CH");
    assert_eq!(accesses[0]["filename"], "Pathologie Bericht — Müller.pdf");

    // Grant routes exist only on the centre listener.
    let resp = app
        .client
        .get(app.url("/api/v1/grant"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn every_refusal_has_its_status_and_is_audited() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(100_000, 51);
    app.upload(&patient, "a.bin", None, &data, 100_000).await;
    app.upload(&patient, "b.bin", None, &data[..10], 100).await;
    let m = app.patient_manifest(&patient).await;
    let id_of = |n: &str| {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["filename"] == n)
            .unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (fa, fb) = (id_of("a.bin"), id_of("b.bin"));
    let centre = register_centre(&app, "Centre A").await;
    let other = register_centre(&app, "Centre B").await;
    let (_, token) = grant(&app, &case, json!({ "centre_id": centre.id, "file_ids": [fa], "expires_in_secs": 600, "max_downloads": 1 })).await;
    let (other_grant, other_token) = grant(
        &app,
        &case,
        json!({ "centre_id": other.id, "expires_in_secs": 600, "max_downloads": 1 }),
    )
    .await;
    let no_cert = client_with_identity(&app, None);
    let path = format!("/api/v1/grant/files/{fa}");
    let mut audited = Vec::new();

    let (s, c, id) = code(
        no_cert
            .get(format!("{}{path}", centre.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), c.as_str()),
        (401, "client_certificate_required")
    );
    audited.push(id);
    let (s, c, id) = code(other.get(&path, &token).send().await.unwrap()).await;
    assert_eq!((s.as_u16(), c.as_str()), (403, "certificate_mismatch"));
    audited.push(id);
    let (s, c, id) = code(centre.get(&path, &other_token).send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), c.as_str()),
        (403, "certificate_mismatch"),
        "another grant's token"
    );
    audited.push(id);
    let (s, c, id) = code(
        centre
            .get(&path, &format!("cgg_{}", "Q".repeat(43)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s.as_u16(), c.as_str()), (401, "unauthenticated"));
    audited.push(id);
    let (s, c, id) = code(centre.get(&path, &app.coordinator).send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), c.as_str()),
        (401, "unauthenticated"),
        "operator tokens mean nothing here"
    );
    audited.push(id);
    let (s, c, id) = code(
        centre
            .get(&format!("/api/v1/grant/files/{fb}"), &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), c.as_str()),
        (404, "not_found"),
        "file outside the grant"
    );
    audited.push(id);

    // max_downloads 1: a partial first download, its continuation, then no more.
    let resp = centre
        .get(&path, &token)
        .header("Range", "bytes=0-999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    let resp = centre
        .get(&path, &token)
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[1000..]);
    let (s, c, id) = code(centre.get(&path, &token).send().await.unwrap()).await;
    assert_eq!((s.as_u16(), c.as_str()), (403, "grant_exhausted"));
    audited.push(id);
    let (s, c, id) = code(
        centre
            .get(&path, &token)
            .header("Range", "bytes=50-60")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), c.as_str()),
        (403, "grant_exhausted"),
        "bytes served stay under max × size"
    );
    audited.push(id);
    let (s, _, _) = code(
        centre
            .get(&path, &token)
            .header("Range", "bytes=100000-")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s.as_u16(), 416);

    // Revoked, then expired.
    let resp = app
        .request(
            Method::DELETE,
            &format!("/api/v1/grants/{other_grant}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    let (s, c, id) = code(
        other
            .get("/api/v1/grant", &other_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s.as_u16(), c.as_str()), (403, "grant_revoked"));
    audited.push(id);
    app.clock.advance(601);
    let (s, c, id) = code(centre.get("/api/v1/grant", &token).send().await.unwrap()).await;
    assert_eq!((s.as_u16(), c.as_str()), (403, "grant_expired"));
    audited.push(id);
    let list: Value = app
        .get_json(&format!("/api/v1/cases/{case}/grants"), &app.coordinator)
        .await;
    let state_of = |id: &str| {
        list["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["grant_id"] == id)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state_of(&other_grant), "revoked");
    assert_eq!(
        list["grants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["state"] == "expired")
            .count(),
        1
    );

    // A deleted case: its grants answer 404.
    app.clock.advance(-601);
    let (_, fresh) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 5 }),
    )
    .await;
    assert_eq!(
        centre
            .get("/api/v1/grant", &fresh)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.request(
        Method::DELETE,
        &format!("/api/v1/cases/{case}"),
        Some(&app.coordinator),
        None,
    )
    .await;
    let (s, c, id) = code(centre.get("/api/v1/grant", &fresh).send().await.unwrap()).await;
    assert_eq!((s.as_u16(), c.as_str()), (404, "not_found"));
    audited.push(id);

    let audit = app.audit().await;
    for id in audited {
        assert!(
            audit
                .iter()
                .any(|e| e["request_id"] == id.as_str() && e["outcome"] == "deny"),
            "no audit entry for {id}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_cuts_a_running_download() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(24 * 1024 * 1024, 61);
    app.upload(&patient, "big.bin", None, &data, 8 * 1024 * 1024)
        .await;
    let centre = register_centre(&app, "Slow Reader").await;
    let (grant_id, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 2 }),
    )
    .await;
    let file = app.patient_manifest(&patient).await["files"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut resp = centre
        .get(&format!("/api/v1/grant/files/{file}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = resp.chunk().await.unwrap().unwrap().len();
    // A slow reader keeps the download running while the grant is revoked.
    let cut_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let cut_seen = cut_seen.clone();
        tokio::spawn(async move {
            loop {
                if !cut_seen.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                match resp.chunk().await {
                    Ok(Some(c)) => received += c.len(),
                    Ok(None) => return (received, false),
                    Err(_) => return (received, true),
                }
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let resp_revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/grants/{grant_id}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp_revoke.status(), 204);
    let revoked_at = std::time::Instant::now();
    // The server cuts the running download within 10 s and says so.
    let mut cut = false;
    while revoked_at.elapsed() < std::time::Duration::from_secs(10) {
        let audit = app.audit().await;
        if audit.iter().any(|e| {
            e["action"] == "download.plaintext"
                && e["reason"].as_str().unwrap_or("").contains("cut after")
        }) {
            cut = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(cut, "running download not cut within 10 s of revocation");
    cut_seen.store(true, std::sync::atomic::Ordering::SeqCst);
    let (received, broke_off) = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(broke_off, "the client sees the body break off");
    assert!(received < data.len(), "{received} of {} bytes", data.len());
    app.stop().await;
}

/// Plaintext ranges that start inside a chunk and span several 1 MiB
/// windows come back exactly, whatever the windows' boundaries (the body
/// ends each window on a chunk boundary; that saves work and is not
/// visible here).
#[tokio::test]
async fn plaintext_ranges_starting_mid_chunk_span_windows_exactly() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(3 * 1024 * 1024 + 12_345, 71);
    app.upload(&patient, "ct.bin", None, &data, 4 * 1024 * 1024)
        .await;
    let centre = register_centre(&app, "Ranges").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 4 }),
    )
    .await;
    let file = app.patient_manifest(&patient).await["files"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/grant/files/{file}");
    for (from, to) in [
        (100, data.len() - 1),
        (65_535, 2 * 1024 * 1024 + 1),
        (1024 * 1024 - 1, data.len() - 7),
        (70_000, 70_001),
    ] {
        let resp = centre
            .get(&path, &token)
            .header("Range", format!("bytes={from}-{to}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206, "bytes={from}-{to}");
        let got = resp.bytes().await.unwrap();
        assert!(got.as_ref() == &data[from..=to], "bytes={from}-{to}");
    }
    app.stop().await;
}
