//! What the return channel refuses, each through the real server: a grant
//! that forbids replies, a revoked or expired grant, another centre's
//! certificate, categories and metadata an uploader may not send, uploads
//! of another uploader or another case (404, as if unknown), releases of
//! what is not a reply, and downloads of what was not released.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::spawn_app;
use crate::grants::{grant, register_centre};
use crate::reply::{Uploader, b64, file_id_of, patient_get, release};
use crate::tus::{meta, pattern};

async fn code(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn centres_reply_only_with_a_live_grant_that_allows_it() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "a.pdf", None, b"records", 100).await;
    let (centre, stranger) = (
        register_centre(&app, "C").await,
        register_centre(&app, "S").await,
    );
    let body = |may_reply: Option<bool>| {
        let mut b = json!({"centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1});
        if let Some(m) = may_reply {
            b["may_reply"] = json!(m);
        }
        b
    };
    let (silent_id, silent) = grant(&app, &case, body(Some(false))).await;
    let (revoked_id, revoked) = grant(&app, &case, body(None)).await;
    let (live_id, live) = grant(&app, &case, body(Some(true))).await;

    let listed = app
        .get_json(&format!("/api/v1/cases/{case}/grants"), &app.coordinator)
        .await;
    let may_reply = |id: &str| {
        listed["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["grant_id"] == id)
            .unwrap()["may_reply"]
            .clone()
    };
    assert_eq!(may_reply(&silent_id), json!(false));
    assert_eq!(may_reply(&revoked_id), json!(true), "default");
    assert_eq!(may_reply(&live_id), json!(true));

    let m = meta("opinion.pdf", None);
    let (status, _) = Uploader::centre(&centre, &silent).create(10, &m).await;
    assert_eq!(status, 403, "may_reply: false");
    let path = format!("/api/v1/grants/{revoked_id}");
    let resp = app
        .request(Method::DELETE, &path, Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 204);
    let resp = Uploader::centre(&centre, &revoked)
        .tus(Method::POST, "/api/v1/grant/tus/")
        .header("Upload-Length", "10")
        .header("Upload-Metadata", &m)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(resp).await,
        (StatusCode::FORBIDDEN, "grant_revoked".into())
    );

    // Another centre's certificate with this grant's token.
    let resp = Uploader::centre(&stranger, &live)
        .tus(Method::POST, "/api/v1/grant/tus/")
        .header("Upload-Length", "10")
        .header("Upload-Metadata", &m)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(resp).await,
        (StatusCode::FORBIDDEN, "certificate_mismatch".into())
    );

    // A centre files its reply as its opinion or as other, nothing else.
    let replying = Uploader::centre(&centre, &live);
    for refused in ["translation", "pathology_report", "nonsense"] {
        let (status, _) = replying.create(10, &meta("x.pdf", Some(refused))).await;
        assert_eq!(status, 400, "{refused}");
    }
    let extra = format!("{},case_id {}", m, b64(&case));
    assert_eq!(
        replying.create(10, &extra).await.0,
        400,
        "case_id is a coordinator's key"
    );

    // A reply started under a live grant stops when the grant expires.
    let (status, path) = replying.create(20, &m).await;
    assert_eq!(status, 201);
    assert_eq!(replying.patch(&path, 0, &[1; 10]).await, 204);
    app.clock.advance(601);
    let resp = replying
        .tus(Method::PATCH, &path)
        .header("Upload-Offset", "10")
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![2; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(resp).await,
        (StatusCode::FORBIDDEN, "grant_expired".into())
    );

    let audit = app.audit().await;
    let denied = |reason: &str| {
        audit.iter().any(|e| {
            e["action"] == "upload.create"
                && e["outcome"] == "deny"
                && e["reason"].as_str().unwrap_or("").contains(reason)
        })
    };
    assert!(denied("does not allow the centre to reply"));
    assert!(denied("revoked"));
    app.stop().await;
}

