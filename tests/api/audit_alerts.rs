//! Alerts through the real server: token guessing from one address (one
//! alert per address and limiting window, however many guesses), a centre
//! asking for files outside its grant or for far more than its files'
//! sizes, a disabled centre's certificate, a checkpoint copy that fails.
//! Each alert is an audit entry with the precise reason, counted per kind
//! by `GET /api/v1/audit/alerts`; the requester's answer is unchanged.

use std::net::IpAddr;

use casegate::token::{SecretToken, TokenKind};
use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::common::{TestApp, forged_operator_token, spawn_app_with};
use crate::denial_floods::{client_from, ip};
use crate::grants::{Centre, grant, register_centre};
use crate::tus::pattern;

async fn alerts(app: &TestApp) -> Value {
    app.get_json("/api/v1/audit/alerts", &app.compliance).await
}

fn count(alerts: &Value, kind: &str) -> i64 {
    alerts["counts"][kind].as_i64().unwrap_or(0)
}

/// The alert entries of `kind`, oldest first.
fn of_kind<'a>(audit: &'a [Value], kind: &str) -> Vec<&'a Value> {
    audit.iter().filter(|e| e["action"] == kind).collect()
}

/// Sends `n` requests built by `build`, 8 at a time; returns the statuses.
async fn send_many(
    client: &Client,
    n: usize,
    build: impl Fn(&Client) -> reqwest::RequestBuilder,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n / 8 {
        let batch: Vec<_> = (0..8).map(|_| build(client).send()).collect();
        for resp in futures_util::future::join_all(batch).await {
            statuses.push(resp.unwrap().status().as_u16());
        }
    }
    statuses
}

fn entries_from(audit: &[Value], from: IpAddr) -> Vec<&Value> {
    let addr = from.to_string();
    audit
        .iter()
        .filter(|e| e["client_addr"] == addr.as_str())
        .collect()
}

/// A registered centre's certificate and key (PEM), for a client from a
/// chosen address.
async fn centre_identity(app: &TestApp, name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["centre.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    app.register_centre_from(name, &cert.pem(), &crate::common::x25519_public_b64())
        .await;
    format!("{}{}", cert.pem(), key.serialize_pem())
}

const LIMIT: u32 = 10;

#[tokio::test]
async fn token_guessing_is_one_alert_per_address_and_window() {
    let mut app = spawn_app_with(|c| c.limits.auth_failures_per_minute = LIMIT).await;
    let identity = centre_identity(&app, "Guessed Centre").await;

    // 200 forged operator tokens from one address on the main listener.
    let guesser = client_from(&app, ip(40), None);
    let cases = app.url("/api/v1/cases");
    let statuses = send_many(&guesser, 200, |c| {
        c.get(&cases).bearer_auth(forged_operator_token())
    })
    .await;
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        LIMIT as usize
    );
    assert_eq!(refused, 200 - LIMIT as usize, "{statuses:?}");

    // 64 forged grant tokens over a registered certificate, centre listener.
    let centre_guesser = client_from(&app, ip(41), Some(&identity));
    let grant_url = format!("https://127.0.0.1:{}/api/v1/grant", app.centre_addr.port());
    let statuses = send_many(&centre_guesser, 64, |c| {
        let forged = SecretToken::generate(TokenKind::Grant);
        c.get(&grant_url).bearer_auth(forged.expose())
    })
    .await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    // A few stale tokens (a patient's old link) stay below the threshold.
    let stale = client_from(&app, ip(42), None);
    send_many(&stale, 8, |c| {
        c.get(app.url("/api/v1/patient/case"))
            .bearer_auth(forged_operator_token())
    })
    .await;

    // The alert is written when the window ends — at the latest when the
    // gateway stops.
    app.restart().await;
    let audit = app.audit().await;
    let guessing = of_kind(&audit, "alert.token_guessing");
    assert_eq!(guessing.len(), 2, "{guessing:#?}");
    let main = entries_from(&audit, ip(40));
    let alert = main
        .iter()
        .find(|e| e["action"] == "alert.token_guessing")
        .expect("an alert for the main-listener guesser");
    assert_eq!(alert["actor"], "system:limiter");
    assert_eq!(alert["outcome"], "error");
    let reason = alert["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{LIMIT} requests from address 127.0.0.40"))
            && reason.contains(&format!("{refused} further requests were refused with 429")),
        "{reason}"
    );
    // The log grew by the individually recorded denials, the start and the
    // summary of limiting, and one alert — not by 200 entries.
    assert!(main.len() <= LIMIT as usize + 3, "{} entries", main.len());
    assert!(
        entries_from(&audit, ip(41))
            .iter()
            .any(|e| e["action"] == "alert.token_guessing")
    );
    assert!(
        !entries_from(&audit, ip(42))
            .iter()
            .any(|e| e["action"] == "alert.token_guessing")
    );

    let counted = alerts(&app).await;
    assert_eq!(count(&counted, "alert.token_guessing"), 2, "{counted}");
    app.stop().await;
}

