//! Cases: create, list, manifest views, reissue, crypto-shredding delete,
//! and that nothing secret or identifying is stored in plaintext.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::spawn_app;

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn create_manifest_list_and_views() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(Some("Ref 2026/17 — Müller")).await;
    let manifest: Value = app
        .get_json(&format!("/api/v1/cases/{case_id}"), &app.coordinator)
        .await;
    assert_eq!(manifest["case_id"], case_id.as_str());
    assert_eq!(manifest["reference"], "Ref 2026/17 — Müller");
    assert_eq!(manifest["files"], json!([]));
    assert_eq!(manifest["studies"], json!([]));

    let own: Value = app.get_json("/api/v1/patient/case", &patient).await;
    assert_eq!(own["case_id"], case_id.as_str());
    assert!(
        own.get("reference").is_none(),
        "patients do not see the coordinator's reference"
    );

    let list: Value = app.get_json("/api/v1/cases", &app.coordinator).await;
    let item = &list["cases"][0];
    assert_eq!(item["case_id"], case_id.as_str());
    assert_eq!(item["file_count"], 0);
    assert_eq!(item["total_bytes"], 0);
    assert_eq!(item["state"], "open");
    app.stop().await;
}

#[tokio::test]
async fn upload_link_points_at_the_upload_page_with_a_fragment() {
    let app = spawn_app().await;
    let resp = app
        .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    let token = v["upload_token"].as_str().unwrap();
    assert!(token.len() >= 43);
    assert_eq!(
        v["upload_url"],
        format!("https://localhost:8443/upload#token={token}")
    );
    assert!(v["upload_expires_at"].as_str().unwrap().ends_with('Z'));
    app.stop().await;
}

#[tokio::test]
async fn delete_shreds_and_hides_the_case() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(Some("to be shredded")).await;
    let path = format!("/api/v1/cases/{case_id}");
    let resp = app
        .request(Method::DELETE, &path, Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 204);
    for (method, token) in [
        (Method::GET, &app.coordinator),
        (Method::DELETE, &app.coordinator),
    ] {
        let resp = app.request(method, &path, Some(token), None).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");
    }
    let resp = app
        .request(Method::GET, "/api/v1/patient/case", Some(&patient), None)
        .await;
    assert_eq!(resp.status(), 401, "a deleted case's upload token is dead");
    let list: Value = app.get_json("/api/v1/cases", &app.coordinator).await;
    assert_eq!(list["cases"][0]["state"], "deleted");

    // The wrapped case key is gone from the database.
    let pool = app.db().await;
    let (key, reference): (Option<Vec<u8>>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT wrapped_key, reference_sealed FROM cases WHERE case_id = $1")
            .bind(&case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(key.is_none() && reference.is_none());
    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "case.delete"
        && e["outcome"] == "allow"
        && e["case_id"] == case_id.as_str()));
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_case_ids_are_404_and_audited() {
    let app = spawn_app().await;
    let unknown = format!("case_{}", "0".repeat(32));
    for path in [
        format!("/api/v1/cases/{unknown}"),
        "/api/v1/cases/..%2F..%2Fetc".to_string(),
    ] {
        let resp = app
            .request(Method::GET, &path, Some(&app.coordinator), None)
            .await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "case.read"
        && e["outcome"] == "deny"
        && e["case_id"] == unknown.as_str()));
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "case.read" && e["reason"] == "malformed case id")
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_case_bodies_get_clear_errors() {
    let app = spawn_app().await;
    let long = "x".repeat(300);
    for (body, status, code) in [
        (json!({ "reference": long }), 400, "invalid_request"),
        (json!({ "reference": "a\u{0}b" }), 400, "invalid_request"),
        (json!({ "unexpected": 1 }), 400, "invalid_request"),
        (json!({ "reference": 5 }), 400, "invalid_request"),
    ] {
        let resp = app
            .request(
                Method::POST,
                "/api/v1/cases",
                Some(&app.coordinator),
                Some(body.clone()),
            )
            .await;
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], code);
    }
    let resp = app
        .client
        .post(app.url("/api/v1/cases"))
        .bearer_auth(&app.coordinator)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = app
        .client
        .post(app.url("/api/v1/cases"))
        .bearer_auth(&app.coordinator)
        .header("content-type", "application/json")
        .body("{\"reference\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let huge = format!("{{\"reference\": \"{}\"}}", "y".repeat(200_000));
    let resp = app
        .client
        .post(app.url("/api/v1/cases"))
        .bearer_auth(&app.coordinator)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );
    app.stop().await;
}

#[tokio::test]
async fn database_holds_no_token_or_reference_in_plaintext() {
    let app = spawn_app().await;
    let marker = "PATIENT-REF-7f3a9c";
    let (_case, upload_token) = app.create_case(Some(marker)).await;
    // Touch everything once so the WAL holds the writes too.
    let _ = app.audit().await;
    let secrets = [
        app.coordinator.clone(),
        app.compliance.clone(),
        upload_token.clone(),
        upload_token[4..].to_string(),
        app.coordinator[4..].to_string(),
        marker.to_string(),
    ];
    let values = app.database_values().await;
    let on_postgres = app.on_postgres();
    for secret in &secrets {
        assert!(
            !contains(&values, secret.as_bytes()),
            "the database holds a secret in plaintext"
        );
    }
    let dir = app.stop().await;
    let dir = dir.path();
    let files = files_under(&dir.join("data"));
    assert!(on_postgres || files.iter().any(|f| f.ends_with("casegate.db")));
    assert!(!on_postgres || values.len() > 1000, "the database was read");
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds a secret in plaintext",
                file.display()
            );
        }
    }
}
