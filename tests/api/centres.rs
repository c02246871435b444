//! Centres: registration with a real client certificate and X25519 key,
//! the pin (SHA-256 of the certificate DER), duplicates and hostile bodies.

use reqwest::Method;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::common::{centre_cert_pem, spawn_app, x25519_public_b64};

fn sha256_hex(bytes: &[u8]) -> String {
    casegate::hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[tokio::test]
async fn register_list_and_reject_duplicates() {
    let app = spawn_app().await;
    let pem = centre_cert_pem();
    let body = json!({ "name": "Centre Léon Bérard", "country": "fr", "client_cert_pem": pem, "x25519_public_key": x25519_public_b64() });
    let resp = app
        .request(
            Method::POST,
            "/api/v1/centres",
            Some(&app.coordinator),
            Some(body.clone()),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(created["cert_sha256"], sha256_hex(der.as_ref()));
    let centre_id = created["centre_id"].as_str().unwrap().to_owned();

    let resp = app
        .request(
            Method::POST,
            "/api/v1/centres",
            Some(&app.coordinator),
            Some(body),
        )
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "conflict");

    let list: Value = app.get_json("/api/v1/centres", &app.coordinator).await;
    let c = &list["centres"][0];
    assert_eq!(c["centre_id"], centre_id.as_str());
    assert_eq!(c["name"], "Centre Léon Bérard");
    assert_eq!(c["country"], "FR");
    assert_eq!(c["x25519_public_key"], x25519_public_b64());
    assert_eq!(c["state"], "active");
    assert_eq!(list["centres"].as_array().unwrap().len(), 1);

    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "centre.register"
        && e["outcome"] == "allow"
        && e["centre_id"] == centre_id.as_str()));
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "centre.register" && e["outcome"] == "deny")
    );
    // Names are not audit material: ids only.
    assert!(!audit.iter().any(|e| e.to_string().contains("Bérard")));
    app.stop().await;
}

#[tokio::test]
async fn hostile_registrations_are_refused() {
    let app = spawn_app().await;
    let good_pem = centre_cert_pem();
    let two = format!("{good_pem}{}", centre_cert_pem());
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let key = x25519_public_b64();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": "hello", "x25519_public_key": key }),
            "not PEM",
        ),
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": garbage_pem, "x25519_public_key": key }),
            "not X.509",
        ),
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": two, "x25519_public_key": key }),
            "two certs",
        ),
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": good_pem, "x25519_public_key": "AAAA" }),
            "short key",
        ),
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": good_pem, "x25519_public_key": "A".repeat(43) }),
            "zero key",
        ),
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": good_pem, "x25519_public_key": "+/+/" }),
            "not base64url",
        ),
        (
            json!({ "name": "A", "country": "Germany", "client_cert_pem": good_pem, "x25519_public_key": key }),
            "country",
        ),
        (
            json!({ "name": " ", "country": "DE", "client_cert_pem": good_pem, "x25519_public_key": key }),
            "empty name",
        ),
        (
            json!({ "name": "A", "country": "DE", "client_cert_pem": good_pem }),
            "missing key",
        ),
    ];
    for (body, what) in cases {
        let resp = app
            .request(
                Method::POST,
                "/api/v1/centres",
                Some(&app.coordinator),
                Some(body),
            )
            .await;
        assert_eq!(resp.status(), 400, "{what}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_request", "{what}");
    }
    let list: Value = app.get_json("/api/v1/centres", &app.coordinator).await;
    assert_eq!(list["centres"], json!([]));
    app.stop().await;
}
