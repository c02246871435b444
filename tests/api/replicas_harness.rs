//! Two gateway replicas as an operator runs them (docs/operations.md,
//! "Database"): two `casegate serve` processes on one PostgreSQL database
//! and one S3 bucket, sharing the TLS certificate, the master key and the
//! audit signing key, behind HAProxy in TCP mode sending PROXY v2. HAProxy
//! has a balanced frontend for each listener and one per replica, so a
//! test can choose where a request lands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_casegate");

/// Where the shared services are, from the environment; `None` (the test
/// skips) unless PostgreSQL, an S3 server and haproxy are all there.
pub struct Services {
    pub postgres_admin: String,
    pub s3: [String; 5],
}

impl Services {
    pub fn from_env() -> Option<Services> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let haproxy = Command::new("haproxy").arg("-v").output().is_ok();
        let found = (|| {
            Some(Services {
                postgres_admin: var("CASEGATE_TEST_POSTGRES")?,
                s3: [
                    var("CASEGATE_TEST_S3_ENDPOINT")?,
                    var("CASEGATE_TEST_S3_REGION")?,
                    var("CASEGATE_TEST_S3_BUCKET")?,
                    var("CASEGATE_TEST_S3_ACCESS_KEY")?,
                    var("CASEGATE_TEST_S3_SECRET_KEY")?,
                ],
            })
        })()
        .filter(|_| haproxy);
        if found.is_none() && var("CASEGATE_REQUIRE_REPLICAS").is_some() {
            panic!("CASEGATE_REQUIRE_REPLICAS is set but PostgreSQL, S3 or haproxy is missing");
        }
        found
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One replica: its config file and listener ports; `child` while it runs.
pub struct Replica {
    pub config: PathBuf,
    pub child: Option<Child>,
}

/// Ports HAProxy listens on: balanced, and one frontend per replica.
pub struct Frontends {
    pub main: u16,
    pub centre: u16,
    pub main_of: [u16; 2],
    pub centre_of: [u16; 2],
}

pub struct Layout {
    pub dir: tempfile::TempDir,
    pub replicas: [Replica; 2],
    pub haproxy: Child,
    pub fe: Frontends,
    pub coordinator: String,
    pub compliance: String,
    pub ca_pem: Vec<u8>,
}

async fn create_database(admin: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!(
        "cg_replicas_{}",
        casegate::hex::encode(&casegate::random::array::<6>())
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn replica_config(
    dir: &Path,
    name: &str,
    ports: (u16, u16),
    db: &str,
    s3: &[String; 5],
    lb: u16,
) -> PathBuf {
    let [endpoint, region, bucket, access, secret] = s3;
    let text = format!(
        r#"[server]
listen = "127.0.0.1:{main}"
centre_listen = "127.0.0.1:{centre}"
data_dir = "{name}-data"
public_url = "https://localhost:{lb}"
trusted_proxies = ["127.0.0.1/32"]
shutdown_grace_secs = 2
[tls]
cert = "shared/certs/server.pem"
key = "shared/certs/server-key.pem"
[database]
url = "{db}"
statement_timeout_secs = 10
[storage]
backend = "s3"
[storage.s3]
endpoint = "{endpoint}"
region = "{region}"
bucket = "{bucket}"
access_key = "{access}"
secret_key = "{secret}"
[keys]
master_key_file = "shared/master.key"
[audit]
signing_key_file = "shared/audit-signing.key"
[limits]
auth_failures_per_minute = 10000
"#,
        main = ports.0,
        centre = ports.1,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `serve` with `config`; returns it with its stderr lines up to
/// the centre listener line and half a second after (the first start's
/// tokens).
pub fn start_replica(dir: &Path, config: &Path) -> (Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_remove("CASEGATE_CONFIG")
        .env("CASEGATE_LOG", "warn")
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = crate::startup::start_lines(&mut child);
    assert!(
        lines.iter().any(|l| l.starts_with("centre listener on ")),
        "replica did not start: {lines:?}"
    );
    (child, lines)
}

fn haproxy_config(fe: &Frontends, gw: &[(u16, u16); 2]) -> String {
    let server = |name: &str, port: u16, check: &str| {
        format!("    server {name} 127.0.0.1:{port} send-proxy-v2 {check}\n")
    };
    let https_check = "check check-ssl verify none check-send-proxy inter 1s fall 1 rise 1";
    let tcp_check = "check inter 1s fall 1 rise 1";
    let mut cfg = String::from(
        "global\n    log stderr local0 warning\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
         timeout client 5m\n    timeout server 5m\n    retries 3\n    option redispatch\n",
    );
    let mut backend = |name: &str, port: u16, servers: &[(&str, u16)], http: bool| {
        cfg.push_str(&format!(
            "frontend {name}\n    bind 127.0.0.1:{port}\n    default_backend {name}_servers\n\
             backend {name}_servers\n    balance roundrobin\n"
        ));
        if http {
            cfg.push_str("    option httpchk GET /readyz\n");
        }
        for (s, p) in servers {
            cfg.push_str(&server(s, *p, if http { https_check } else { tcp_check }));
        }
    };
    backend("main", fe.main, &[("a", gw[0].0), ("b", gw[1].0)], true);
    backend(
        "centre",
        fe.centre,
        &[("a", gw[0].1), ("b", gw[1].1)],
        false,
    );
    backend("main_a", fe.main_of[0], &[("a", gw[0].0)], false);
    backend("main_b", fe.main_of[1], &[("b", gw[1].0)], false);
    backend("centre_a", fe.centre_of[0], &[("a", gw[0].1)], false);
    backend("centre_b", fe.centre_of[1], &[("b", gw[1].1)], false);
    cfg
}

fn value(lines: &[String], prefix: &str) -> Option<String> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
}

impl Layout {
    pub async fn start(services: &Services) -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shared")).unwrap();
        let db = create_database(&services.postgres_admin).await;
        let fe = Frontends {
            main: free_port(),
            centre: free_port(),
            main_of: [free_port(), free_port()],
            centre_of: [free_port(), free_port()],
        };
        let gw = [(free_port(), free_port()), (free_port(), free_port())];
        let configs = [
            replica_config(dir.path(), "a", gw[0], &db, &services.s3, fe.main),
            replica_config(dir.path(), "b", gw[1], &db, &services.s3, fe.main),
        ];
        // A first: it creates the certificate, the keys and the tokens.
        let (a, lines) = start_replica(dir.path(), &configs[0]);
        let (b, _) = start_replica(dir.path(), &configs[1]);
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(&fe, &gw)).unwrap();
        let haproxy = Command::new("haproxy")
            .arg("-f")
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ca_pem = std::fs::read(dir.path().join("shared/certs/dev-ca.pem")).unwrap();
        let [ca, cb] = configs;
        let layout = Layout {
            replicas: [
                Replica {
                    config: ca,
                    child: Some(a),
                },
                Replica {
                    config: cb,
                    child: Some(b),
                },
            ],
            haproxy,
            fe,
            coordinator: value(&lines, "coordinator token: ").unwrap(),
            compliance: value(&lines, "compliance token: ").unwrap(),
            ca_pem,
            dir,
        };
        layout.wait_ready().await;
        layout
    }

    /// An HTTPS client trusting the layout's CA, connecting from
    /// `127.0.0.7` (the "real" client address HAProxy passes on).
    pub fn client(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .http1_only()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .local_address(std::net::IpAddr::from([127, 0, 0, 7]))
            .resolve("localhost", "127.0.0.1:0".parse().unwrap());
        if let Some((cert, key)) = identity {
            b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        format!("https://localhost:{port}{path}")
    }

    /// Waits until HAProxy answers through every main frontend whose
    /// replica runs.
    pub async fn wait_ready(&self) {
        let client = self.client(None);
        let mut ports = vec![self.fe.main];
        for (i, r) in self.replicas.iter().enumerate() {
            if r.child.is_some() {
                ports.push(self.fe.main_of[i]);
            }
        }
        for port in ports {
            let mut ok = false;
            for _ in 0..100 {
                let resp = client.get(self.url(port, "/readyz")).send().await;
                if resp.is_ok_and(|r| r.status() == 200) {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "nothing ready behind port {port}");
        }
    }

    /// SIGKILL, as a crash: no drain, no lease released.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub async fn restart(&mut self, i: usize) {
        let (child, _) = start_replica(self.dir.path(), &self.replicas[i].config);
        self.replicas[i].child = Some(child);
        self.wait_ready().await;
    }

    /// The audit checkpoint verifier key, as `casegate audit public-key`
    /// prints it from the shared signing key.
    pub fn public_key_file(&self) -> PathBuf {
        let out = Command::new(BIN)
            .current_dir(self.dir.path())
            .args(["audit", "public-key", "--config"])
            .arg(&self.replicas[0].config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = self.dir.path().join("audit.pub");
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    pub fn bin() -> &'static str {
        BIN
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        for r in &mut self.replicas {
            if let Some(mut child) = r.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
