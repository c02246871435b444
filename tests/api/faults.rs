//! Faults an unlucky operator meets: the data directory's disk fills up and
//! is freed again. The gateway must refuse (fail closed) only while the
//! audit log cannot be written, recover by itself once it can, and say so
//! on `/readyz`.
//!
//! The disk is a real tmpfs mount, which needs root (CI runs as root and
//! sets `CASEGATE_REQUIRE_MOUNT=1`; elsewhere the test says it skipped).

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::common::{TestApp, spawn_app_with};
use crate::support::tmpfs::{Tmpfs, fill};

async fn ready(app: &TestApp) -> u16 {
    app.request(Method::GET, "/readyz", None, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn recovers_after_the_disk_was_full() {
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let data = disk.path.join("data");
    let app = spawn_app_with(|c| {
        c.server.data_dir = data.clone();
        c.database.url = format!("sqlite://{}", data.join("casegate.db").display());
        c.keys.master_key_file = data.join("master.key");
    })
    .await;
    assert_eq!(ready(&app).await, 200);

    let filler = disk.path.join("filler");
    assert!(fill(&filler) > 0);
    // Audited actions fail closed once SQLite needs a page it cannot have
    // (the WAL may still have room for a few).
    let mut refused = None;
    for _ in 0..2000 {
        let resp = app
            .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
            .await;
        if resp.status() != 201 {
            refused = Some((resp.status().as_u16(), resp.text().await.unwrap()));
            break;
        }
    }
    let (status, body) = refused.expect("a full disk never refused an audited action");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit_unavailable"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 200 on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    std::fs::remove_file(&filler).unwrap();
    // Recovery without a restart: every pooled connection works again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = app
            .request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None)
            .await;
        if resp.status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after space was freed: {} {}",
            resp.status(),
            resp.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let creates =
        (0..24).map(|_| app.request(Method::POST, "/api/v1/cases", Some(&app.coordinator), None));
    for resp in futures_util::future::join_all(creates).await {
        assert_eq!(resp.status(), 201);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 503 after recovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
    drop(disk);
}

/// The log pipe closes (the supervisor reading stderr went away): serving
/// goes on, with every request that logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_never_affects_serving() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::startup::casegate(dir.path())
        .env("CASEGATE_LOG", "info")
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut addr, mut coordinator) = (None, None);
    while addr.is_none() || coordinator.is_none() {
        let line = lines.next().expect("start-up lines").unwrap();
        if let Some(a) = line.strip_prefix("listening on https://") {
            addr = Some(a.to_owned());
        }
        if let Some(t) = line.strip_prefix("coordinator token: ") {
            coordinator = Some(t.to_owned());
        }
    }
    drop(lines); // the read end closes: every later write gets EPIPE
    let base = format!("https://{}", addr.unwrap());
    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let client = crate::common::client_trusting(&ca);
    for i in 0..50 {
        let resp = client.get(format!("{base}/healthz")).send().await;
        assert_eq!(
            resp.map(|r| r.status().as_u16()).ok(),
            Some(200),
            "healthz {i}"
        );
        let resp = client
            .post(format!("{base}/api/v1/cases"))
            .bearer_auth(coordinator.as_deref().unwrap())
            .send()
            .await;
        assert_eq!(
            resp.map(|r| r.status().as_u16()).ok(),
            Some(201),
            "case {i}"
        );
        let resp = client.get(format!("{base}/nowhere")).send().await;
        assert_eq!(resp.map(|r| r.status().as_u16()).ok(), Some(404), "404 {i}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
    let _ = child.kill();
    let _ = child.wait();
}
