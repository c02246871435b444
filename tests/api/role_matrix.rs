//! Every protected route of the main listener, read from the library's
//! route table (`casegate::http::endpoint`), × every kind of caller → the
//! expected status, and every one of those requests leaves an audit entry
//! with its request id. A route added to the table is covered here without
//! a change: its denials at once, its success once [`success_status`]
//! names it (the `match` is exhaustive, so the compiler asks).

use std::collections::HashMap;

use casegate::http::endpoint::{Access, Endpoint, Listener};
use casegate::ids::{GrantId, UploadId};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{centre_cert_pem, forged_operator_token, spawn_app, x25519_public_b64};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoToken,
    Forged,
    Malformed,
    Coordinator,
    Compliance,
    Patient,
}

const CALLERS: [Caller; 6] = [
    Caller::NoToken,
    Caller::Forged,
    Caller::Malformed,
    Caller::Coordinator,
    Caller::Compliance,
    Caller::Patient,
];

fn allowed(caller: Caller, access: Access) -> bool {
    matches!(
        (caller, access),
        (Caller::Coordinator, Access::Coordinator)
            | (Caller::Compliance, Access::Compliance)
            | (Caller::Coordinator, Access::Uploader)
            | (
                Caller::Patient,
                Access::Patient | Access::PatientUpload | Access::Uploader
            )
    )
}

/// The status a caller the endpoint admits gets here; `None` where success
/// needs fixtures this test does not build (a complete upload for a grant,
/// a grant to revoke, tus requests): their successes are tested in
/// `grants.rs` and `tus.rs`, their denials here.
fn success_status(endpoint: Endpoint) -> Option<u16> {
    use Endpoint as E;
    match endpoint {
        E::CreateCase | E::ReissueUploadToken | E::RegisterCentre => Some(201),
        E::ListCases | E::ReadCase | E::ListCentres | E::UpdateCentre => Some(200),
        E::ListGrants | E::PatientCase | E::PatientAccess | E::AuditExport => Some(200),
        E::AuditCheckpoint | E::AuditAlerts | E::CaseDisclosures => Some(200),
        // Need query parameters; their successes are in `audit_log.rs`.
        E::AuditProof | E::AuditLeaves => None,
        E::DeleteCase | E::DisableCentre => Some(204),
        E::CreateGrant | E::RevokeGrant => None,
        E::TusCreate | E::TusCreateSlash | E::TusHead | E::TusPatch | E::TusTerminate => None,
        E::Healthz | E::Readyz | E::TusOptions | E::TusOptionsSlash => None,
        E::UploadPage | E::UploadAsset => None,
        E::GrantInfo | E::DownloadPlaintext | E::DownloadSealed => None,
        E::GrantTusCreate | E::GrantTusCreateSlash | E::GrantTusHead => None,
        E::GrantTusPatch | E::GrantTusTerminate => None,
        // Need a centre's complete reply; tested in `reply.rs`.
        E::ReleaseFile | E::PatientFile => None,
        // Centre listener; tested in `dicomweb.rs`.
        E::DicomwebStudies | E::DicomwebStudySeries | E::DicomwebStudyInstances => None,
        E::DicomwebSeriesInstances | E::DicomwebStudy | E::DicomwebSeries => None,
        E::DicomwebInstance | E::DicomwebStudyMetadata | E::DicomwebSeriesMetadata => None,
        E::DicomwebInstanceMetadata | E::DicomwebFrames => None,
    }
}

fn body_of(endpoint: Endpoint) -> Option<Value> {
    match endpoint {
        Endpoint::RegisterCentre => Some(json!({
            "name": "Centre", "country": "DE",
            "client_cert_pem": centre_cert_pem(), "x25519_public_key": x25519_public_b64(),
        })),
        Endpoint::UpdateCentre => Some(json!({ "x25519_public_key": x25519_public_b64() })),
        _ if endpoint.spec().method == Method::POST => Some(json!({})),
        _ => None,
    }
}

