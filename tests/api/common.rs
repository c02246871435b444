//! The test harness: the real application on port 0 with real TLS, a temp
//! data directory, and HTTPS clients that trust the generated dev CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use casegate::Application;
use casegate::clock::OffsetClock;
use casegate::config::Config;
use reqwest::{Method, Response};
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub centre_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub coordinator: String,
    pub compliance: String,
    pub ca_pem: Vec<u8>,
    pub config: Config,
    #[allow(dead_code)] // expiry tests (grants, uploads) move it
    pub clock: OffsetClock,
    pub uploads: casegate::upload::Uploads,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Running {
    addr: SocketAddr,
    centre_addr: SocketAddr,
    uploads: casegate::upload::Uploads,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(
    config: &Config,
    clock: &OffsetClock,
) -> (Running, Option<casegate::bootstrap::BootstrapTokens>) {
    let mut app = Application::build_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let tokens = app.take_bootstrap_tokens();
    let (addr, centre_addr, uploads) = (app.addr(), app.centre_addr(), app.uploads());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    (
        Running {
            addr,
            centre_addr,
            uploads,
            shutdown: tx,
            task,
        },
        tokens,
    )
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.centre_listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = dir.join("data");
    config.server.shutdown_grace_secs = 2;
    config.tls.cert = dir.join("certs/server.pem");
    config.tls.key = dir.join("certs/server-key.pem");
    config.database.url = format!("sqlite://{}", dir.join("data/casegate.db").display());
    config.keys.master_key_file = dir.join("data/master.key");
    config.limits.auth_failures_per_minute = 10_000;
    // PostgreSQL: as long as SQLite's busy timeout, so a held lock is
    // refused alike on both.
    config.database.statement_timeout_secs = 10;
    config
}

pub fn client_trusting(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// With `CASEGATE_TEST_POSTGRES` set (a PostgreSQL URL whose user may
/// create databases), each test gets a fresh PostgreSQL database instead
/// of a SQLite file, so the whole suite runs on either engine.
pub async fn postgres_database() -> Option<String> {
    let admin = std::env::var("CASEGATE_TEST_POSTGRES").ok()?;
    sqlx::any::install_default_drivers();
    let name = format!("cg_test_{}", hex_id());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

/// A test's PostgreSQL database goes with it (each holds ~8 MB; a few
/// suite runs against a long-lived server filled a disk).
impl Drop for TestApp {
    fn drop(&mut self) {
        let Ok(admin) = std::env::var("CASEGATE_TEST_POSTGRES") else {
            return;
        };
        let Some((_, name)) = self.config.database.url.rsplit_once('/') else {
            return;
        };
        if !name.starts_with("cg_test_")
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return;
        }
        let name = name.to_owned();
        // Drop cannot await, and the test's runtime may be single-threaded:
        // a thread of its own with a runtime of its own. FORCE ends the
        // gateway's pooled connections.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("test database not dropped");
        }
    }
}

fn hex_id() -> String {
    casegate::random::array::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_at(postgres_database().await, adjust).await
}

/// A gateway whose first start is on the database at `url` (it migrates
/// it and mints the bootstrap tokens), e.g. one reached as a role the
/// test set up. A `cg_test_` database goes with the app, like any other.
pub async fn spawn_app_on(url: String) -> TestApp {
    spawn_app_at(Some(url), |_| {}).await
}

async fn spawn_app_at(database: Option<String>, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    if let Some(url) = database {
        config.database.url = url;
    }
    adjust(&mut config);
    let clock = OffsetClock::default();
    let (running, tokens) = start(&config, &clock).await;
    let tokens = tokens.expect("first start mints tokens");
    let ca_pem = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    TestApp {
        addr: running.addr,
        centre_addr: running.centre_addr,
        client: client_trusting(&ca_pem),
        coordinator: tokens.coordinator.expose().to_owned(),
        compliance: tokens.compliance.expose().to_owned(),
        ca_pem,
        config,
        clock,
        dir,
        uploads: running.uploads,
        shutdown: Some(running.shutdown),
        task: Some(running.task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.addr.port(), path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A separate connection to the gateway's database, as an operator
    /// (or an attacker with a copy of it) would have.
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.config.database.url)
            .await
            .unwrap()
    }

    /// Lifts the database's append-only guards on the audit tables, as
    /// someone with write access to the database could, so a test can
    /// tamper with them.
    #[allow(dead_code)] // only the tampering tests
    pub async fn lift_append_only_guards(&self, db: &sqlx::AnyPool) {
        let tables = ["audit_log", "audit_tree", "audit_checkpoints"];
        let sql: String = if self.on_postgres() {
            tables
                .iter()
                .map(|t| format!("ALTER TABLE {t} DISABLE TRIGGER USER;"))
                .collect()
        } else {
            tables
                .iter()
                .flat_map(|t| ["update", "delete"].map(|op| format!("DROP TRIGGER {t}_no_{op};")))
                .collect()
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(db)
            .await
            .unwrap();
    }

    /// PostgreSQL: every value of every table, raw (text as UTF-8, bytea
    /// as its bytes), one after another — what a copy of the database
    /// holds, for tests that look for plaintext. SQLite tests read the
    /// database file instead; this is empty there.
    #[allow(dead_code)] // only the plaintext scans
    pub async fn database_values(&self) -> Vec<u8> {
        use sqlx::{Column, Row};
        if !self.on_postgres() {
            return Vec::new();
        }
        let db = self.db().await;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        let mut out = Vec::new();
        for table in tables {
            let sql = format!("SELECT * FROM {table}");
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&db)
                .await
                .unwrap()
            {
                for col in row.columns() {
                    let i = col.ordinal();
                    if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        out.extend_from_slice(&b);
                    } else if let Ok(Some(t)) = row.try_get::<Option<String>, _>(i) {
                        out.extend_from_slice(t.as_bytes());
                    }
                    out.push(0);
                }
            }
        }
        out
    }

    /// Whether this run's database is PostgreSQL (`CASEGATE_TEST_POSTGRES`).
    #[allow(dead_code)] // tests of SQLite-only behaviour skip themselves
    pub fn on_postgres(&self) -> bool {
        self.config.database.url.starts_with("postgres")
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// GET `path` with `token`; the JSON answer (whatever the status).
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.request(Method::GET, path, Some(token), None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Creates a case; returns (case_id, upload_token).
    pub async fn create_case(&self, reference: Option<&str>) -> (String, String) {
        let body = reference.map(|r| serde_json::json!({ "reference": r }));
        let resp = self
            .request(Method::POST, "/api/v1/cases", Some(&self.coordinator), body)
            .await;
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        (
            v["case_id"].as_str().unwrap().to_owned(),
            v["upload_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Registers a centre (as the coordinator) from its certificate PEM and
    /// base64url X25519 public key; returns its id.
    pub async fn register_centre_from(
        &self,
        name: &str,
        cert_pem: &str,
        x25519_public: &str,
    ) -> String {
        let body = serde_json::json!({
            "name": name, "country": "CH", "client_cert_pem": cert_pem,
            "x25519_public_key": x25519_public.trim(),
        });
        let resp = self
            .request(
                Method::POST,
                "/api/v1/centres",
                Some(&self.coordinator),
                Some(body),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        v["centre_id"].as_str().unwrap().to_owned()
    }

    /// The whole audit log as parsed JSON lines.
    pub async fn audit(&self) -> Vec<Value> {
        let resp = self
            .request(Method::GET, "/api/v1/audit", Some(&self.compliance), None)
            .await;
        assert_eq!(resp.status(), 200);
        resp.text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Stops the gateway and starts it again on the same data directory
    /// (new ports), as after a clean restart.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let (running, tokens) = start(&self.config, &self.clock).await;
        assert!(
            tokens.is_none(),
            "tokens are minted only on the first start"
        );
        self.addr = running.addr;
        self.centre_addr = running.centre_addr;
        self.uploads = running.uploads;
        self.shutdown = Some(running.shutdown);
        self.task = Some(running.task);
        self.client = client_trusting(&self.ca_pem);
    }

    /// Stops the server; returns the data directory for inspection.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // The caller may still read the database (on PostgreSQL it outlives
        // this app, left for the run's server to discard).
        self.config.database.url.clear();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

/// A fresh self-signed client certificate (PEM) as a centre would present.
pub fn centre_cert_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["centre.example".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}

pub fn x25519_public_b64() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token shaped exactly like a real operator token but never issued.
pub fn forged_operator_token() -> String {
    format!("cgo_{}", "A".repeat(43))
}
