//! Real S3 servers for tests: s3s-fs in process (always), and Garage when
//! `.ci/run` started one (CASEGATE_TEST_S3_* variables; with
//! CASEGATE_REQUIRE_GARAGE set, a missing Garage is a failure).
//!
//! Outages: an s3s-fs server can be stopped (its listener closes and every
//! open connection is cut) and started again on the same port and
//! directory; Garage, shared by every test running at once, is instead
//! reached through a forwarder on its own port that can be stopped and
//! started the same way. An s3s-fs server can also stop answering part
//! uploads (`stall_parts`): they are read and never answered, as by a
//! store whose disk hangs.
#![allow(dead_code)]

pub mod tmpfs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use casegate::config::{S3Config, Secret};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const ACCESS_KEY: &str = "AKCASEGATETEST";
const SECRET_KEY: &str = "casegate-test-secret-key-0123456789";

pub struct TestS3 {
    pub config: S3Config,
    _dir: Option<tempfile::TempDir>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// What `start` serves again after a `stop`, and where.
    restartable: Option<(SocketAddr, Serve)>,
}

/// What a restartable server serves.
#[derive(Clone)]
enum Serve {
    /// s3s-fs on this directory; part uploads left unanswered while the
    /// flag is set.
    Fs(PathBuf, Arc<AtomicBool>),
    /// A plain TCP forwarder to this address (Garage).
    Forward(SocketAddr),
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl TestS3 {
    /// From now on (`true`) part uploads are never answered, or again
    /// answered (`false`). s3s-fs only.
    pub fn stall_parts(&self, stall: bool) {
        match &self.restartable {
            Some((_, Serve::Fs(_, flag))) => flag.store(stall, Ordering::SeqCst),
            _ => panic!("only an s3s-fs server can stall parts"),
        }
    }

    /// The store goes away: the listener closes and every open connection
    /// is cut, as when the S3 server's process dies.
    pub async fn stop(&mut self) {
        assert!(
            self.restartable.is_some(),
            "this S3 server cannot be stopped"
        );
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The store comes back on the same port (and, for s3s-fs, the same
    /// directory: every object and multipart part written before is there).
    pub async fn start(&mut self) {
        let (addr, serve) = self.restartable.clone().expect("a restartable S3 server");
        assert!(self.task.is_none(), "already running");
        let listener = TcpListener::bind(addr).await.unwrap();
        self.task = Some(spawn_server(listener, serve));
    }
}

/// Serves `listener` until aborted; aborting also cuts every connection
/// (they live in a `JoinSet` owned by the accepting task).
fn spawn_server(listener: TcpListener, serve: Serve) -> tokio::task::JoinHandle<()> {
    let service = match &serve {
        Serve::Fs(root, _) => {
            let fs = s3s_fs::FileSystem::new(root).unwrap();
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            Some(builder.build())
        }
        Serve::Forward(_) => None,
    };
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                Some(_) = connections.join_next() => continue,
            };
            match (&serve, &service) {
                (Serve::Fs(_, stall), Some(service)) => {
                    let service = service.clone();
                    let stall = stall.clone();
                    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let service = service.clone();
                        let stalled = stall.load(Ordering::SeqCst)
                            && req.uri().query().is_some_and(|q| q.contains("partNumber"));
                        async move {
                            if stalled {
                                std::future::pending::<()>().await;
                            }
                            hyper::service::Service::call(&service, req).await
                        }
                    });
                    connections.spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                (Serve::Forward(upstream), _) => {
                    let upstream = *upstream;
                    connections.spawn(async move {
                        let mut stream = stream;
                        if let Ok(mut to) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut stream, &mut to).await;
                        }
                    });
                }
                _ => unreachable!("s3s-fs has its service"),
            }
        }
    })
}

fn config(endpoint: String, region: &str, bucket: &str, ak: &str, sk: &str) -> S3Config {
    let toml = format!(
        "endpoint = {endpoint:?}\nregion = {region:?}\nbucket = {bucket:?}\naccess_key = {ak:?}\nsecret_key = {sk:?}\npath_style = true\n"
    );
    let config: S3Config = toml::from_str(&toml).unwrap();
    let _: &Secret = &config.secret_key;
    config
}

/// An s3s-fs server on 127.0.0.1:0 with one bucket; `stop` and `start`
/// take it away and bring it back.
pub async fn s3s_fs() -> TestS3 {
    let dir = tempfile::tempdir().unwrap();
    let bucket = "casegate";
    std::fs::create_dir(dir.path().join(bucket)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Serve::Fs(dir.path().to_path_buf(), Arc::default());
    let task = spawn_server(listener, serve.clone());
    TestS3 {
        config: config(
            format!("http://{addr}"),
            "us-east-1",
            bucket,
            ACCESS_KEY,
            SECRET_KEY,
        ),
        _dir: Some(dir),
        task: Some(task),
        restartable: Some((addr, serve)),
    }
}

/// The Garage server `.ci/run` started, if any.
pub fn garage() -> Option<TestS3> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = (|| {
        Some(config(
            var("CASEGATE_TEST_S3_ENDPOINT")?,
            &var("CASEGATE_TEST_S3_REGION")?,
            &var("CASEGATE_TEST_S3_BUCKET")?,
            &var("CASEGATE_TEST_S3_ACCESS_KEY")?,
            &var("CASEGATE_TEST_S3_SECRET_KEY")?,
        ))
    })();
    match found {
        Some(config) => Some(TestS3 {
            config,
            _dir: None,
            task: None,
            restartable: None,
        }),
        None => {
            assert!(
                std::env::var_os("CASEGATE_REQUIRE_GARAGE").is_none(),
                "CASEGATE_REQUIRE_GARAGE is set but CASEGATE_TEST_S3_* are not"
            );
            eprintln!("skipped: no Garage (CASEGATE_TEST_S3_* unset; .ci/run starts one)");
            None
        }
    }
}

/// The Garage server `.ci/run` started, if any, reached through a forwarder
/// of this test's own: `stop` and `start` cut and restore the way to it
/// without disturbing the other tests that share Garage.
pub async fn garage_behind_a_switch() -> Option<TestS3> {
    Some(behind_a_switch(&garage()?).await)
}

/// `s3` reached through a TCP forwarder on a port of its own, which `stop`
/// and `start` take away and bring back (`s3` itself keeps running).
pub async fn behind_a_switch(s3: &TestS3) -> TestS3 {
    let upstream = s3
        .config
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let upstream: SocketAddr = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .expect("the S3 server's address");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Serve::Forward(upstream);
    let mut config = s3.config.clone();
    config.endpoint = format!("http://{addr}");
    TestS3 {
        config,
        _dir: None,
        task: Some(spawn_server(listener, serve.clone())),
        restartable: Some((addr, serve)),
    }
}
