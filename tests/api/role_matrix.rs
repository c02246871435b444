//! Every protected route × every kind of caller → the expected status, and
//! every one of those requests leaves an audit entry with its request id.

use std::collections::HashMap;

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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
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

fn allowed(caller: Caller, needs: Needs) -> bool {
    matches!(
        (caller, needs),
        (Caller::Coordinator, Needs::Coordinator)
            | (Caller::Compliance, Needs::Compliance)
            | (Caller::Patient, Needs::Patient)
    )
}

#[tokio::test]
async fn every_route_by_every_caller() {
    let app = spawn_app().await;
    let (case_id, patient) = app.create_case(Some("matrix")).await;
    // (method, path template, needs, success status, body builder)
    let routes: Vec<(Method, &str, Needs, u16)> = vec![
        (Method::POST, "/api/v1/cases", Needs::Coordinator, 201),
        (Method::GET, "/api/v1/cases", Needs::Coordinator, 200),
        (Method::GET, "/api/v1/cases/{case}", Needs::Coordinator, 200),
        (
            Method::DELETE,
            "/api/v1/cases/{fresh}",
            Needs::Coordinator,
            204,
        ),
        (
            Method::POST,
            "/api/v1/cases/{case}/upload-token",
            Needs::Coordinator,
            201,
        ),
        (Method::POST, "/api/v1/centres", Needs::Coordinator, 201),
        (Method::GET, "/api/v1/centres", Needs::Coordinator, 200),
        (Method::GET, "/api/v1/audit", Needs::Compliance, 200),
        (Method::GET, "/api/v1/patient/case", Needs::Patient, 200),
    ];
    let mut patient_token = patient;
    let mut expected: HashMap<String, (&'static str, String)> = HashMap::new();
    for (method, template, needs, ok) in &routes {
        for caller in CALLERS {
            let fresh = if template.contains("{fresh}") {
                app.create_case(None).await.0
            } else {
                String::new()
            };
            let path = template
                .replace("{case}", &case_id)
                .replace("{fresh}", &fresh);
            let forged = forged_operator_token();
            let token: Option<&str> = match caller {
                Caller::NoToken => None,
                Caller::Forged => Some(&forged),
                Caller::Malformed => Some("not-a-token"),
                Caller::Coordinator => Some(&app.coordinator),
                Caller::Compliance => Some(&app.compliance),
                Caller::Patient => Some(&patient_token),
            };
            let body: Option<Value> = match (method.clone(), *template) {
                (Method::POST, "/api/v1/centres") => Some(json!({
                    "name": "Centre", "country": "DE",
                    "client_cert_pem": centre_cert_pem(), "x25519_public_key": x25519_public_b64(),
                })),
                (Method::POST, _) => Some(json!({})),
                _ => None,
            };
            let resp = app.request(method.clone(), &path, token, body).await;
            let status = resp.status().as_u16();
            let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            let problem: Option<Value> = if status >= 400 {
                resp.json().await.ok()
            } else {
                None
            };
            let (want, outcome) = match caller {
                Caller::NoToken | Caller::Forged | Caller::Malformed => (401, "deny"),
                c if allowed(c, *needs) => (*ok, "allow"),
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
            if *template == "/api/v1/cases/{case}/upload-token" && caller == Caller::Coordinator {
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
