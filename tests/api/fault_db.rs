//! The database locked: another connection holds SQLite's write lock
//! (`BEGIN IMMEDIATE`, as a backup tool or a `sqlite3` shell left in a
//! transaction does), or on PostgreSQL the gateway's write lock (the
//! advisory lock every write transaction takes). A short lock is waited
//! out; a long one makes every audited action — writes and audited reads
//! alike — fail closed with 503 `audit_unavailable` once the busy timeout
//! (SQLite: 10 s, not configurable; PostgreSQL: `database.
//! statement_timeout_secs`, 10 s in the tests) runs out, while what needs no audit entry keeps answering. Nothing is
//! committed half-way, and requests succeed again as soon as the lock is
//! released. A download whose end waits for the lock is recorded once it
//! is released, also when its client went away meanwhile.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::common::{TestApp, spawn_app, spawn_app_with};
use crate::grants::{grant, register_centre};
use crate::tus::{meta, pattern, sha256_hex};

/// SQLite's busy timeout in the gateway (src/db/backend.rs), and the
/// statement timeout the tests give PostgreSQL.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection of its own to the gateway's database, holding the write
/// lock until `release`.
struct WriteLock(sqlx::AnyConnection);

impl WriteLock {
    async fn take(app: &TestApp) -> WriteLock {
        let mut conn = sqlx::AnyConnection::connect(&app.config.database.url)
            .await
            .unwrap();
        let begin = if app.on_postgres() {
            format!(
                "BEGIN; SELECT pg_advisory_xact_lock({});",
                casegate::db::WRITE_LOCK_KEY
            )
        } else {
            "BEGIN IMMEDIATE".to_owned()
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(begin))
            .execute(&mut conn)
            .await
            .unwrap();
        WriteLock(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
        self.0.close().await.unwrap();
    }
}

/// Status and `code` of an answer.
async fn outcome(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

async fn case_ids(app: &TestApp) -> Vec<String> {
    let list = app.get_json("/api/v1/cases", &app.coordinator).await;
    let mut ids: Vec<String> = list
        .as_array()
        .or_else(|| list["cases"].as_array())
        .unwrap_or_else(|| panic!("case list: {list}"))
        .iter()
        .map(|c| c["case_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_refuses_audited_actions_then_recovers() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(300_000, 8);
    let upload = app
        .upload(&patient, "report.pdf", None, &data, 100_000)
        .await;

    // A lock held for 2 s is waited out.
    let lock = WriteLock::take(&app).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lock.release().await;
    });
    let started = Instant::now();
    let resp = app
        .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 201, "a short lock is waited out");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    release.await.unwrap();
    let before = case_ids(&app).await;
    let audit_before = app.audit().await.len();

    // A lock held longer than the busy timeout: every audited action, at
    // once, is refused when it runs out.
    let lock = WriteLock::take(&app).await;
    let started = Instant::now();
    let case_path = format!("/api/v1/cases/{case}");
    let refused = futures_util::future::join_all([
        app.request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None),
        app.request(Method::GET, "/api/v1/cases", Some(&app.coordinator), None),
        app.request(Method::GET, &case_path, Some(&app.coordinator), None),
        app.request(Method::GET, "/api/v1/patient/case", Some(&patient), None),
    ]);
    let head = app.tus(Method::HEAD, &upload, &patient).send();
    // Meanwhile what needs no audit entry answers at once.
    let unaudited = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        let health = app.request(Method::GET, "/healthz", None, None).await;
        assert_eq!(health.status(), 200);
        let options = app.client.request(Method::OPTIONS, app.url("/tus/")).send();
        assert_eq!(options.await.unwrap().status(), 204);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "unaudited routes waited for the lock"
        );
    };
    let (refused, head, (), ready) = tokio::join!(refused, head, unaudited, async {
        app.request(Method::GET, "/readyz", None, None).await
    });
    let waited = started.elapsed();
    for (what, resp) in [
        "create case",
        "list cases",
        "case manifest",
        "patient manifest",
    ]
    .into_iter()
    .zip(refused)
    {
        assert_eq!(
            outcome(resp).await,
            (503, "audit_unavailable".to_owned()),
            "{what}"
        );
    }
    // (A HEAD answer has no body to carry a code.)
    assert_eq!(head.unwrap().status(), 503, "tus HEAD");
    assert_eq!(ready.status(), 503, "/readyz while writes fail");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["audit_log"], "unavailable", "{ready}");
    assert!(
        waited >= BUSY_TIMEOUT - Duration::from_secs(1) && waited < 2 * BUSY_TIMEOUT,
        "refused after {waited:?}, busy timeout {BUSY_TIMEOUT:?}"
    );

    // Released: requests succeed again at once, and nothing refused left a
    // trace — no case, no audit entry, no gap in the sequence.
    lock.release().await;
    let started = Instant::now();
    let resp = app
        .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 201);
    let created = resp.json::<Value>().await.unwrap()["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(app.tus_offset(&patient, &upload).await, data.len() as u64);
    let mut expected = before.clone();
    expected.push(created);
    expected.sort();
    assert_eq!(case_ids(&app).await, expected, "cases after the lock");
    let audit = app.audit().await;
    for (i, entry) in audit.iter().enumerate() {
        assert_eq!(entry["seq"], i as u64 + 1, "audit sequence has a gap");
    }
    // Since the lock, only what was asked after it: one create, one HEAD,
    // one case list; nothing of the refused requests.
    let since = &audit[audit_before..];
    let count = |action: &str| since.iter().filter(|e| e["action"] == action).count();
    for (action, n) in [
        ("case.create", 1),
        ("upload.head", 1),
        ("case.list", 1),
        ("case.read", 0),
        ("patient.case.read", 0),
    ] {
        assert_eq!(
            count(action),
            n,
            "{action} entries since the lock: {since:#?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app
        .request(Method::GET, "/readyz", None, None)
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "/readyz stayed 503");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// Three quarters of a file, uploaded in one PATCH, with durable points
/// every 256 KiB: returns the upload's path, the data and the offset
/// acknowledged.
async fn partly_uploaded(app: &TestApp, patient: &str) -> (String, Vec<u8>, u64) {
    let data = pattern(3_000_000, 9);
    let path = app
        .tus_create(patient, data.len() as u64, &meta("scan.zip", None))
        .await;
    let resp = app
        .tus_patch(patient, &path, 0, data[..1_000_000].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    (path, data, 1_000_000)
}

/// A PATCH whose durable point meets the lock is refused; its bytes are
/// not acknowledged, the offset stays, nothing of it is on record, and
/// once the lock is released the same PATCH goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_refuses_a_patch_and_keeps_its_offset() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 256 * 1024).await;
    let (_, patient) = app.create_case(None).await;
    let (path, data, acked) = partly_uploaded(&app, &patient).await;

    let lock = WriteLock::take(&app).await;
    let resp = app
        .tus_patch(&patient, &path, acked, data[acked as usize..].to_vec())
        .await;
    assert_eq!(resp.status(), 503, "a PATCH under the lock");
    lock.release().await;

    assert_eq!(app.tus_offset(&patient, &path).await, acked);
    let resp = app
        .tus_patch(&patient, &path, acked, data[acked as usize..].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&data));
    // The stored ranges on record chain from 0 to the end: the refused
    // PATCH committed none.
    let audit = app.audit().await;
    let mut at = 0u64;
    for e in audit
        .iter()
        .filter(|e| e["action"] == "upload.patch" && e["outcome"] == "allow")
    {
        let reason = e["reason"].as_str().unwrap();
        let range = reason
            .strip_prefix("bytes ")
            .and_then(|r| r.split(' ').next())
            .and_then(|r| r.split_once(".."))
            .unwrap_or_else(|| panic!("{reason}"));
        let (from, to): (u64, u64) = (range.0.parse().unwrap(), range.1.parse().unwrap());
        assert_eq!(from, at, "stored ranges on record: {reason}");
        at = to;
    }
    assert_eq!(at, data.len() as u64);
    app.stop().await;
}

/// The refusal says what failed: its audit entry could not be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_refused_by_a_locked_database_says_audit_unavailable() {
    let app = spawn_app_with(|c| c.uploads.sync_every_bytes = 256 * 1024).await;
    let (_, patient) = app.create_case(None).await;
    let (path, data, acked) = partly_uploaded(&app, &patient).await;
    let lock = WriteLock::take(&app).await;
    let resp = app
        .tus_patch(&patient, &path, acked, data[acked as usize..].to_vec())
        .await;
    let refused = outcome(resp).await;
    lock.release().await;
    assert_eq!(refused, (503, "audit_unavailable".to_owned()));
    app.stop().await;
}

