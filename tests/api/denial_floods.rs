//! Floods of denied requests from one address, on both listeners: every kind
//! of refusal (no token, forged token, wrong role, no client certificate,
//! another centre's certificate, an authenticated caller probing ids) counts
//! toward the address's failure limit, the address then gets 429, and the
//! audit log grows by a bounded number of entries per address, with the
//! rest recorded as one aggregate count. Other addresses are not affected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use casegate::ids::{FileId, UploadId};
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};

use crate::common::{TestApp, forged_operator_token, spawn_app_with};
use crate::grants::grant;
use crate::tus::pattern;

const LIMIT: u32 = 5;
const PER_KIND: usize = 64;
const PARALLEL: usize = 8;

/// A client whose connections leave from `local` (any 127.0.0.x works on
/// Linux loopback), optionally presenting a client certificate.
pub fn client_from(app: &TestApp, local: IpAddr, identity_pem: Option<&str>) -> Client {
    let mut b = Client::builder()
        .local_address(local)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem).unwrap());
    if let Some(pem) = identity_pem {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Registers a centre; returns its id and its certificate + key PEM.
async fn register(app: &TestApp, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["centre.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let centre_id = app
        .register_centre_from(name, &cert.pem(), &crate::common::x25519_public_b64())
        .await;
    (centre_id, format!("{}{}", cert.pem(), key.serialize_pem()))
}

type Build = Arc<dyn Fn(&Client) -> RequestBuilder + Send + Sync>;

/// One way of being refused, flooded from its own address.
struct Kind {
    what: &'static str,
    from: IpAddr,
    client: Client,
    build: Build,
    status: u16,
    code: &'static str,
    /// Refused by the authorisation layer (before any handler ran), where
    /// the bound on individual entries is exact; a handler's own refusal
    /// can overshoot by the requests already running when the limit hit.
    by_auth_layer: bool,
}

/// Sends `PER_KIND` requests, `PARALLEL` at a time; returns the statuses.
async fn flood(kind: &Kind) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let client = kind.client.clone();
        let build = kind.build.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..PER_KIND / PARALLEL {
                statuses.push(build(&client).send().await.unwrap().status().as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn audit_from(app: &TestApp, client: &Client) -> Vec<Value> {
    let resp = client
        .get(app.url("/api/v1/audit"))
        .bearer_auth(&app.compliance)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "compliance from an innocent address");
    resp.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn entries_from(audit: &[Value], from: IpAddr) -> Vec<&Value> {
    let addr = from.to_string();
    audit
        .iter()
        .filter(|e| e["client_addr"] == addr.as_str())
        .collect()
}

#[tokio::test]
async fn denied_floods_are_limited_and_audited_in_aggregate() {
    let mut app = spawn_app_with(|c| c.limits.auth_failures_per_minute = LIMIT).await;
    let (case, patient) = app.create_case(None).await;
    app.upload(&patient, "a.bin", None, &pattern(1000, 7), 1000)
        .await;
    let (centre, centre_pem) = register(&app, "Centre A").await;
    let (_, other_pem) = register(&app, "Centre B").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre, "expires_in_secs": 600, "max_downloads": 5 }),
    )
    .await;
    let main = |path: &str| app.url(path);
    let centre_url = |path: &str| format!("https://127.0.0.1:{}{path}", app.centre_addr.port());
    let bearer = |url: String, method: Method, t: Option<String>| -> Build {
        Arc::new(move |c: &Client| {
            let r = c.request(method.clone(), &url);
            match &t {
                Some(t) => r.bearer_auth(t),
                None => r,
            }
        })
    };
    let cases = main("/api/v1/cases");
    let kinds = vec![
        Kind {
            what: "main: no token",
            from: ip(10),
            client: client_from(&app, ip(10), None),
            build: bearer(cases.clone(), Method::GET, None),
            status: 401,
            code: "unauthenticated",
            by_auth_layer: true,
        },
        Kind {
            what: "main: forged operator token",
            from: ip(11),
            client: client_from(&app, ip(11), None),
            build: bearer(cases.clone(), Method::GET, Some(forged_operator_token())),
            status: 401,
            code: "unauthenticated",
            by_auth_layer: true,
        },
        Kind {
            what: "main: patient token on a coordinator route",
            from: ip(12),
            client: client_from(&app, ip(12), None),
            build: bearer(cases.clone(), Method::GET, Some(patient.clone())),
            status: 403,
            code: "forbidden",
            by_auth_layer: true,
        },
        Kind {
            what: "main: compliance token on a coordinator route",
            from: ip(13),
            client: client_from(&app, ip(13), None),
            build: bearer(cases.clone(), Method::POST, Some(app.compliance.clone())),
            status: 403,
            code: "forbidden",
            by_auth_layer: true,
        },
        Kind {
            what: "centre: no client certificate",
            from: ip(14),
            client: client_from(&app, ip(14), None),
            build: bearer(
                centre_url("/api/v1/grant"),
                Method::GET,
                Some(token.clone()),
            ),
            status: 401,
            code: "client_certificate_required",
            by_auth_layer: true,
        },
        Kind {
            what: "centre: another centre's certificate",
            from: ip(15),
            client: client_from(&app, ip(15), Some(&other_pem)),
            build: bearer(
                centre_url("/api/v1/grant"),
                Method::GET,
                Some(token.clone()),
            ),
            status: 403,
            code: "certificate_mismatch",
            by_auth_layer: true,
        },
        Kind {
            what: "centre: registered certificate, no token",
            from: ip(16),
            client: client_from(&app, ip(16), Some(&centre_pem)),
            build: bearer(centre_url("/api/v1/grant"), Method::GET, None),
            status: 401,
            code: "unauthenticated",
            by_auth_layer: true,
        },
        Kind {
            what: "main: patient probing upload ids",
            from: ip(17),
            client: client_from(&app, ip(17), None),
            build: {
                let t = patient.clone();
                let url = main("/tus/");
                Arc::new(move |c: &Client| {
                    c.head(format!("{url}{}", UploadId::generate()))
                        .bearer_auth(&t)
                        .header("Tus-Resumable", "1.0.0")
                })
            },
            status: 404,
            code: "",
            by_auth_layer: false,
        },
        Kind {
            what: "centre: valid grant probing file ids",
            from: ip(18),
            client: client_from(&app, ip(18), Some(&centre_pem)),
            build: {
                let t = token.clone();
                let url = centre_url("/api/v1/grant/files/");
                Arc::new(move |c: &Client| {
                    c.get(format!("{url}{}", FileId::generate()))
                        .bearer_auth(&t)
                })
            },
            status: 404,
            code: "not_found",
            by_auth_layer: false,
        },
    ];

    let innocent = client_from(&app, ip(2), None);
    let innocent_centre = client_from(&app, ip(2), Some(&centre_pem));
    let before = audit_from(&app, &innocent).await.len();
    let mut refused_429: HashMap<IpAddr, usize> = HashMap::new();
    let mut failures = Vec::new();
    for kind in &kinds {
        // The first answer is the refusal itself, with its own code.
        let first = (kind.build)(&kind.client).send().await.unwrap();
        assert_eq!(first.status(), kind.status, "{}", kind.what);
        if !kind.code.is_empty() {
            let v: Value = first.json().await.unwrap();
            assert_eq!(v["code"], kind.code, "{}", kind.what);
        }
        let statuses = flood(kind).await;
        let limited = statuses.iter().filter(|s| **s == 429).count();
        let other = statuses
            .iter()
            .filter(|s| **s != 429 && **s != kind.status)
            .count();
        refused_429.insert(kind.from, limited);
        assert_eq!(other, 0, "{}: unexpected statuses {statuses:?}", kind.what);

        // Meanwhile another address is served as usual, on both listeners.
        let resp = innocent
            .get(main("/api/v1/cases"))
            .bearer_auth(&app.coordinator)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "innocent coordinator after {}",
            kind.what
        );
        let resp = innocent_centre
            .get(centre_url("/api/v1/grant"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "innocent centre after {}", kind.what);

        let audit = audit_from(&app, &innocent).await;
        let rows = entries_from(&audit, kind.from);
        let aggregate = rows
            .iter()
            .filter(|e| e["action"] == "auth.rate_limited")
            .count();
        // A flood of one kind raises at most one alert (files outside a
        // grant: one per grant and hour), which is no per-request entry.
        let alerted = rows
            .iter()
            .filter(|e| e["action"].as_str().unwrap_or("").starts_with("alert."))
            .count();
        let individual = rows.len() - aggregate - alerted;
        eprintln!(
            "{:45} {} requests: {limited} got 429, {} audit rows ({individual} individual, {aggregate} aggregate)",
            kind.what,
            PER_KIND + 1,
            rows.len()
        );
        let bound = LIMIT as usize + if kind.by_auth_layer { 0 } else { PARALLEL - 1 };
        if limited == 0 || individual > bound || aggregate != 1 || alerted > 1 {
            failures.push(format!(
                "{}: {limited}×429, {individual} individual entries (bound {bound}), {aggregate} aggregate, {alerted} alerts",
                kind.what
            ));
        }
    }
    let after = audit_from(&app, &innocent).await.len();
    eprintln!(
        "audit rows written during the floods: {} for {} denied requests",
        after - before,
        kinds.len() * (PER_KIND + 1)
    );
    assert!(failures.is_empty(), "{failures:#?}");

    // The limit is per address, not per credential: a valid token from a
    // limited address waits too, told when to come back.
    let resp = kinds[0]
        .client
        .get(main("/api/v1/cases"))
        .bearer_auth(&app.coordinator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "rate_limited");
    *refused_429.entry(kinds[0].from).or_default() += 1;

    // Limiting periods still running at shutdown are summed up then: one
    // entry per address with the number of requests refused unrecorded.
    app.restart().await;
    let innocent = client_from(&app, ip(2), None);
    let audit = audit_from(&app, &innocent).await;
    for kind in &kinds {
        let summaries: Vec<&str> = entries_from(&audit, kind.from)
            .into_iter()
            .filter(|e| e["action"] == "auth.rate_limited" && e["actor"] == "system:limiter")
            .filter_map(|e| e["reason"].as_str())
            .collect();
        assert_eq!(summaries.len(), 1, "{}: {summaries:?}", kind.what);
        // Every 429 the address got, none recorded one by one.
        let n: usize = summaries[0]
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap();
        assert_eq!(
            n, refused_429[&kind.from],
            "{}: {}",
            kind.what, summaries[0]
        );
    }
    app.stop().await;
}
