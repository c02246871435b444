//! Real S3 servers for tests: s3s-fs in process (always), and Garage when
//! `.ci/run` started one (CASEGATE_TEST_S3_* variables; with
//! CASEGATE_REQUIRE_GARAGE set, a missing Garage is a failure).
#![allow(dead_code)]

use casegate::config::{S3Config, Secret};
use hyper_util::rt::{TokioExecutor, TokioIo};

const ACCESS_KEY: &str = "AKCASEGATETEST";
const SECRET_KEY: &str = "casegate-test-secret-key-0123456789";

pub struct TestS3 {
    pub config: S3Config,
    _dir: Option<tempfile::TempDir>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn config(endpoint: String, region: &str, bucket: &str, ak: &str, sk: &str) -> S3Config {
    let toml = format!(
        "endpoint = {endpoint:?}\nregion = {region:?}\nbucket = {bucket:?}\naccess_key = {ak:?}\nsecret_key = {sk:?}\npath_style = true\n"
    );
    let config: S3Config = toml::from_str(&toml).unwrap();
    let _: &Secret = &config.secret_key;
    config
}

/// An s3s-fs server on 127.0.0.1:0 with one bucket.
pub async fn s3s_fs() -> TestS3 {
    let dir = tempfile::tempdir().unwrap();
    let bucket = "casegate";
    std::fs::create_dir(dir.path().join(bucket)).unwrap();
    let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
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
