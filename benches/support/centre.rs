//! A reviewing centre for the download benchmarks: a client certificate
//! and X25519 key registered at the gateway, a grant over every file of
//! its case, and a client that speaks to the centre listener with that
//! certificate; and draining an answer as fast as it comes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use base64::Engine;
use futures_util::StreamExt;

use super::{Gateway, mib_s};

/// A centre with a grant over every file of the gateway's one case.
pub struct Centre {
    /// Speaks HTTP/1.1 to the centre listener with the centre's certificate.
    pub client: reqwest::Client,
    /// The centre listener, `https://127.0.0.1:PORT`.
    pub base: String,
    pub grant_token: String,
}

impl Centre {
    /// Registers a centre and grants it every file of the case
    /// (`max_downloads` 10), over the coordinator's client `c`.
    pub async fn with_grant(gw: &Gateway, c: &reqwest::Client) -> Centre {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["bench.centre".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (_, public) = casegate::crypto::sealed_key::generate_keypair();
        let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        let centre: serde_json::Value = c
            .post(format!("{}/api/v1/centres", gw.base))
            .bearer_auth(&gw.coordinator)
            .json(&serde_json::json!({ "name": "Bench", "country": "DE",
                "client_cert_pem": cert.pem(), "x25519_public_key": public }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cases: serde_json::Value = c
            .get(format!("{}/api/v1/cases", gw.base))
            .bearer_auth(&gw.coordinator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let case_id = cases["cases"][0]["case_id"].as_str().unwrap().to_owned();
        let grant: serde_json::Value = c
            .post(format!("{}/api/v1/cases/{case_id}/grants", gw.base))
            .bearer_auth(&gw.coordinator)
            .json(&serde_json::json!({ "centre_id": centre["centre_id"],
                "expires_in_secs": 3600, "max_downloads": 10 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let identity = format!("{}{}", cert.pem(), key.serialize_pem());
        let client = reqwest::Client::builder()
            .http1_only()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&gw.ca).unwrap())
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
            .build()
            .unwrap();
        Centre {
            client,
            base: format!("https://127.0.0.1:{}", gw.centre_port),
            grant_token: grant["grant_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A GET on the centre listener with the grant token.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.grant_token)
    }

    /// The ids of the grant's files, as the grant lists them.
    pub async fn file_ids(&self) -> Vec<String> {
        let info: serde_json::Value = self
            .get("/api/v1/grant")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        info["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["file_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Sends `req` and reads the answer, discarding the bytes; returns the
/// byte count and MiB/s.
pub async fn drain(req: reqwest::RequestBuilder) -> (u64, f64) {
    let started = Instant::now();
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(piece) = stream.next().await {
        n += piece.unwrap().len() as u64;
    }
    (n, mib_s(n, started.elapsed().as_secs_f64()))
}
