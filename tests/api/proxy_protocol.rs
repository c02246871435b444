//! A TCP load balancer in front of the gateway (TLS passed through) sends
//! a PROXY protocol v2 header naming the real client. From an address in
//! `server.trusted_proxies` the header is required and believed: audit
//! entries and per-address limits see the client, the balancer's own
//! health checks (LOCAL) keep its address. From anyone else a header is
//! refused, as is a trusted balancer's connection without one.

use std::net::SocketAddr;
use std::sync::Arc;

use casegate::server::proxy_protocol;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::common::{TestApp, spawn_app, spawn_app_with};

/// How a test connection opens before its TLS handshake.
#[derive(Clone, Copy)]
enum Opening {
    Nothing,
    Client(&'static str),
    Local,
}

fn tls_config(app: &TestApp) -> Arc<ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&app.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One GET on the main listener over a connection opened as `opening`:
/// the status and body, or the error that ended the connection.
async fn get(
    app: &TestApp,
    opening: Opening,
    path: &str,
    token: &str,
) -> Result<(u16, String), String> {
    let mut tcp = TcpStream::connect(app.addr)
        .await
        .map_err(|e| e.to_string())?;
    let header = match opening {
        Opening::Nothing => Vec::new(),
        Opening::Client(client) => {
            let client: SocketAddr = client.parse().unwrap();
            proxy_protocol::encode(client, app.addr)
        }
        Opening::Local => {
            let mut local = proxy_protocol::SIGNATURE.to_vec();
            local.extend_from_slice(&[0x20, 0x00, 0, 0]);
            local
        }
    };
    tcp.write_all(&header).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(tls_config(app))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("Host", "localhost")
        .header("Authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// The audit entries, read through a LOCAL (health-check style) opening.
async fn audit(app: &TestApp, opening: Opening) -> Vec<Value> {
    let (status, body) = get(app, opening, "/api/v1/audit", &app.compliance)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn addresses_of(entries: &[Value], action_prefix: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap_or("")
                .starts_with(action_prefix)
        })
        .map(|e| e["client_addr"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_trusted_balancer_names_the_client_and_must_send_the_header() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    // A relayed IPv4 and IPv6 client: audited under their own addresses.
    for client in ["203.0.113.7:40000", "[2001:db8::7]:40001"] {
        let (status, _) = get(
            &app,
            Opening::Client(client),
            "/api/v1/cases",
            &app.coordinator,
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
    let (status, _) = get(&app, Opening::Local, "/api/v1/cases", &app.coordinator)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let entries = audit(&app, Opening::Local).await;
    let listed = addresses_of(&entries, "case.list");
    assert_eq!(
        listed,
        ["203.0.113.7", "2001:db8::7", "127.0.0.1"],
        "{entries:?}"
    );

    // Without the header, or with a broken one, nothing is served.
    assert!(get(&app, Opening::Nothing, "/healthz", "x").await.is_err());
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let mut broken = proxy_protocol::encode("203.0.113.7:1".parse().unwrap(), app.addr);
    broken[12] = 0x22;
    tcp.write_all(&broken).await.unwrap();
    let tls = TlsConnector::from(tls_config(&app))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(tls.is_err(), "a connection with a bad header is closed");
    app.stop().await;
}

/// The per-address connection share counts the relayed client, not the
/// balancer: one client's share used up leaves another's intact.
#[tokio::test]
async fn connection_shares_count_the_relayed_client() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.limits.max_connections_per_address = Some(2);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(&proxy_protocol::encode(
            "198.51.100.1:1".parse().unwrap(),
            app.addr,
        ))
        .await
        .unwrap();
        let tls = TlsConnector::from(tls_config(&app))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        held.push(tls);
    }
    assert!(
        get(&app, Opening::Client("198.51.100.1:2"), "/healthz", "x")
            .await
            .is_err(),
        "a third connection of the same client is closed"
    );
    let (status, _) = get(&app, Opening::Client("198.51.100.2:1"), "/healthz", "x")
        .await
        .unwrap();
    assert_eq!(
        status, 200,
        "another client behind the same balancer gets in"
    );
    drop(held);
    app.stop().await;
}

/// Without trusted proxies, a PROXY header is not believed: the
/// connection fails, and the gateway serves direct clients as before.
#[tokio::test]
async fn an_untrusted_address_cannot_claim_another_client() {
    let app = spawn_app().await;
    assert!(
        get(&app, Opening::Client("203.0.113.9:1"), "/healthz", "x")
            .await
            .is_err()
    );
    let (status, _) = get(&app, Opening::Nothing, "/api/v1/cases", &app.coordinator)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let entries = app.audit().await;
    assert_eq!(addresses_of(&entries, "case.list"), ["127.0.0.1"]);
    app.stop().await;
}
