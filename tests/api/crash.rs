//! kill -9 of the real binary mid-upload: after a restart, HEAD reports
//! exactly what was acknowledged (and at least every durable point taken
//! inside the interrupted PATCH), the upload resumes, and the stored file's
//! SHA-256 is the original's.

use std::process::Child;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::startup::{start_with, value};
use crate::tus::{meta, pattern, sha256_hex};

struct Gateway {
    child: Child,
    base: String,
    client: reqwest::Client,
}

fn boot(dir: &std::path::Path, env: &[(String, String)]) -> (Gateway, Vec<String>) {
    // Small durable-point interval, so an interrupted PATCH has some.
    let mut vars: Vec<(&str, &str)> = vec![("CASEGATE_UPLOADS__SYNC_EVERY_BYTES", "262144")];
    vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (child, lines) = start_with(dir, &vars);
    let addr = value(&lines, "listening on https://")
        .expect("listening line")
        .to_owned();
    let ca = std::fs::read(dir.join("certs/dev-ca.pem")).unwrap();
    let gw = Gateway {
        child,
        base: format!("https://{addr}"),
        client: crate::common::client_trusting(&ca),
    };
    (gw, lines)
}

impl Gateway {
    fn kill9(mut self) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap();
    }

    fn tus(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("Tus-Resumable", "1.0.0")
    }

    async fn offset(&self, token: &str, path: &str) -> u64 {
        let resp = self.tus(Method::HEAD, path, token).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// A new case and an upload of `len` bytes in it: (patient token,
    /// upload path).
    async fn new_upload(&self, coordinator: &str, len: usize) -> (String, String) {
        let created: Value = self
            .client
            .post(format!("{}/api/v1/cases", self.base))
            .bearer_auth(coordinator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let patient = created["upload_token"].as_str().unwrap().to_owned();
        let resp = self
            .tus(Method::POST, "/tus/", &patient)
            .header("Upload-Length", len.to_string())
            .header("Upload-Metadata", meta("CT-series.zip", None))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let path = resp.headers()["location"].to_str().unwrap().to_owned();
        (patient, path)
    }

    /// A PATCH from `offset` whose body is what is sent into the channel,
    /// open until the sender is dropped.
    fn streaming_patch(
        &self,
        token: &str,
        path: &str,
        offset: u64,
    ) -> (
        tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
        tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
        let req = self
            .tus(Method::PATCH, path, token)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body);
        (tx, tokio::spawn(async move { req.send().await }))
    }

    async fn patch(&self, token: &str, path: &str, offset: u64, body: Vec<u8>) -> u64 {
        let resp = self
            .tus(Method::PATCH, path, token)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        resp.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// The environment that points the binary at an S3 server.
pub fn s3_env(config: &casegate::config::S3Config) -> Vec<(String, String)> {
    [
        ("CASEGATE_STORAGE__BACKEND", "s3"),
        ("CASEGATE_STORAGE__S3__ENDPOINT", config.endpoint.as_str()),
        ("CASEGATE_STORAGE__S3__REGION", config.region.as_str()),
        ("CASEGATE_STORAGE__S3__BUCKET", config.bucket.as_str()),
        (
            "CASEGATE_STORAGE__S3__ACCESS_KEY",
            config.access_key.as_str(),
        ),
        (
            "CASEGATE_STORAGE__S3__SECRET_KEY",
            config.secret_key.expose(),
        ),
        ("CASEGATE_STORAGE__S3__PATH_STYLE", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// [`s3_env`] with fewer durable points: each one on S3 rewrites the
/// staging object (up to a part), so fewer keep the test quick.
fn s3_env_few_syncs(config: &casegate::config::S3Config) -> Vec<(String, String)> {
    let mut env = s3_env(config);
    env.push((
        "CASEGATE_UPLOADS__SYNC_EVERY_BYTES".into(),
        "4194304".into(),
    ));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_fs() {
    kill_9_mid_upload_loses_nothing_acknowledged(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_s3s_fs() {
    let s3 = crate::support::s3s_fs().await;
    kill_9_mid_upload_loses_nothing_acknowledged(&s3_env_few_syncs(&s3.config)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_garage() {
    let Some(s3) = crate::support::garage() else {
        return;
    };
    kill_9_mid_upload_loses_nothing_acknowledged(&s3_env_few_syncs(&s3.config)).await;
}

async fn kill_9_mid_upload_loses_nothing_acknowledged(env: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let (gw, lines) = boot(dir.path(), env);
    let coordinator = value(&lines, "coordinator token: ").unwrap().to_owned();
    let data = pattern(18 * 1024 * 1024 + 12_345, 99);
    let (patient, path) = gw.new_upload(&coordinator, data.len()).await;

    // 1. An acknowledged PATCH, then kill -9 at once.
    let acked = gw
        .patch(&patient, &path, 0, data[..1_000_003].to_vec())
        .await;
    assert_eq!(acked, 1_000_003);
    gw.kill9();
    let (gw, _) = boot(dir.path(), env);
    assert_eq!(
        gw.offset(&patient, &path).await,
        acked,
        "acknowledged bytes survive kill -9"
    );

    // 2. A PATCH still streaming when the gateway dies: its durable points
    //    survive, nothing else is claimed.
    let (tx, inflight) = gw.streaming_patch(&patient, &path, acked);
    let sent_end = acked as usize + 10 * 1024 * 1024;
    for piece in data[acked as usize..sent_end].chunks(256 * 1024) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    let mut seen = acked;
    for _ in 0..100 {
        seen = gw.offset(&patient, &path).await;
        if seen > acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen > acked, "durable points inside a long PATCH");
    gw.kill9();
    drop(tx);
    let _ = inflight.await;

    let (gw, _) = boot(dir.path(), env);
    let after = gw.offset(&patient, &path).await;
    assert!(
        after >= seen && after <= sent_end as u64,
        "seen {seen}, after restart {after}, sent up to {sent_end}"
    );
    let done = gw
        .patch(&patient, &path, after, data[after as usize..].to_vec())
        .await;
    assert_eq!(done, data.len() as u64);
    let manifest: Value = gw
        .client
        .get(format!("{}/api/v1/patient/case", gw.base))
        .bearer_auth(&patient)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["files"][0]["sha256"], sha256_hex(&data));
    assert_eq!(manifest["files"][0]["state"], "complete");
    gw.kill9();
}

/// SIGTERM while a PATCH streams (S3, where its last durable point takes
/// longest: parts in flight and a staging object): when the grace runs out
/// the connection is closed, which ends the PATCH's body, and the process
/// waits for its last durable point instead of ending under it — every
/// byte the gateway received is kept. (Without the close the PATCH waited
/// for more body until the process ended; without the wait it ended
/// mid-point.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_patch_keeps_what_arrived_s3s_fs_h2() {
    sigterm_mid_patch_keeps_what_arrived(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_patch_keeps_what_arrived_s3s_fs_h1() {
    sigterm_mid_patch_keeps_what_arrived(true).await;
}

/// `h1`: over HTTP/1.1 (hyper ends a cut body differently than HTTP/2).
async fn sigterm_mid_patch_keeps_what_arrived(h1: bool) {
    let s3 = crate::support::s3s_fs().await;
    let mut env = s3_env(&s3.config);
    for (k, v) in [
        // No durable point inside the PATCH: only the one at its cut.
        ("CASEGATE_UPLOADS__SYNC_EVERY_BYTES", "1073741824"),
        // Long enough for the gateway to read what was sent on a busy
        // machine; the body stays open past it.
        ("CASEGATE_SERVER__SHUTDOWN_GRACE_SECS", "3"),
    ] {
        env.push((k.into(), v.into()));
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, lines) = boot(dir.path(), &env);
    if h1 {
        let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
        gw.client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .http1_only()
            .build()
            .unwrap();
    }
    let coordinator = value(&lines, "coordinator token: ").unwrap().to_owned();
    let data = pattern(40 * 1024 * 1024, 7);
    let (patient, path) = gw.new_upload(&coordinator, data.len()).await;
    let (tx, inflight) = gw.streaming_patch(&patient, &path, 0);
    let sent = 20 * 1024 * 1024 + 12_345;
    for piece in data[..sent].chunks(256 * 1024) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    // Let the gateway read it all, then stop it with the body still open.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut child = gw.child;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut stopped = None;
    for _ in 0..600 {
        stopped = child.try_wait().unwrap();
        if stopped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped.is_some_and(|s| s.success()), "stopped: {stopped:?}");
    drop(tx);
    let _ = inflight.await;

    let (gw, _) = boot(dir.path(), &env);
    assert_eq!(
        gw.offset(&patient, &path).await,
        sent as u64,
        "bytes received before the stop were lost"
    );
    gw.kill9();
}