#[tokio::test]
async fn uploads_of_other_uploaders_and_cases_are_not_found() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (other_case, other_patient) = app.create_case(None).await;
    let patients_upload = app.tus_create(&patient, 100, &meta("mine.pdf", None)).await;
    let upload_id = patients_upload.trim_start_matches("/tus/").to_owned();
    let centre = register_centre(&app, "C").await;
    app.upload(&patient, "a.pdf", None, b"records", 100).await;
    let (_, token) = grant(
        &app,
        &case,
        json!({"centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1}),
    )
    .await;
    let replying = Uploader::centre(&centre, &token);
    let (status, reply_path) = replying.create(100, &meta("opinion.pdf", None)).await;
    assert_eq!(status, 201);
    let reply_id = reply_path
        .trim_start_matches("/api/v1/grant/tus/")
        .to_owned();
    let coordinator = Uploader::main(&app, &app.coordinator);
    let coordinators = format!("{},case_id {}", meta("t.pdf", None), b64(&other_case));
    let (status, coordinators_path) = coordinator.create(100, &coordinators).await;
    assert_eq!(status, 201);
    assert_eq!(
        coordinators_path.trim_start_matches("/tus/").len(),
        upload_id.len()
    );

    let as_patient = Uploader::main(&app, &patient);
    let as_other_patient = Uploader::main(&app, &other_patient);
    let probes: [(&Uploader, String); 5] = [
        (&as_patient, format!("/tus/{reply_id}")),
        (&as_patient, coordinators_path.clone()),
        (&as_other_patient, patients_upload.clone()),
        (&replying, format!("/api/v1/grant/tus/{upload_id}")),
        (&coordinator, patients_upload.clone()),
    ];
    for (who, path) in &probes {
        for method in [Method::HEAD, Method::PATCH, Method::DELETE] {
            let mut req = who.tus(method.clone(), path);
            if method == Method::PATCH {
                req = req
                    .header("Upload-Offset", "0")
                    .header("Content-Type", "application/offset+octet-stream")
                    .body(vec![0; 10]);
            }
            let status = req.send().await.unwrap().status();
            assert_eq!(status, 404, "{method} {path}");
        }
    }
    // Untouched: every upload is where its owner left it.
    assert_eq!(as_patient.head(&patients_upload).await.1, Some(0));
    assert_eq!(replying.head(&reply_path).await.1, Some(0));
    assert_eq!(coordinator.head(&coordinators_path).await.1, Some(0));
    let audit = app.audit().await;
    assert!(audit.iter().any(|e| {
        e["outcome"] == "deny"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("created by the centre, not this patient")
    }));
    app.stop().await;
}

#[tokio::test]
async fn coordinator_metadata_releases_and_downloads_are_checked() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (other_case, other_patient) = app.create_case(None).await;
    app.upload(&patient, "own.pdf", None, &pattern(1000, 1), 1000)
        .await;
    app.upload(&other_patient, "theirs.pdf", None, b"x", 10)
        .await;
    let own_id = file_id_of(&app.patient_manifest(&patient).await, "own.pdf");
    let theirs = file_id_of(&app.patient_manifest(&other_patient).await, "theirs.pdf");
    let coordinator = Uploader::main(&app, &app.coordinator);
    let with = |extra: String| format!("{}{extra}", meta("t.pdf", None));
    let refused = [
        (with(String::new()), 400),
        (with(format!(",case_id {}", b64("case_00"))), 404),
        (
            with(format!(
                ",case_id {}",
                b64(casegate::ids::CaseId::generate().as_str())
            )),
            404,
        ),
        (
            with(format!(
                ",case_id {},translation_of {}",
                b64(&case),
                b64(&theirs)
            )),
            400,
        ),
        (
            with(format!(
                ",case_id {},language {}",
                b64(&case),
                b64("English, please")
            )),
            400,
        ),
    ];
    for (metadata, want) in refused {
        assert_eq!(coordinator.create(5, &metadata).await.0, want, "{metadata}");
    }
    // A patient may not name a case (or anything else of a coordinator's).
    let as_patient = Uploader::main(&app, &patient);
    assert_eq!(
        as_patient
            .create(5, &with(format!(",case_id {}", b64(&other_case))))
            .await
            .0,
        400
    );

    // Releases: the patient's own file, an unfinished upload, unknown ids.
    assert_eq!(release(&app, &case, &own_id).await, 409);
    let (status, path) = coordinator
        .create(5, &with(format!(",case_id {}", b64(&case))))
        .await;
    assert_eq!(status, 201);
    let unfinished = file_id_of(
        &app.get_json(&format!("/api/v1/cases/{case}"), &app.coordinator)
            .await,
        "t.pdf",
    );
    assert_eq!(release(&app, &case, &unfinished).await, 409);
    assert_eq!(release(&app, &other_case, &unfinished).await, 404);
    assert_eq!(release(&app, &case, "file_nope").await, 404);
    assert_eq!(coordinator.patch(&path, 0, b"12345").await, 204);
    assert_eq!(release(&app, &case, &unfinished).await, 204);
    // Released to this case's patient only.
    assert_eq!(patient_get(&app, &patient, &unfinished, None).await.0, 200);
    assert_eq!(
        patient_get(&app, &other_patient, &unfinished, None).await.0,
        404
    );
    assert_eq!(
        patient_get(&app, &patient, &own_id, None).await.0,
        404,
        "not released to it"
    );
    // Compliance and centres' tokens have no business here.
    let resp = app
        .request(
            Method::GET,
            &format!("/api/v1/patient/files/{unfinished}"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 403);
    // The patient keeps reading after its upload period.
    app.clock.advance(400 * 24 * 3600);
    assert_eq!(patient_get(&app, &patient, &unfinished, None).await.0, 200);
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "1")
        .header("Upload-Metadata", meta("late.pdf", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A reissued link replaces the old one for reading too.
    let path = format!("/api/v1/cases/{case}/upload-token");
    let fresh: Value = app
        .request(Method::POST, &path, Some(&app.coordinator), None)
        .await
        .json()
        .await
        .unwrap();
    let fresh = fresh["upload_token"].as_str().unwrap();
    assert_eq!(patient_get(&app, &patient, &unfinished, None).await.0, 401);
    assert_eq!(patient_get(&app, fresh, &unfinished, None).await.0, 200);
    app.stop().await;
}

/// A reply still streaming when its grant is revoked is cut within 10 s:
/// what arrived is kept up to its last durable point, nothing more is
/// taken, and the next request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grant_cuts_a_running_reply() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "a.pdf", None, b"records", 100).await;
    let centre = register_centre(&app, "C").await;
    let (grant_id, token) = grant(
        &app,
        &case,
        json!({"centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1}),
    )
    .await;
    let uploader = Uploader::centre(&centre, &token);
    let total = 64 * 1024 * 1024;
    let (status, path) = uploader.create(total, &meta("opinion.pdf", None)).await;
    assert_eq!(status, 201);
    // 64 KiB every 50 ms: the whole body would take almost a minute.
    let piece = pattern(64 * 1024, 5);
    let body = futures_util::stream::unfold(0usize, move |sent| {
        let piece = piece.clone();
        async move {
            if sent >= total {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(piece), sent + 64 * 1024))
        }
    });
    let patch = uploader
        .tus(Method::PATCH, &path)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let patch = tokio::spawn(patch);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/grants/{grant_id}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(revoke.status(), 204);
    let answered = tokio::time::timeout(std::time::Duration::from_secs(10), patch)
        .await
        .expect("the running reply is cut within 10 s of the revocation")
        .unwrap();
    let kept: usize = match answered {
        Ok(resp) => resp
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().parse().unwrap())
            .unwrap_or(0),
        Err(_) => 0,
    };
    assert!(kept < total, "{kept} of {total}");
    let (status, _) = uploader.head(&path).await;
    assert_eq!(status, 403, "the next request is refused");
    app.stop().await;
}