/// A case with two files; a centre granted only the first.
struct Scene {
    app: TestApp,
    centre: Centre,
    case: String,
    granted: String,
    other: String,
    data: Vec<u8>,
}

async fn scene() -> Scene {
    let app = spawn_app_with(|_| {}).await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(50_000, 3);
    app.upload(&patient, "a.pdf", None, &data, data.len()).await;
    app.upload(&patient, "b.pdf", None, &pattern(2000, 4), 2000)
        .await;
    let manifest = app.patient_manifest(&patient).await;
    let id = |name: &str| {
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["filename"] == name)
            .unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (granted, other) = (id("a.pdf"), id("b.pdf"));
    let centre = register_centre(&app, "Centre Alpha").await;
    Scene {
        app,
        centre,
        case,
        granted,
        other,
        data,
    }
}

impl Scene {
    async fn grant(&self, max_downloads: i64) -> (String, String) {
        grant(
            &self.app,
            &self.case,
            json!({
                "centre_id": self.centre.id,
                "file_ids": [self.granted],
                "expires_in_secs": 3 * 3600,
                "max_downloads": max_downloads,
            }),
        )
        .await
    }

    async fn fetch(&self, file: &str, token: &str) -> u16 {
        let resp = self
            .centre
            .get(&format!("/api/v1/grant/files/{file}"), token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status == 200 {
            assert_eq!(resp.bytes().await.unwrap().as_ref(), &self.data[..]);
        }
        status
    }
}

#[tokio::test]
async fn files_outside_the_grant_are_one_alert_per_grant_and_hour() {
    let s = scene().await;
    let (grant_id, token) = s.grant(5).await;
    for _ in 0..3 {
        assert_eq!(s.fetch(&s.other, &token).await, 404, "answer unchanged");
    }
    let audit = s.app.audit().await;
    let outside = of_kind(&audit, "alert.outside_grant");
    assert_eq!(outside.len(), 1, "{outside:#?}");
    let alert = outside[0];
    assert_eq!(alert["grant_id"], grant_id.as_str());
    assert_eq!(alert["centre_id"], s.centre.id.as_str());
    assert_eq!(alert["case_id"], s.case.as_str());
    assert_eq!(alert["file_id"], s.other.as_str());
    assert_eq!(alert["actor"], "system:downloads");
    assert!(alert["client_cert_sha256"].is_string(), "{alert}");
    let reason = alert["reason"].as_str().unwrap();
    // The centre by id only: a name in the log would pair the case with a
    // named centre for good.
    assert!(
        reason.contains(s.centre.id.as_str())
            && !reason.contains("Centre Alpha")
            && reason.contains("not in the grant"),
        "{reason}"
    );
    // Each request is still its own denial, tied to the alert by request id.
    let denials = audit
        .iter()
        .filter(|e| {
            e["outcome"] == "deny" && e["file_id"].is_null() && e["grant_id"] == grant_id.as_str()
        })
        .count();
    assert_eq!(denials, 3);

    // An hour later a repeat is a new alert.
    s.app.clock.advance(3601);
    assert_eq!(s.fetch(&s.other, &token).await, 404);
    assert_eq!(count(&alerts(&s.app).await, "alert.outside_grant"), 2);
    // Files in the grant raise nothing.
    assert_eq!(s.fetch(&s.granted, &token).await, 200);
    assert_eq!(count(&alerts(&s.app).await, "alert.over_download"), 0);
    s.app.stop().await;
}

#[tokio::test]
async fn downloads_beyond_twice_a_files_size_or_its_budget_are_one_alert_per_grant_and_file() {
    let s = scene().await;
    let (grant_id, token) = s.grant(5).await;
    // Two whole copies: a review and a re-fetch, no alert.
    for _ in 0..2 {
        assert_eq!(s.fetch(&s.granted, &token).await, 200);
    }
    assert_eq!(count(&alerts(&s.app).await, "alert.over_download"), 0);
    // A third whole copy (still within max_downloads 5): served, one alert.
    for _ in 0..3 {
        assert_eq!(s.fetch(&s.granted, &token).await, 200, "answer unchanged");
    }
    let audit = s.app.audit().await;
    let over = of_kind(&audit, "alert.over_download");
    assert_eq!(over.len(), 1, "{over:#?}");
    assert_eq!(over[0]["grant_id"], grant_id.as_str());
    assert_eq!(over[0]["file_id"], s.granted.as_str());
    let reason = over[0]["reason"].as_str().unwrap();
    let size = s.data.len();
    assert!(
        reason.contains(&format!("{} bytes", 3 * size))
            && reason.contains(&format!("twice its size of {size} bytes")),
        "{reason}"
    );

    // Another grant allowing one download: the refusal after it is an alert
    // for that grant, once.
    let (second, token) = s.grant(1).await;
    assert_eq!(s.fetch(&s.granted, &token).await, 200);
    for _ in 0..3 {
        assert_eq!(s.fetch(&s.granted, &token).await, 403, "grant_exhausted");
    }
    let audit = s.app.audit().await;
    let over = of_kind(&audit, "alert.over_download");
    assert_eq!(over.len(), 2, "{over:#?}");
    assert_eq!(over[1]["grant_id"], second.as_str());
    assert!(
        over[1]["reason"]
            .as_str()
            .unwrap()
            .contains("after the grant's downloads of it were used up"),
        "{}",
        over[1]
    );
    assert_eq!(count(&alerts(&s.app).await, "alert.over_download"), 2);
    s.app.stop().await;
}

#[tokio::test]
async fn a_disabled_centres_certificate_is_an_alert() {
    let s = scene().await;
    let (_, token) = s.grant(5).await;
    assert_eq!(s.fetch(&s.granted, &token).await, 200);
    // A live centre's refusal (a forged token) is no such alert.
    let forged = SecretToken::generate(TokenKind::Grant);
    assert_eq!(s.fetch(&s.granted, forged.expose()).await, 401);
    assert_eq!(count(&alerts(&s.app).await, "alert.disabled_centre"), 0);

    let resp = s
        .app
        .request(
            Method::DELETE,
            &format!("/api/v1/centres/{}", s.centre.id),
            Some(&s.app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    let resp = s.centre.get("/api/v1/grant", &token).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "grant_revoked", "answer unchanged");
    assert_eq!(s.fetch(&s.granted, forged.expose()).await, 401);

    let audit = s.app.audit().await;
    let disabled = of_kind(&audit, "alert.disabled_centre");
    assert_eq!(disabled.len(), 1, "once per centre and hour: {disabled:#?}");
    assert_eq!(disabled[0]["centre_id"], s.centre.id.as_str());
    assert_eq!(disabled[0]["actor"], "system:centres");
    let fingerprint = disabled[0]["client_cert_sha256"].as_str().unwrap();
    assert!(
        disabled[0]["reason"].as_str().unwrap().contains(&format!(
            "certificate {fingerprint} of centre {}",
            s.centre.id
        )),
        "{}",
        disabled[0]
    );
    assert_eq!(count(&alerts(&s.app).await, "alert.disabled_centre"), 1);
    s.app.stop().await;
}

/// A copy directory the gateway cannot write: the checkpoint is still
/// signed, stored and served, and the failure is an alert. (Permissions do
/// not stop root: skipped there; the copy target being a file is tested in
/// `audit_proofs`.)
#[tokio::test]
async fn an_unwritable_checkpoint_copy_directory_is_an_alert_and_the_checkpoint_still_made() {
    use std::os::unix::fs::PermissionsExt;
    let copies = tempfile::tempdir().unwrap();
    let dir = copies.path().join("checkpoints");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(dir.join("probe"), b"x").is_ok() {
        eprintln!("skipped: permissions do not stop this user (root)");
        return;
    }
    let target = dir.display().to_string();
    let app = spawn_app_with(|c| c.audit.checkpoint_copy = Some(target)).await;
    app.create_case(None).await;
    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit/checkpoint",
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let note = resp.text().await.unwrap();
    let size: i64 = note.lines().nth(1).unwrap().parse().unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE tree_size = $1")
            .bind(size)
            .fetch_one(&app.db().await)
            .await
            .unwrap();
    assert_eq!(stored, 1);
    let counted = alerts(&app).await;
    assert!(count(&counted, "alert.checkpoint_copy") >= 1, "{counted}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    app.stop().await;
}
