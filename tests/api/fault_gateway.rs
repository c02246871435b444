//! The two sides of the kill -9 suite (fault_kill.rs): the gateway as a
//! subprocess that can be killed at any moment, and a tus client that
//! survives it — it keeps a ledger of every offset it was told and every
//! byte it sent, and checks each restart against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use serde_json::Value;

use crate::fault_kill::{KillAt, Profile, Rng};

/// Bytes handed to the connection at a time.
const PIECE: u64 = 64 << 10;

/// A running `casegate serve`, killed with SIGKILL exactly once.
pub struct Gateway {
    child: Mutex<Child>,
    killed: AtomicBool,
    pub base: String,
}

impl Gateway {
    /// Starts the binary on `dir` and waits for its start-up lines only
    /// (restarts are the cost of this suite). On a first start, returns
    /// the coordinator token too.
    pub fn boot(
        dir: &Path,
        env: &[(String, String)],
        first: bool,
    ) -> (Arc<Gateway>, Option<String>) {
        let mut cmd = crate::startup::casegate(dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Drains until the child dies, so it never writes into a
            // closed pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut coordinator) = (None, None);
        let mut seen = Vec::new();
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(e) => {
                    let status = child.try_wait();
                    panic!("gateway did not start ({e}; exit {status:?}): {seen:#?}")
                }
            };
            seen.push(line.clone());
            if let Some(a) = line.strip_prefix("listening on https://") {
                addr = Some(a.to_owned());
            }
            if let Some(t) = line.strip_prefix("coordinator token: ") {
                coordinator = Some(t.to_owned());
            }
            let done = if first {
                line.starts_with("compliance token: ")
            } else {
                line.starts_with("centre listener on ")
            };
            if done {
                break;
            }
        }
        let gateway = Gateway {
            child: Mutex::new(child),
            killed: AtomicBool::new(false),
            base: format!("https://{}", addr.expect("listening line")),
        };
        (Arc::new(gateway), coordinator)
    }

    pub fn kill(&self) {
        if !self.killed.swap(true, Ordering::SeqCst) {
            self.child.lock().unwrap().kill().unwrap();
        }
    }

    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    pub fn wait(&self) {
        self.child.lock().unwrap().wait().unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Also when a test fails: no gateway outlives its test.
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the client was told and what it sent, across every round.
#[derive(Default)]
pub struct Ledger {
    /// The highest offset any answer acknowledged.
    pub acked: AtomicU64,
    /// The highest byte position handed to a connection.
    pub sent: AtomicU64,
    /// Bytes handed to connections in total (re-sends included).
    pub streamed: AtomicU64,
    /// Restarts whose HEAD was beyond every acknowledged offset: durable
    /// points taken inside a PATCH that was cut.
    pub beyond_acked: AtomicU64,
    /// PATCH requests sent.
    pub patches: AtomicU64,
}

pub struct Client {
    pub http: reqwest::Client,
    pub token: String,
    pub path: String,
    pub data: Bytes,
    pub ledger: Arc<Ledger>,
    pub profile: Profile,
}

/// Why a round's client stopped.
pub enum Stopped {
    /// The connection broke (the gateway was killed).
    Cut,
    /// The upload is complete.
    Complete,
}

impl Client {
    fn tus(&self, gw: &Gateway, method: Method) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", gw.base, self.path))
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
    }

    /// A transport error is only acceptable once the gateway was killed.
    fn cut(&self, gw: &Gateway, e: reqwest::Error, what: &str, ctx: &str) -> Stopped {
        assert!(gw.killed(), "{ctx}: {what} failed without a kill: {e:?}");
        Stopped::Cut
    }

    /// Bytes `from..to` as a request body, handed out no faster than the
    /// profile's pace: a faster client only fills the HTTP/2 window
    /// (4 MiB) and socket buffers, and the gateway would be killed long
    /// before it has read what the client counts as sent. From `stall_at`
    /// on, the body hands out nothing more and never ends.
    fn paced_body(&self, from: u64, to: u64, stall_at: Option<u64>) -> reqwest::Body {
        let ledger = self.ledger.clone();
        let data = self.data.clone();
        let pace = self.profile.pace;
        let start = tokio::time::Instant::now();
        let pieces = futures_util::stream::unfold(from, move |at| {
            let (ledger, data) = (ledger.clone(), data.clone());
            async move {
                if at >= to {
                    return None;
                }
                if stall_at.is_some_and(|s| at >= s) {
                    std::future::pending::<()>().await;
                }
                let due = start + Duration::from_secs_f64((at - from) as f64 / pace as f64);
                tokio::time::sleep_until(due).await;
                let stop = (at + PIECE).min(to);
                ledger.streamed.fetch_add(stop - at, Ordering::SeqCst);
                ledger.sent.fetch_max(stop, Ordering::SeqCst);
                let piece = data.slice(at as usize..stop as usize);
                Some((Ok::<_, std::io::Error>(piece), stop))
            }
        });
        reqwest::Body::wrap_stream(pieces)
    }

    /// HEAD after a restart: checks it against the ledger, then uploads
    /// with PATCHes of varied sizes until the connection is cut or the
    /// upload is complete.
    pub async fn round(
        &self,
        gw: &Gateway,
        mut rng: Rng,
        kill: Option<KillAt>,
        ctx: &str,
    ) -> Stopped {
        let len = self.data.len() as u64;
        let resp = match self.tus(gw, Method::HEAD).send().await {
            Ok(r) => r,
            Err(e) => return self.cut(gw, e, "HEAD", ctx),
        };
        assert_eq!(resp.status(), 200, "{ctx}: HEAD");
        let mut offset: u64 = resp.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let (acked, sent) = (
            self.ledger.acked.load(Ordering::SeqCst),
            self.ledger.sent.load(Ordering::SeqCst),
        );
        assert!(
            offset >= acked,
            "{ctx}: HEAD says {offset} after the restart, but {acked} was acknowledged before the kill"
        );
        assert!(
            offset <= sent,
            "{ctx}: HEAD says {offset}, more than the {sent} bytes ever sent"
        );
        if offset > acked {
            self.ledger.beyond_acked.fetch_add(1, Ordering::SeqCst);
        }
        self.ledger.acked.fetch_max(offset, Ordering::SeqCst);
        eprintln!("{ctx}: HEAD {offset} (acknowledged {acked}, sent {sent}); kill: {kill:?}");
        let answer_target = match kill {
            Some(KillAt::Answer { gap }) => Some((offset + gap).min(len)),
            _ => None,
        };
        if answer_target.is_some_and(|t| offset >= t) {
            // Complete already: HEAD's was the last answer.
            gw.kill();
            return Stopped::Cut;
        }
        while offset < len {
            let rest = len - offset;
            // One long PATCH now and then, except where the kill waits for
            // an answer (it would overshoot to the end).
            let stall_at = match kill {
                Some(KillAt::Stall { gap, .. }) => Some((offset + gap).min(len - 1)),
                _ => None,
            };
            let size = if stall_at.is_some() || answer_target.is_none() && rng.below(8) == 0 {
                rest
            } else {
                rng.log_uniform(self.profile.min_patch, 8 << 20).min(rest)
            };
            // Where the kill waits for an answer, the PATCH that reaches
            // its target ends there: the kill lands where it was drawn.
            let end = (offset + size).min(answer_target.unwrap_or(len));
            let body = self.paced_body(offset, end, stall_at);
            self.ledger.patches.fetch_add(1, Ordering::SeqCst);
            let resp = self
                .tus(gw, Method::PATCH)
                .header("Upload-Offset", offset.to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(body)
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => return self.cut(gw, e, "PATCH", ctx),
            };
            let status = resp.status();
            let answered = resp
                .headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            assert_eq!(
                status,
                204,
                "{ctx}: PATCH {offset}..{end}: {:?}",
                resp.text().await
            );
            let answered = answered.expect("Upload-Offset on a 204");
            assert_eq!(answered, end, "{ctx}: PATCH {offset}..{end} answered");
            self.ledger.acked.fetch_max(answered, Ordering::SeqCst);
            if answer_target.is_some_and(|t| answered >= t) {
                gw.kill();
                return Stopped::Cut;
            }
            offset = answered;
        }
        Stopped::Complete
    }

    /// The patient's manifest entry of the upload, once it is no longer
    /// `uploading` (completion runs in the last PATCH, or in the sweeper
    /// at start when a kill interrupted it). A completion after a restart
    /// re-hashes the whole object (the running hash is not kept across a
    /// kill): 64 MiB read back from S3 by a debug build on a CI machine
    /// running the rest of the suite in parallel has been seen to take
    /// over a minute.
    pub async fn finished(&self, gw: &Gateway, ctx: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let resp = self
                .http
                .get(format!("{}/api/v1/patient/case", gw.base))
                .bearer_auth(&self.token)
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    self.cut(gw, e, "manifest", ctx);
                    return None;
                }
            };
            assert_eq!(resp.status(), 200, "{ctx}: manifest");
            let m: Value = resp.json().await.unwrap();
            let file = m["files"][0].clone();
            if file["state"] != "uploading" {
                return Some(file);
            }
            assert!(
                Instant::now() < deadline,
                "{ctx}: the upload is not completed: {file}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
