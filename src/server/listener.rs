//! One TLS listener: accept, cap concurrent connections (in all and per
//! client address), learn the real client of a trusted load balancer's
//! connection (PROXY protocol v2), bound the TLS handshake, serve HTTP/1.1
//! or HTTP/2 (by ALPN) with a header-read timeout (slowloris guard), and
//! drain gracefully on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How often an HTTP/2 connection checks whether it has gone idle.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// While the listener is full, at most one warning per this interval (with
/// the number of connections closed), so a flood of connections does not
/// become a flood of log lines.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);
/// How long connections told to close at shutdown get to be gone.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::proxy_protocol::{self, Source};
use super::shares::{ConnectionShares, Share};
use crate::config::IpNetwork;
use crate::http::conn::ConnInfo;
use crate::http::limiter::AddressKey;
use crate::tls::cert_sha256;

#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` turns true, then waits up to
/// the grace period for open connections to finish. Connections from
/// `proxies` start with a PROXY protocol v2 header.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ListenerLimits,
    proxies: Arc<[IpNetwork]>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut admission = Admission::new(name, limits);
    // Turned true when the grace is over: connections still open are
    // dropped, which ends their requests' bodies (a PATCH then takes its
    // last durable point).
    let (close, closing) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote_addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A balancer's connections share its address: each takes its
        // client's share once the PROXY header names the client.
        let relayed = proxies.iter().any(|net| net.contains(remote_addr.ip()));
        let Some(place) = admission.admit((!relayed).then(|| remote_addr.ip())) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            name,
            limits,
            info: ConnInfo {
                remote_addr,
                client_cert_sha256: None,
            },
            app: app.clone(),
        };
        let (acceptor, stop, closing) = (acceptor.clone(), shutdown.clone(), closing.clone());
        let shares = admission.shares.clone();
        tokio::spawn(async move {
            let mut connection = connection;
            let mut tcp = tcp;
            let mut place = place;
            if relayed {
                let Some(client) = connection.client_behind_proxy(&mut tcp).await else {
                    return;
                };
                let Some(share) = shares.take(AddressKey::from(client.ip())) else {
                    tracing::debug!(listener = name, %client, "per-address connection share used up; closing relayed connection");
                    return;
                };
                place._share = Some(share);
                connection.info.remote_addr = client;
            }
            connection.run(acceptor, tcp, stop, closing).await;
        });
    }
    drop(listener);
    if !admission.drain().await {
        let _ = close.send(true);
        admission.closed().await;
    }
}

/// Which new connections get in: each client address up to its share,
/// everyone up to the listener's cap. Each admitted connection holds its
/// place until it ends.
struct Admission {
    name: &'static str,
    limits: ListenerLimits,
    permits: Arc<Semaphore>,
    shares: Arc<ConnectionShares>,
    closed_while_full: u64,
    warned_full_at: Option<tokio::time::Instant>,
}

/// An admitted connection's place: its listener permit and its address's
/// share, both given back when dropped.
struct Place {
    _permit: OwnedSemaphorePermit,
    _share: Option<Share>,
}

impl Admission {
    fn new(name: &'static str, limits: ListenerLimits) -> Admission {
        Admission {
            name,
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            shares: ConnectionShares::new(limits.max_connections_per_address),
            closed_while_full: 0,
            warned_full_at: None,
        }
    }

    /// A place for a connection from `ip`, or for one relayed by a
    /// trusted balancer (`None`: its client's share is taken later).
    fn admit(&mut self, ip: Option<std::net::IpAddr>) -> Option<Place> {
        let name = self.name;
        // The address's share first: one address holding its share must
        // not also use up the listener's cap for everyone else.
        let share = match ip.map(AddressKey::from) {
            None => None,
            Some(address) => {
                let Some(share) = self.shares.take(address) else {
                    tracing::debug!(
                        listener = name,
                        %address,
                        refused_total = self.shares.refused(),
                        "per-address connection share used up; closing new connection"
                    );
                    return None;
                };
                Some(share)
            }
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.closed_while_full += 1;
            if self
                .warned_full_at
                .is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY)
            {
                tracing::warn!(
                    listener = name,
                    closed = self.closed_while_full,
                    "connection limit reached; closing new connections"
                );
                self.closed_while_full = 0;
                self.warned_full_at = Some(tokio::time::Instant::now());
            }
            return None;
        };
        Some(Place {
            _permit: permit,
            _share: share,
        })
    }

    /// Waits, up to the grace period, for every admitted connection to
    /// end; false if some are still open.
    async fn drain(&self) -> bool {
        // Every connection task holds a permit until it ends: all permits
        // back means drained.
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        tokio::select! {
            _ = self.permits.acquire_many(all) => {
                tracing::info!(listener = self.name, "drained");
                true
            }
            _ = tokio::time::sleep(self.limits.shutdown_grace) => {
                tracing::warn!(listener = self.name, "grace period over; closing remaining connections");
                false
            }
        }
    }

    /// Waits a moment for the connections told to close to be gone.
    async fn closed(&self) {
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let gone = tokio::time::timeout(CLOSE_WAIT, self.permits.acquire_many(all)).await;
        if gone.is_err() {
            tracing::warn!(
                listener = self.name,
                "connections still closing at shutdown"
            );
        }
    }
}

/// One admitted connection, from TLS handshake to its end.
struct Connection {
    name: &'static str,
    limits: ListenerLimits,
    info: ConnInfo,
    app: Router,
}

