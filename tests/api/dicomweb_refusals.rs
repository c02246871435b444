//! DICOMweb refusals through the real server: no certificate, another
//! centre's certificate, revoked and expired grants, hostile paths and
//! queries, unacceptable media types; a revocation cutting a running
//! multipart retrieval; CORS for a configured viewer origin on the centre
//! listener.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{client_trusting, spawn_app, spawn_app_with};
use crate::dicomweb::{SERIES_A, STUDY, fixture, fixture_on};
use crate::grants::{grant, register_centre};
use crate::tus::pattern;

async fn problem(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn strangers_and_dead_grants_are_refused() {
    let f = fixture(3).await;
    let path = format!("/dicomweb/studies/{STUDY}/series");
    let no_cert = client_trusting(&f.app.ca_pem);
    let resp = no_cert
        .get(format!("{}{path}", f.centre.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(resp).await,
        (401, "client_certificate_required".into())
    );
    let other = register_centre(&f.app, "Another Centre").await;
    let resp = other.get(&path, &f.token).send().await.unwrap();
    assert_eq!(problem(resp).await, (403, "certificate_mismatch".into()));
    let resp = f
        .centre
        .client
        .get(format!("{}{path}", f.centre.base))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await, (401, "unauthenticated".into()));

    f.app.clock.advance(601);
    assert_eq!(
        problem(f.get(&path).await).await,
        (403, "grant_expired".into())
    );
    f.app.clock.advance(-601);
    let resp = f
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/grants/{}", f.grant_id),
            Some(&f.app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    for path in [
        "/dicomweb/studies".to_owned(),
        format!("/dicomweb/studies/{STUDY}"),
        format!("/dicomweb/studies/{STUDY}/metadata"),
    ] {
        assert_eq!(
            problem(f.get(&path).await).await,
            (403, "grant_revoked".into()),
            "{path}"
        );
    }
    f.app.stop().await;
}

#[tokio::test]
async fn hostile_paths_and_queries_get_clear_answers() {
    let f = fixture(3).await;
    let bad = [
        ("/dicomweb/studies/1.2.abc/series", 400),
        ("/dicomweb/studies/..%2F..%2Fetc/series", 400),
        (
            &*format!("/dicomweb/studies/{}/series", "1".repeat(65)),
            400,
        ),
        ("/dicomweb/studies?limit=-5", 400),
        ("/dicomweb/studies?limit=99999999999999999999", 400),
        ("/dicomweb/studies?NoSuchAttribute=1", 400),
        ("/dicomweb/studies?StudyInstanceUID=1.2.x", 400),
        ("/dicomweb/studies?includefield=Bogus", 400),
        ("/dicomweb/studies/1.2.3.4", 404),
        (&*format!("/dicomweb/studies/{STUDY}/series/1.2.3.4"), 404),
        (
            &*format!("/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances/1.2.3"),
            404,
        ),
        (
            &*format!("/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances/1.2.3/metadata"),
            404,
        ),
    ];
    for (path, status) in bad {
        let resp = f.get(path).await;
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    // A huge but valid limit is cut, not refused.
    let resp = f.get("/dicomweb/studies?limit=4000000000").await;
    assert_eq!(resp.status(), 200);
    // Media types the gateway does not serve.
    let resp = f
        .centre
        .get(&format!("/dicomweb/studies/{STUDY}"), &f.token)
        .header("Accept", "application/zip")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await, (406, "not_acceptable".into()));
    let resp = f
        .centre
        .get("/dicomweb/studies", &f.token)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 406);
    // Nothing was counted by any of it.
    for dcm in &f.granted {
        assert_eq!(f.downloads_left(&dcm.file_id).await, 3);
    }
    f.app.stop().await;
}

#[tokio::test]
async fn revoking_cuts_a_running_retrieval() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    // One large instance, read slowly.
    let image = casegate::upload::dicom::testdata::Image {
        sop_instance_uid: "1.2.826.0.1.3680043.8.498.9.1.1",
        instance_number: Some(1),
        rows: None,
        frames: None,
        pixels: pattern(24 * 1024 * 1024, 5),
    };
    let study = "1.2.826.0.1.3680043.8.498.9";
    let bytes = casegate::upload::dicom::testdata::ct_image(
        study,
        "1.2.826.0.1.3680043.8.498.9.1",
        "Doe^Jane",
        &image,
    );
    app.upload(
        &patient,
        "big.dcm",
        Some("imaging_dicom"),
        &bytes,
        8 * 1024 * 1024,
    )
    .await;
    let centre = register_centre(&app, "Slow Viewer").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 2 });
    let (grant_id, token) = grant(&app, &case, body).await;
    let mut resp = centre
        .get(&format!("/dicomweb/studies/{study}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = resp.chunk().await.unwrap().unwrap().len();
    let reader = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            match resp.chunk().await {
                Ok(Some(c)) => received += c.len(),
                Ok(None) => return (received, false),
                Err(_) => return (received, true),
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/grants/{grant_id}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(revoke.status(), 204);
    let revoked_at = std::time::Instant::now();
    let mut cut = false;
    while revoked_at.elapsed() < std::time::Duration::from_secs(10) && !cut {
        cut = app.audit().await.iter().any(|e| {
            e["action"] == "dicomweb.retrieve"
                && e["reason"].as_str().unwrap_or("").contains("cut after")
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(cut, "running retrieval not cut within 10 s of revocation");
    let (received, broke_off) = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(broke_off, "the client sees the body break off");
    assert!(received < bytes.len(), "{received} of {}", bytes.len());
    app.stop().await;
}

#[tokio::test]
async fn a_configured_viewer_origin_may_call_the_centre_listener() {
    let viewer = "https://viewer.centre.example";
    let app = spawn_app_with(|c| c.server.centre_allowed_origins = vec![viewer.into()]).await;
    let f = fixture_on(app, 3).await;
    let url = format!("{}/dicomweb/studies", f.centre.base);
    // The preflight carries no certificate and no token.
    let anonymous = client_trusting(&f.app.ca_pem);
    let preflight = |origin: &'static str| {
        anonymous
            .request(Method::OPTIONS, &url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization, accept")
            .send()
    };
    let resp = preflight(viewer).await.unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], viewer);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("accept"));
    let resp = preflight("https://evil.example").await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let resp = f
        .centre
        .get("/dicomweb/studies", &f.token)
        .header("Origin", viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], viewer);
    assert_ne!(resp.headers()["access-control-allow-origin"], "*");
    let resp = f
        .centre
        .get("/dicomweb/studies", &f.token)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // Only what a viewer reads: not the sealed downloads, not replies.
    let sealed = format!("/api/v1/grant/files/{}/sealed", f.granted[0].file_id);
    for path in [sealed.as_str(), "/api/v1/grant/tus/"] {
        let resp = f
            .centre
            .get(path, &f.token)
            .header("Origin", viewer)
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    f.app.stop().await;
}

/// Without `server.centre_allowed_origins`, the centre listener sends no
/// CORS header at all.
#[tokio::test]
async fn the_centre_listener_is_closed_to_browsers_by_default() {
    let f = fixture(3).await;
    let resp = f
        .centre
        .get("/dicomweb/studies", &f.token)
        .header("Origin", "https://viewer.centre.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    f.app.stop().await;
}
