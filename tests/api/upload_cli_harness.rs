//! The patient side of the `casegate upload` tests: a hospital-CD-like
//! folder written byte by byte (DICOMDIR, `DICOM/ST*/SE*/IM*` files of the
//! same names and sizes in different series, OS litter, two reports), the
//! binary run as a patient runs it, checks that every file is in the case
//! exactly once, and `casegate serve` as a process whose every log line is
//! kept (for the token checks and the crash test).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use casegate::upload::dicom::testdata::ct_file;
use serde_json::Value;

use crate::common::TestApp;
use crate::tus::pattern;

pub const BIN: &str = env!("CARGO_BIN_EXE_casegate");

pub fn sha(data: &[u8]) -> String {
    casegate::hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// A CD as hospitals burn them, plus two reports and litter; returns each
/// file that should be sent (path as shown → contents, category).
pub fn patient_folder(root: &Path) -> BTreeMap<String, (Vec<u8>, &'static str)> {
    let mut sent = BTreeMap::new();
    let series = [
        ("ST000", "SE000", "1.2.840.1", "1.2.840.1.1", 4),
        ("ST000", "SE001", "1.2.840.1", "1.2.840.1.2", 3),
        ("ST001", "SE000", "1.2.840.2", "1.2.840.2.1", 1),
    ];
    for (st, se, study, series_uid, n) in series {
        let dir = root.join(format!("CD/DICOM/{st}/{se}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            // Same names and sizes in every series, different bytes.
            let mut file = ct_file(study, series_uid, "Doe^Jane", 20_000);
            let len = file.len();
            file[len - 8..].copy_from_slice(format!("{se}{i:03}").as_bytes());
            std::fs::write(dir.join(format!("IM{i:04}")), &file).unwrap();
            sent.insert(
                format!("CD/DICOM/{st}/{se}/IM{i:04}"),
                (file, "imaging_dicom"),
            );
        }
    }
    for (name, data) in [
        ("CD/DICOMDIR", b"DICOMDIR index".to_vec()),
        ("CD/.DS_Store", b"mac".to_vec()),
        ("CD/Thumbs.db", b"win".to_vec()),
        ("CD/._IM0000", b"appledouble".to_vec()),
        ("CD/.Trashes/501/old.pdf", b"deleted".to_vec()),
        ("Reports/empty.txt", Vec::new()),
    ] {
        std::fs::create_dir_all(root.join(name).parent().unwrap()).unwrap();
        std::fs::write(root.join(name), data).unwrap();
    }
    for (name, seed, category) in [
        ("Reports/Pathology report.pdf", 11, "pathology_report"),
        ("Reports/blood tests March.pdf", 12, "lab_results"),
    ] {
        let data = pattern(150_000, seed);
        std::fs::write(root.join(name), &data).unwrap();
        sent.insert(name.to_owned(), (data, category));
    }
    sent
}

/// `casegate upload` run from `work` (its state folder lands there), with
/// none of the caller's environment deciding for it.
pub fn upload(app: &TestApp, work: &Path, token: &str) -> Command {
    upload_to(app, &app.url(""), work, token)
}

/// `casegate upload` against `server`, trusting `app`'s CA.
pub fn upload_to(app: &TestApp, server: &str, work: &Path, token: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(work)
        .env_remove("CASEGATE_UPLOAD_TOKEN")
        .env_remove("CASEGATE_UPLOAD_LINK")
        .env_remove("CASEGATE_CA")
        .arg("upload")
        .args(["--server", server])
        .args(["--token", token])
        .arg("--ca")
        .arg(app.dir.path().join("certs/dev-ca.pem"))
        .stdin(Stdio::null());
    cmd
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The manifest's files: filename → [(sha256, category, state)].
pub fn by_sha(manifest: &Value) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for f in manifest["files"].as_array().unwrap() {
        out.entry(f["sha256"].as_str().unwrap_or("-").to_owned())
            .or_default()
            .push((
                f["filename"].as_str().unwrap().to_owned(),
                f["category"].as_str().unwrap().to_owned(),
                f["state"].as_str().unwrap().to_owned(),
            ));
    }
    out
}

/// Every file arrived exactly once, complete, under its base name and
/// category, and nothing else is in the case.
pub fn assert_each_once(manifest: &Value, expected: &BTreeMap<String, (Vec<u8>, &str)>) {
    let found = by_sha(manifest);
    assert_eq!(
        manifest["files"].as_array().unwrap().len(),
        expected.len(),
        "{manifest:#}"
    );
    for (shown, (data, category)) in expected {
        let base = shown.rsplit('/').next().unwrap();
        let entries = found
            .get(&sha(data))
            .unwrap_or_else(|| panic!("{shown} missing"));
        assert_eq!(
            entries,
            &vec![(
                base.to_owned(),
                (*category).to_owned(),
                "complete".to_owned()
            )],
            "{shown}"
        );
    }
}

/// The upload URL the resume state recorded for `name` (the journal's
/// last line for it, else the snapshot). Files are keyed by their path's
/// bytes in hex.
pub fn recorded_url(state_dir: &Path, name: &str) -> Option<String> {
    let is_it =
        |key: &str| casegate::hex::decode(key).is_some_and(|p| p.ends_with(name.as_bytes()));
    let (mut journal, mut snapshot) = (None, None);
    for entry in std::fs::read_dir(state_dir).ok()? {
        let path = entry.ok()?.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("journal") => {
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                    if v["key"].as_str().is_some_and(is_it) {
                        journal = v["entry"]["upload_url"].as_str().map(str::to_owned);
                    }
                }
            }
            Some("json") => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                for (key, e) in v["files"].as_object().into_iter().flatten() {
                    if is_it(key) {
                        snapshot = e["upload_url"].as_str().map(str::to_owned);
                    }
                }
            }
            _ => {}
        }
    }
    journal.or(snapshot)
}

