//! The binary as an operator runs it: start-up lines, first-start tokens
//! printed once, refusals with one clear line, admin token creation,
//! graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_casegate");

pub fn casegate(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("CASEGATE_CONFIG")
        .env("CASEGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("CASEGATE_SERVER__CENTRE_LISTEN", "127.0.0.1:0")
        .env("CASEGATE_LOG", "warn");
    cmd
}

/// Starts `serve` and returns the child with its stderr lines up to the
/// centre listener line plus whatever follows within half a second (where
/// first-start tokens appear).
pub fn start(dir: &Path) -> (Child, Vec<String>) {
    start_with(dir, &[])
}

/// `start` with extra environment variables.
pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> (Child, Vec<String>) {
    let mut cmd = casegate(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.arg("serve").stderr(Stdio::piped()).spawn().unwrap();
    let lines = start_lines(&mut child);
    (child, lines)
}

/// A started `serve`'s stderr lines up to the centre listener line plus
/// whatever follows within half a second (where first-start tokens
/// appear); the rest is drained in the background.
pub fn start_lines(child: &mut Child) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Keep draining after the test stops listening, so the child
            // never writes into a closed pipe.
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let done = line.starts_with("centre listener on ");
        lines.push(line);
        if done {
            break;
        }
    }
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    lines
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("gateway did not stop within 10 s of SIGTERM");
}

pub fn value<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix))
}

// Multi-threaded: the client's connection task must keep running (answer
// the server's GOAWAY/PING) while this thread waits for the child to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_addresses_and_tokens_once() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start(dir.path());
    let addr = value(&lines, "listening on https://").expect("listening line");
    assert!(value(&lines, "centre listener on https://").is_some());
    let coordinator = value(&lines, "coordinator token: ")
        .expect("coordinator token line")
        .to_owned();
    assert!(value(&lines, "compliance token: ").is_some());
    assert_eq!(
        std::fs::metadata(dir.path().join("data/master.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("certs/server-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // curl --cacert certs/dev-ca.pem https://ADDR/healthz, as the README says.
    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let client = crate::common::client_trusting(&ca);
    let resp = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("https://{addr}/api/v1/cases"))
        .bearer_auth(&coordinator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(stop(child).success(), "SIGTERM is a clean stop");

    let (child, lines) = start(dir.path());
    assert!(value(&lines, "listening on https://").is_some());
    assert!(
        !lines.iter().any(|l| l.contains("token:")),
        "tokens are printed only on the first start: {lines:?}"
    );
    let status = stop(child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn admin_token_create_mints_a_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = casegate(dir.path())
        .args(["admin", "token", "create", "--role", "compliance"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("cgo_") && token.len() == 47, "{token}");
    let out = casegate(dir.path())
        .args(["admin", "token", "create", "--role", "root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn refusal(dir: &Path, extra_env: &[(&str, &str)]) -> String {
    let mut cmd = casegate(dir);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.arg("serve").output().unwrap();
    assert!(!out.status.success(), "expected refusal, got success");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("casegate: "))
        .collect();
    assert_eq!(lines.len(), 1, "one clear line: {stderr}");
    lines[0].to_owned()
}

#[test]
fn invalid_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let line = refusal(dir.path(), &[("CASEGATE_SERVER__LISTEN", "not-an-address")]);
    assert!(line.contains("server.listen"), "{line}");
    let line = refusal(dir.path(), &[("CASEGATE_LIMITS__JSON_BODY_BYTES", "0")]);
    assert!(line.contains("limits.json_body_bytes"), "{line}");
    let line = refusal(
        dir.path(),
        &[("CASEGATE_SERVER__PUBLIC_URL", "http://insecure")],
    );
    assert!(line.contains("server.public_url"), "{line}");

    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let line = refusal(dir.path(), &[("CASEGATE_CONFIG", file.to_str().unwrap())]);
    assert!(line.contains("lisen"), "{line}");
    std::fs::write(&file, "[server\n").unwrap();
    let line = refusal(dir.path(), &[("CASEGATE_CONFIG", file.to_str().unwrap())]);
    assert!(line.contains("bad.toml"), "{line}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created for an invalid config"
    );
}

#[test]
fn readable_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let key = dir.path().join("data/master.key");
    std::fs::write(&key, "1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = refusal(dir.path(), &[]);
    assert!(
        line.contains("master.key") && line.contains("chmod 600"),
        "{line}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (child, _) = start(dir.path());
    let status = stop(child);
    assert!(status.success(), "{status:?}");
    std::fs::set_permissions(
        dir.path().join("certs/server-key.pem"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let line = refusal(dir.path(), &[]);
    assert!(line.contains("server-key.pem"), "{line}");
}

#[test]
fn a_taken_port_is_refused() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let line = refusal(dir.path(), &[("CASEGATE_SERVER__LISTEN", &addr)]);
    assert!(
        line.contains("server.listen") && line.contains(&addr),
        "{line}"
    );
    // No tokens were minted by the failed start: the next start prints them.
    drop(taken);
    let (child, lines) = start(dir.path());
    assert!(value(&lines, "coordinator token: ").is_some(), "{lines:?}");
    let status = stop(child);
    assert!(status.success(), "{status:?}");
}

fn environ(child: &Child) -> String {
    let raw = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

/// `serve` runs with the allocator settings that keep its memory bounded
/// under many uploads (src/main.rs), in the same process the operator
/// started (same pid, so kill and systemd see the gateway), and an
/// operator's own setting is left alone.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn serve_runs_with_its_allocator_settings_unless_the_operator_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start(dir.path());
    assert!(value(&lines, "listening on ").is_some(), "{lines:?}");
    let env = environ(&child);
    assert!(env.contains("MALLOC_MMAP_THRESHOLD_=4194304"), "{env}");
    assert!(env.contains("MALLOC_TRIM_THRESHOLD_=33554432"), "{env}");
    assert!(stop(child).success());

    let (child, lines) = start_with(dir.path(), &[("MALLOC_TRIM_THRESHOLD_", "1048576")]);
    assert!(value(&lines, "listening on ").is_some(), "{lines:?}");
    let env = environ(&child);
    assert!(env.contains("MALLOC_TRIM_THRESHOLD_=1048576"), "{env}");
    assert!(!env.contains("MALLOC_MMAP_THRESHOLD_"), "{env}");
    assert!(stop(child).success());
}

/// A database that was set up with keys never gets new ones: a start whose
/// key file is missing (a replica whose volume was not mounted, a host
/// restored without it) is refused, leaves no new key behind, and the
/// gateway starts again once the file is back.
#[test]
fn a_set_up_database_is_never_given_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start(dir.path());
    assert!(stop(child).success());
    for name in ["master.key", "audit-signing.key"] {
        let path = dir.path().join("data").join(name);
        let kept = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let line = refusal(dir.path(), &[]);
        assert!(
            line.contains(name) && line.contains("set up with keys"),
            "{line}"
        );
        assert!(!path.exists(), "no new {name} is left behind");
        std::fs::write(&path, kept).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (child, lines) = start(dir.path());
    assert!(
        lines.iter().any(|l| l.starts_with("listening on ")),
        "{lines:?}"
    );
    assert!(stop(child).success());
}