/// A download whose end meets the lock, and whose client goes away while
/// the end waits: the end is still recorded once the lock is released
/// (lease settled, end entry written), not left to the stale sweep with
/// the file's budget held for minutes. HTTP/2 with the smallest flow
/// control windows holds the body back: hyper polls a body one frame
/// ahead of what the window lets out, so of a file of two 64 KiB frames
/// the second (whose poll records the download's first progress) waits
/// for the client to read, and the end comes only after it, when the
/// test holds the lock. The waits after that only order the steps: too
/// short, the test passes without testing anything, it never fails for
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_ended_under_the_lock_is_recorded_though_its_client_left() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let data = pattern(128 * 1024, 11);
    app.upload(&patient, "ct.bin", None, &data, 128 * 1024)
        .await;
    let centre = register_centre(&app, "Centre L").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 1 }),
    )
    .await;
    let (_, file_id) = centre.grant_listing(&token).await;
    let (cert, key) = &centre.identity;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem).unwrap())
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(65_535)
        .http2_adaptive_window(false)
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/api/v1/grant/files/{file_id}", centre.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let db = app.db().await;
    let lease = |query: &'static str| {
        let db = db.clone();
        async move {
            let rows: Vec<i64> = sqlx::query_scalar(query).fetch_all(&db).await.unwrap();
            rows
        }
    };
    // The second frame is polled (its progress recorded), and waits.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    while lease("SELECT sent FROM download_leases").await != [65_536] {
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let lock = WriteLock::take(&app).await;
    let mut got = Vec::new();
    let mut body = resp.bytes_stream();
    while got.len() < data.len() {
        got.extend_from_slice(&body.next().await.expect("body ended early").unwrap());
    }
    assert_eq!(got, data);
    // The body's end now waits for the lock; then the client goes away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop((body, client));
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;

    let deadline = Instant::now() + BUSY_TIMEOUT;
    while lease("SELECT COUNT(*) FROM download_leases").await != [0] {
        assert!(
            Instant::now() < deadline,
            "the download's lease is still held after its end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ends: Vec<Value> = app
        .audit()
        .await
        .into_iter()
        .filter(|e| e["action"] == "download.plaintext" && e["reason"] == "end: 131072 bytes sent")
        .collect();
    assert_eq!(ends.len(), 1, "one end entry: {ends:#?}");
    assert_eq!(ends[0]["outcome"], "allow");
    app.stop().await;
}