/// `casegate serve` as a process, every log line kept.
pub struct LoggedGateway {
    child: std::process::Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub base: String,
    pub coordinator: String,
    pub dir: tempfile::TempDir,
}

impl LoggedGateway {
    pub fn start() -> LoggedGateway {
        let dir = tempfile::tempdir().unwrap();
        let (child, lines) = LoggedGateway::spawn(dir.path(), "127.0.0.1:0");
        // From here on Drop kills the child, whatever happens.
        let mut gw = LoggedGateway {
            child,
            lines,
            base: String::new(),
            coordinator: String::new(),
            dir,
        };
        gw.base = gw.wait_for("listening on ");
        gw.coordinator = gw.wait_for("coordinator token: ");
        gw
    }

    fn spawn(dir: &Path, listen: &str) -> (std::process::Child, Arc<Mutex<Vec<String>>>) {
        let mut child = crate::startup::casegate(dir)
            .env("CASEGATE_LOG", "debug")
            .env("CASEGATE_SERVER__LISTEN", listen)
            // Durable points every MiB, so a crash keeps most of a PATCH.
            .env("CASEGATE_UPLOADS__SYNC_EVERY_BYTES", "1048576")
            .arg("serve")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line);
            }
        });
        (child, lines)
    }

    /// The rest of the first log line starting with `prefix`.
    fn wait_for(&self, prefix: &str) -> String {
        let started = std::time::Instant::now();
        loop {
            let seen = self.lines.lock().unwrap().clone();
            if let Some(rest) = seen.iter().find_map(|l| l.strip_prefix(prefix)) {
                return rest.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{prefix}: {seen:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client trusting this gateway, and a new case's upload token.
    pub async fn create_case(&self) -> (reqwest::Client, String) {
        let ca = self.dir.path().join("certs/dev-ca.pem");
        let client = crate::common::client_trusting(&std::fs::read(&ca).unwrap());
        let case: Value = client
            .post(format!("{}/api/v1/cases", self.base))
            .bearer_auth(&self.coordinator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = case["upload_token"].as_str().unwrap().to_owned();
        (client, token)
    }

    /// SIGKILL, then the same gateway again on the same address.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let listen = self.base.trim_start_matches("https://").to_owned();
        let (child, lines) = LoggedGateway::spawn(self.dir.path(), &listen);
        self.child = child;
        self.lines = lines;
        assert_eq!(self.wait_for("listening on "), self.base);
    }
}

impl Drop for LoggedGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake gateway (the real gateway's certificate) that gives every
/// request over TLS the same `answer` (`{port}` replaced by its own port),
/// and records every byte that arrives on that port in plain http (told
/// apart from TLS by the first byte). Returns its https address and those
/// bytes.
pub async fn fake_gateway(
    app: &TestApp,
    answer: &str,
) -> (String, Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    use casegate::tls::server_config::{ServerIdentity, main_listener};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certs = app.dir.path().join("certs");
    let identity =
        ServerIdentity::load(&certs.join("server.pem"), &certs.join("server-key.pem")).unwrap();
    let mut config = (*main_listener(&identity).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = answer.replace("{port}", &port.to_string());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&heard);
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await.unwrap_or(0) == 0 {
                continue;
            }
            if first[0] != 0x16 {
                // Not a TLS handshake: plain http.
                let mut buf = vec![0u8; 8192];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                keep.lock().unwrap().extend_from_slice(&buf[..n]);
                continue;
            }
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (format!("https://127.0.0.1:{port}"), heard, task)
}

/// A TLS-terminating proxy in front of the gateway whose certificates are
/// in `certs` (listening on `upstream_port`): it presents the gateway's own
/// certificate, forwards every byte both ways, and records every byte the
/// client sent — request lines, headers and bodies, as the gateway got them
/// before any of its own logging. Returns its https address.
pub async fn recording_proxy(
    certs: &Path,
    upstream_port: u16,
) -> (String, Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    use casegate::tls::server_config::{ServerIdentity, main_listener};
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let identity =
        ServerIdentity::load(&certs.join("server.pem"), &certs.join("server-key.pem")).unwrap();
    let mut config = (*main_listener(&identity).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs.join("dev-ca.pem")).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let record = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&record);
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, connector, keep) = (acceptor.clone(), connector.clone(), keep.clone());
            tokio::spawn(async move {
                let Ok(inbound) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                else {
                    return;
                };
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let Ok(outbound) = connector.connect(name, up).await else {
                    return;
                };
                let (mut from_client, mut to_client) = tokio::io::split(inbound);
                let (mut from_gateway, mut to_gateway) = tokio::io::split(outbound);
                let forward = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = from_client.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to_gateway.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_gateway.shutdown().await;
                };
                let back = async move {
                    let _ = tokio::io::copy(&mut from_gateway, &mut to_client).await;
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(forward, back);
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), record, task)
}

/// What a scripted gateway answers to one request head (the request line
/// and headers, as text): the whole raw answer.
pub type Script = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A fake gateway (the real gateway's certificate, HTTP/1.1 keep-alive)
/// answering each request as `script` says, after reading its body
/// (`Content-Length`). Returns its address and every request head seen.
pub async fn scripted_gateway(
    app: &TestApp,
    script: Script,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use casegate::tls::server_config::{ServerIdentity, main_listener};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certs = app.dir.path().join("certs");
    let identity =
        ServerIdentity::load(&certs.join("server.pem"), &certs.join("server-key.pem")).unwrap();
    let mut config = (*main_listener(&identity).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, script, seen) = (acceptor.clone(), script.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let length: u64 = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = (&mut stream).take(length);
                    let _ = tokio::io::copy(&mut body, &mut tokio::io::sink()).await;
                    seen.lock().unwrap().push(head.clone());
                    if stream.write_all(script(&head).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), heads, task)
}