impl Connection {
    /// The client a trusted balancer relays, from the PROXY protocol v2
    /// header that must open its connection (read within the handshake
    /// timeout); `None` closes the connection. The balancer's own
    /// connections (health checks) keep its address.
    async fn client_behind_proxy(
        &self,
        tcp: &mut tokio::net::TcpStream,
    ) -> Option<std::net::SocketAddr> {
        let name = self.name;
        let proxy = self.info.remote_addr;
        match tokio::time::timeout(self.limits.handshake_timeout, proxy_protocol::read(tcp)).await {
            Ok(Ok(Source::Client(client))) => Some(client),
            Ok(Ok(Source::Local)) => Some(proxy),
            Ok(Err(e)) => {
                tracing::warn!(listener = name, %proxy, error = %e, "refused a trusted proxy's connection");
                None
            }
            Err(_) => {
                tracing::debug!(listener = name, %proxy, "PROXY header timed out");
                None
            }
        }
    }

    /// The TLS handshake, bounded by the handshake timeout.
    async fn handshake(
        &self,
        acceptor: TlsAcceptor,
        tcp: tokio::net::TcpStream,
    ) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let name = self.name;
        match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(listener = name, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(listener = name, "TLS handshake timed out");
                None
            }
        }
    }

    /// Records the client certificate's hash; true if ALPN chose HTTP/2.
    /// Serve the protocol ALPN chose. Never sniff: sniffing waits for
    /// bytes before any timeout runs, so an idle client would hold the
    /// connection forever. No ALPN means HTTP/1.1 (RFC 9113 §3.2).
    fn note_session(
        &mut self,
        tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) -> bool {
        let session = tls.get_ref().1;
        self.info.client_cert_sha256 = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(cert_sha256);
        session.alpn_protocol() == Some(b"h2")
    }

    /// Serves one connection to its end: asked to finish gracefully once
    /// `stop` turns true, dropped once `close` does.
    async fn run(
        mut self,
        acceptor: TlsAcceptor,
        tcp: tokio::net::TcpStream,
        stop: watch::Receiver<bool>,
        mut close: watch::Receiver<bool>,
    ) {
        let name = self.name;
        let Some(tls) = self.handshake(acceptor, tcp).await else {
            return;
        };
        if *close.borrow() {
            // Shutdown closed the listener's connections meanwhile.
            return;
        }
        let h2 = self.note_session(&tls);
        let activity = Activity::default();
        let seen = activity.clone();
        let (info, app) = (self.info.clone(), self.app.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            seen.request_started();
            req.extensions_mut().insert(info.clone());
            app.clone().oneshot(req.map(Body::new))
        });
        let connection = http_builder(h2, &self.limits)
            .serve_connection(TokioIo::new(tls), service)
            .into_owned();
        // Runs the connection to its end. On server shutdown it is asked
        // to finish gracefully (HTTP/1.1: after the running request;
        // HTTP/2: GOAWAY, running streams complete). An HTTP/2
        // connection on which no request started for the header read
        // timeout gets the same GOAWAY: hyper has no idle timeout for
        // HTTP/2 (its pings keep a silent client's connection alive);
        // idle HTTP/1.1 connections are cut by the header read timeout.
        let mut connection = std::pin::pin!(connection);
        let mut stop = stop;
        let mut closing = false;
        let mut tick = tokio::time::interval(IDLE_CHECK);
        loop {
            tokio::select! {
                // Closing first: a connection told to close serves nothing
                // more, even if its client has a request ready.
                biased;
                _ = close.wait_for(|close| *close) => break,
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(listener = name, error = %e, "connection ended with error");
                    }
                    break;
                }
                _ = stop.wait_for(|stop| *stop), if !closing => {
                    // hyper defers a graceful HTTP/2 close until the
                    // client's preface, which may never come; with no
                    // request ever started nothing runs: drop it.
                    if h2 && !activity.idle().1 {
                        break;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tick.tick(), if h2 => {
                    let (idle, ever_used) = activity.idle();
                    if idle >= self.limits.header_read_timeout {
                        if !ever_used {
                            break;
                        }
                        if !closing {
                            tracing::debug!(listener = name, "idle HTTP/2 connection closed");
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
        }
    }
}

/// The HTTP side of a connection: the one protocol ALPN chose, the header
/// read timeout, keep-alive, and HTTP/2 windows.
fn http_builder(h2: bool, limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(64)
        // Uploads from far away need more than the 64 KiB default in
        // flight (bandwidth × round trip); fixed windows keep the
        // per-connection buffering bounded.
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024);
    builder
}

/// When the last request on a connection started, or the connection if
/// none did yet, and whether any did (HTTP/2 idle detection).
#[derive(Clone)]
struct Activity(Arc<std::sync::Mutex<(tokio::time::Instant, bool)>>);

impl Default for Activity {
    fn default() -> Activity {
        Activity(Arc::new(std::sync::Mutex::new((
            tokio::time::Instant::now(),
            false,
        ))))
    }
}

impl Activity {
    fn request_started(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = (tokio::time::Instant::now(), true);
        }
    }

    /// Time since the last request started (or the connection), and
    /// whether any request started.
    fn idle(&self) -> (Duration, bool) {
        self.0
            .lock()
            .map(|at| (at.0.elapsed(), at.1))
            .unwrap_or_default()
    }
}
