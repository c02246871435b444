//! The patient upload page as a browser meets it: `GET /upload` and its
//! assets with their security and cache headers, anonymous and without a
//! client-certificate request; CORS closed by default and open, for the
//! patient's routes only, to a listed origin; the manifest fields the page
//! reads (`upload_expires_at`, `upload_open`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method;
use reqwest::header::HeaderMap;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestApp, spawn_app, spawn_app_with};
use crate::tus::{meta, pattern};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const PORTAL: &str = "https://portal.example.org";

fn assert_secured(h: &HeaderMap, what: &str) {
    assert_eq!(h["content-security-policy"], CSP, "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
}

fn no_cors(h: &HeaderMap, what: &str) {
    let cors: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{what}: {cors:?}");
}

/// The asset paths the page's HTML refers to.
fn referenced_assets(html: &str) -> Vec<String> {
    html.split("\"/upload/assets/")
        .skip(1)
        .map(|rest| format!("/upload/assets/{}", rest.split('"').next().unwrap()))
        .collect()
}

#[tokio::test]
async fn page_and_assets_are_served_with_strict_headers_and_no_token() {
    let app = spawn_app().await;
    let before = app.audit().await.len();
    let resp = app.client.get(app.url("/upload")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_secured(&h, "page");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    assert!(html.contains("<html"));
    assert!(!html.contains("<script>") && !html.contains(" style="));

    let assets = referenced_assets(&html);
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{assets:?}");
    for path in &assets {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert_secured(h, path);
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        let expected = if path.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(h["content-type"], expected, "{path}");
        assert!(!resp.bytes().await.unwrap().is_empty());
    }

    for missing in [
        "/upload/assets/main-00000000.js",
        "/upload/assets/..%2F..%2Fupload",
        "/upload/assets/",
        "/upload/assets/a/b.js",
    ] {
        let resp = app.client.get(app.url(missing)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{missing}");
        if missing == "/upload/assets/main-00000000.js" {
            assert_secured(resp.headers(), missing);
        }
    }
    // Nothing here is audited: the page is public and carries no case.
    let audit = app.audit().await;
    assert!(
        audit[before..]
            .iter()
            .all(|e| e["action"] == "audit.export"),
        "{:?}",
        &audit[before..]
    );
    app.stop().await;
}

/// Records whether the server asked for a client certificate.
#[derive(Debug, Default)]
struct AskedForCertificate(AtomicBool);

impl ResolvesClientCert for AskedForCertificate {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Fetches `path` over HTTP/1.1 on `port`; (status line, whether the TLS
/// handshake asked for a client certificate).
async fn get_recording_certificate_request(app: &TestApp, port: u16, path: &str) -> (String, bool) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&app.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let asked = Arc::new(AskedForCertificate::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(asked.clone());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, asked.0.load(Ordering::SeqCst))
}

#[tokio::test]
async fn the_page_never_asks_for_a_client_certificate() {
    let app = spawn_app().await;
    let (status, asked) = get_recording_certificate_request(&app, app.addr.port(), "/upload").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(!asked, "the main listener asked for a client certificate");
    // The recorder works: the centre listener does ask.
    let (_, asked) =
        get_recording_certificate_request(&app, app.centre_addr.port(), "/api/v1/grant").await;
    assert!(asked, "the centre listener is expected to ask");
    app.stop().await;
}

/// A preflight for `method` on `path` from `origin`.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,tus-resumable,upload-length,upload-metadata",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_closed_by_default() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    for path in ["/tus/", "/tus/upl_x", "/api/v1/patient/case", "/upload"] {
        let resp = preflight(&app, path, PORTAL, "POST").await;
        no_cors(resp.headers(), path);
    }
    let upload = app.tus_create(&patient, 3, &meta("a.txt", None)).await;
    let resp = app
        .tus(Method::PATCH, &upload, &patient)
        .header("Origin", PORTAL)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    no_cors(resp.headers(), "PATCH");
    assert!(resp.headers().get("vary").is_none());
    app.stop().await;
}

#[tokio::test]
async fn cors_answers_a_listed_origin_and_no_other() {
    let app = spawn_app_with(|c| c.server.allowed_origins = vec![format!("{PORTAL}/")]).await;
    let (_, patient) = app.create_case(None).await;
    let before = app.audit().await.len();

    for (path, method) in [
        ("/tus/", "POST"),
        ("/tus/upl_unknown", "PATCH"),
        ("/tus/upl_unknown", "HEAD"),
        ("/api/v1/patient/case", "GET"),
    ] {
        let resp = preflight(&app, path, PORTAL, method).await;
        assert_eq!(resp.status(), 204, "{path}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], PORTAL, "{path}");
        assert_eq!(h["vary"], "Origin");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        for m in ["POST", "HEAD", "PATCH", "DELETE", "OPTIONS", "GET"] {
            assert!(methods.contains(m), "{methods}");
        }
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        for name in [
            "Authorization",
            "Content-Type",
            "Tus-Resumable",
            "Upload-Length",
            "Upload-Metadata",
            "Upload-Offset",
            "Upload-Checksum",
            "Upload-Defer-Length",
            "Upload-Concat",
            "X-HTTP-Method-Override",
        ] {
            assert!(allowed.contains(name), "{name} in {allowed}");
        }
        // Another origin, and one that only starts like the listed one.
        for stranger in [
            "https://evil.example",
            "https://portal.example.org.evil.test",
        ] {
            let resp = preflight(&app, path, stranger, method).await;
            no_cors(resp.headers(), stranger);
        }
    }
    // The operators' API stays closed even to a listed origin.
    no_cors(
        preflight(&app, "/api/v1/cases", PORTAL, "POST")
            .await
            .headers(),
        "cases",
    );
    // tus discovery still reaches its handler.
    let resp = app
        .client
        .request(Method::OPTIONS, app.url("/tus/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    // Preflights carry no token: no denial was audited for them.
    let audit = app.audit().await;
    let denials: Vec<_> = audit[before..]
        .iter()
        .filter(|e| e["outcome"] == "deny")
        .collect();
    assert!(denials.is_empty(), "{denials:?}");

    // A real upload from the listed origin sees the headers tus needs.
    let data = pattern(1000, 3);
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Origin", PORTAL)
        .header("Upload-Length", "1000")
        .header("Upload-Metadata", meta("scan.pdf", Some("imaging_report")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["access-control-allow-origin"], PORTAL);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let resp = app
        .tus(Method::PATCH, &location, &patient)
        .header("Origin", PORTAL)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], PORTAL);
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    for name in [
        "Location",
        "Upload-Offset",
        "Upload-Length",
        "Tus-Resumable",
        "Upload-Expires",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    assert!(h.get_all("vary").iter().any(|v| v == "Origin"));
    // The same request from elsewhere: served (CORS is the browser's rule),
    // but without a header that would let a page there read the answer.
    let resp = app
        .client
        .get(app.url("/api/v1/patient/case"))
        .bearer_auth(&patient)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    no_cors(resp.headers(), "GET from a stranger");
    app.stop().await;
}

#[tokio::test]
async fn the_patient_manifest_says_until_when_the_link_uploads() {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["upload_open"], true);
    let expires = m["upload_expires_at"].as_str().unwrap().to_owned();
    assert!(expires.ends_with('Z'), "{expires}");
    app.clock
        .advance(app.config.uploads.token_ttl_secs as i64 + 1);
    let m = app.patient_manifest(&patient).await;
    assert_eq!(m["upload_open"], false);
    assert_eq!(m["upload_expires_at"], expires.as_str());
    let resp = app
        .tus(Method::POST, "/tus/", &patient)
        .header("Upload-Length", "1")
        .header("Upload-Metadata", meta("late.txt", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    app.stop().await;
}

/// The message keys of one language file (`a.b` for nested messages; a
/// plural message counts as one key).
fn message_keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    let object = value.as_object().unwrap();
    for (key, v) in object {
        let name = format!("{prefix}{key}");
        match v.as_object() {
            Some(inner) if !inner.contains_key("other") => {
                message_keys(v, &format!("{name}."), out);
            }
            _ => out.push(name),
        }
    }
    out.sort();
}

#[test]
fn every_language_has_every_message_and_plural_fallback() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/messages");
    let read = |lang: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(format!("{lang}.json"))).unwrap()).unwrap()
    };
    let mut english = Vec::new();
    message_keys(&read("en"), "", &mut english);
    for lang in ["zh-CN", "hi", "es", "ar", "ru"] {
        let messages = read(lang);
        let mut keys = Vec::new();
        message_keys(&messages, "", &mut keys);
        assert_eq!(keys, english, "{lang}.json");
        // Every plural message has the `other` form the page falls back to.
        for (key, v) in messages.as_object().unwrap() {
            if let Some(forms) = v
                .as_object()
                .filter(|f| f.contains_key("one") || f.contains_key("few"))
            {
                assert!(forms.contains_key("other"), "{lang}: {key}");
            }
        }
    }
}
