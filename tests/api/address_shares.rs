//! One address cannot take every connection: each listener gives an address
//! at most `limits.max_connections_per_address` connections at once, checked
//! at accept before the TLS handshake; more are closed at once, and other
//! addresses are served meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{TestApp, spawn_app_with};
use crate::denial_floods::{client_from, ip};

/// A raw TCP connection from `local` that never starts the TLS handshake.
async fn idle_from(local: IpAddr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Opens `n` idle connections from `local`; returns those the server kept
/// open and how many it closed at once.
async fn hold(local: IpAddr, port: u16, n: usize) -> (Vec<TcpStream>, usize) {
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(idle_from(local, port).await);
    }
    // A kept connection stays silent (the handshake timeout is long); a
    // refused one reads EOF or a reset straight away.
    let checks = streams.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Err(_) => Some(s),
            Ok(_) => None,
        }
    });
    let results = futures_util::future::join_all(checks).await;
    let closed = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), closed)
}

/// Does a request from `local` get an HTTP answer on each listener?
async fn served_from(app: &TestApp, local: IpAddr) -> Result<(), String> {
    let client = client_from(app, local, None);
    let main = client
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("main listener from {local}: {e}"))?;
    if main.status() != 200 {
        return Err(format!("main listener from {local}: {}", main.status()));
    }
    let centre = client
        .get(format!("https://127.0.0.1:{}/", app.centre_addr.port()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("centre listener from {local}: {e}"))?;
    if centre.status() != 404 {
        return Err(format!("centre listener from {local}: {}", centre.status()));
    }
    Ok(())
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    // The default share of a 32-connection listener: max(8, 32 / 16) = 8.
    let app = spawn_app_with(|c| {
        c.limits.max_connections = 32;
        c.limits.tls_handshake_timeout_secs = 30;
    })
    .await;
    let mut kept = Vec::new();
    let mut shares = Vec::new();
    for port in [app.addr.port(), app.centre_addr.port()] {
        let (held, closed) = hold(ip(3), port, 40).await;
        eprintln!(
            "port {port}: 40 idle connections from {}: {} kept, {closed} closed at once",
            ip(3),
            held.len()
        );
        shares.push((held.len(), closed));
        kept.push(held);
    }
    // Another address is served on both listeners meanwhile.
    served_from(&app, ip(2)).await.unwrap();
    for (held, closed) in shares {
        assert_eq!(held, 8, "one address holds its share, no more");
        assert_eq!(closed, 32);
    }
    // A further address gets a share of its own.
    for port in [app.addr.port(), app.centre_addr.port()] {
        let (held, closed) = hold(ip(4), port, 8).await;
        assert_eq!((held.len(), closed), (8, 0));
        kept.push(held);
    }
    // The flooding address itself is still over its share.
    assert!(served_from(&app, ip(3)).await.is_err());

    // Its slots come back when its connections end.
    drop(kept);
    let mut served = Err(String::new());
    for _ in 0..50 {
        served = served_from(&app, ip(3)).await;
        if served.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_share_is_configurable() {
    let app = spawn_app_with(|c| {
        c.limits.max_connections = 32;
        c.limits.max_connections_per_address = Some(2);
        c.limits.tls_handshake_timeout_secs = 30;
    })
    .await;
    let (held, closed) = hold(ip(5), app.addr.port(), 5).await;
    assert_eq!((held.len(), closed), (2, 3));
    served_from(&app, ip(2)).await.unwrap();
    drop(held);
    app.stop().await;
}

#[test]
fn an_invalid_share_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (value, why) in [("0", "greater than 0"), ("2000", "max_connections")] {
        let out = crate::startup::casegate(dir.path())
            .env("CASEGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", value)
            .arg("serve")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{value} accepted");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("casegate: "))
            .collect();
        assert_eq!(lines.len(), 1, "one clear line: {stderr}");
        assert!(
            lines[0].contains("limits.max_connections_per_address") && lines[0].contains(why),
            "{}",
            lines[0]
        );
    }
}