#[tokio::test]
async fn every_route_by_every_caller() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(Some("matrix")).await;
    let centre: Value = app
        .request(
            Method::POST,
            "/api/v1/centres",
            Some(&app.coordinator),
            body_of(Endpoint::RegisterCentre),
        )
        .await
        .json()
        .await
        .unwrap();
    let centre_id = centre["centre_id"].as_str().unwrap().to_owned();
    let grant_id = GrantId::generate().to_string();
    let upload_id = UploadId::generate().to_string();
    let routes: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| {
            let spec = e.spec();
            spec.listener == Listener::Main && spec.access != Access::Public
        })
        .collect();
    let mut patient_token = patient;
    let mut expected: HashMap<String, (&'static str, String)> = HashMap::new();
    for endpoint in routes {
        let spec = endpoint.spec();
        let (method, template) = (spec.method.clone(), spec.path);
        for caller in CALLERS {
            let admitted = allowed(caller, spec.access);
            let Some(ok) = success_status(endpoint).or((!admitted).then_some(0)) else {
                continue;
            };
            let case = if endpoint == Endpoint::DeleteCase {
                app.create_case(None).await.0
            } else {
                case_id.clone()
            };
            let path = template
                .replace("{case_id}", &case)
                .replace("{centre_id}", &centre_id)
                .replace("{grant_id}", &grant_id)
                .replace("{upload_id}", &upload_id);
            let forged = forged_operator_token();
            let token: Option<&str> = match caller {
                Caller::NoToken => None,
                Caller::Forged => Some(&forged),
                Caller::Malformed => Some("not-a-token"),
                Caller::Coordinator => Some(&app.coordinator),
                Caller::Compliance => Some(&app.compliance),
                Caller::Patient => Some(&patient_token),
            };
            let resp = app
                .request(method.clone(), &path, token, body_of(endpoint))
                .await;
            let status = resp.status().as_u16();
            let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            let problem: Option<Value> = if status >= 400 {
                resp.json().await.ok()
            } else {
                None
            };
            let (want, outcome) = match caller {
                Caller::NoToken | Caller::Forged | Caller::Malformed => (401, "deny"),
                _ if admitted => (ok, "allow"),
                _ => (403, "deny"),
            };
            assert_eq!(status, want, "{caller:?} {method} {template}");
            if let Some(p) = problem {
                let code = if want == 401 {
                    "unauthenticated"
                } else {
                    "forbidden"
                };
                assert_eq!(p["code"], code, "{caller:?} {method} {template}");
            }
            if endpoint == Endpoint::ReissueUploadToken && caller == Caller::Coordinator {
                // The reissue replaced the patient's token.
                let resp = app
                    .request(
                        Method::GET,
                        "/api/v1/patient/case",
                        Some(&patient_token),
                        None,
                    )
                    .await;
                assert_eq!(resp.status(), 401, "old upload token must stop working");
                let fresh = app
                    .request(Method::POST, &path, Some(&app.coordinator), None)
                    .await
                    .json::<Value>()
                    .await
                    .unwrap();
                patient_token = fresh["upload_token"].as_str().unwrap().to_owned();
            }
            expected.insert(
                request_id,
                (outcome, format!("{caller:?} {method} {template}")),
            );
        }
    }
    let audit = app.audit().await;
    let by_request: HashMap<&str, &Value> = audit
        .iter()
        .filter_map(|e| e["request_id"].as_str().map(|r| (r, e)))
        .collect();
    for (request_id, (outcome, what)) in &expected {
        let entry = by_request
            .get(request_id.as_str())
            .unwrap_or_else(|| panic!("no audit entry for {what}"));
        assert_eq!(entry["outcome"], *outcome, "{what}");
    }
    // Gapless sequence.
    for (i, e) in audit.iter().enumerate() {
        assert_eq!(e["seq"], (i + 1) as i64);
    }
    app.stop().await;
}

#[tokio::test]
async fn public_routes_need_no_token_and_unknown_routes_are_404() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let resp = app.request(Method::GET, path, None, None).await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    let ready: Value = app
        .request(Method::GET, "/readyz", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["audit_log"], "ok");
    let resp = app
        .request(Method::GET, "/api/v1/nothing", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = app
        .request(Method::PATCH, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 405);
    app.stop().await;
}
