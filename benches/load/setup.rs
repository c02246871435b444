//! Preparing the gateway for the load test through its own API: one case
//! (with its patient token) per client, a reviewing centre with a client
//! certificate and an X25519 key, a case of files to download, and the
//! first grants on it. Failures here stop the benchmark with a message.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;

use crate::grants::{GrantPool, GrantedFile, LIVE};
use crate::support::{Gateway, MIB};

/// Sizes of the files the centre downloads; one is not a multiple of the
/// 64 KiB format chunk, so short last chunks are read too.
pub const DOWNLOAD_SIZES: [u64; 4] = [256 * 1024, MIB, 5 * MIB + 12_345, 16 * MIB];

/// A client's own case.
pub struct Case {
    pub case_id: String,
    pub token: String,
}

pub struct Fixture {
    pub base: String,
    pub centre_base: String,
    pub coordinator: String,
    pub centre_id: String,
    pub download_case: String,
    /// One per client, then the download case.
    pub cases: Vec<Case>,
    pub grants: GrantPool,
    ca: Vec<u8>,
    identity_pem: Vec<u8>,
}

impl Fixture {
    pub async fn prepare(gw: &Gateway, clients: usize) -> Fixture {
        let c = crate::support::client(&gw.ca);
        let centre_base = format!(
            "{}:{}",
            &gw.base[..gw.base.rfind(':').expect("listening address has a port")],
            gw.centre_port
        );

        // The files to download, each uploaded in one PATCH, so byte `o`
        // of every file is `support::payload()[o % PIECE]`.
        let download_token = gw.patient(&c).await;
        for size in DOWNLOAD_SIZES {
            gw.upload(&c, &download_token, size, size).await;
        }
        let download_case = case_id(&c, &gw.base, &download_token).await;

        let key = rcgen::KeyPair::generate().expect("centre key");
        let cert = rcgen::CertificateParams::new(vec!["load.centre".to_string()])
            .expect("centre certificate parameters")
            .self_signed(&key)
            .expect("centre certificate");
        let (_, x25519) = casegate::crypto::sealed_key::generate_keypair();
        let centre: serde_json::Value = ok_json(
            c.post(format!("{}/api/v1/centres", gw.base))
                .bearer_auth(&gw.coordinator)
                .json(&serde_json::json!({
                    "name": "Load",
                    "country": "DE",
                    "client_cert_pem": cert.pem(),
                    "x25519_public_key":
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x25519),
                })),
        )
        .await;
        let centre_id = centre["centre_id"]
            .as_str()
            .expect("centre_id in the registration answer")
            .to_owned();

        let mut cases = Vec::with_capacity(clients + 1);
        for _ in 0..clients {
            let token = gw.patient(&c).await;
            let case_id = case_id(&c, &gw.base, &token).await;
            cases.push(Case { case_id, token });
        }

        let mut fixture = Fixture {
            base: gw.base.clone(),
            centre_base,
            coordinator: gw.coordinator.clone(),
            centre_id,
            download_case: download_case.clone(),
            cases,
            grants: GrantPool::new(Vec::new()),
            ca: gw.ca.clone(),
            identity_pem: format!("{}{}", cert.pem(), key.serialize_pem()).into_bytes(),
        };
        let centre_client = fixture.client(IpAddr::from([127, 0, 0, 1]));
        let mut first = Vec::new();
        for _ in 0..LIVE {
            first.push(
                issue_grant(&centre_client, &fixture)
                    .await
                    .expect("issuing a grant"),
            );
        }
        let info: serde_json::Value = ok_json(
            centre_client
                .get(format!("{}/api/v1/grant", fixture.centre_base))
                .bearer_auth(&first[0]),
        )
        .await;
        let files = info["files"]
            .as_array()
            .expect("files in the grant")
            .iter()
            .map(|f| GrantedFile {
                file_id: f["file_id"].as_str().expect("file_id").to_owned(),
                size: f["size"].as_u64().expect("size"),
                sealed_size: f["sealed_size"].as_u64().expect("sealed_size"),
            })
            .collect::<Vec<_>>();
        assert_eq!(files.len(), DOWNLOAD_SIZES.len(), "every file granted");
        fixture.grants = GrantPool::new(files);
        for token in first {
            fixture.grants.add(token);
        }
        fixture.cases.push(Case {
            case_id: download_case,
            token: download_token,
        });
        fixture
    }

    /// A client with its own source address and the centre's certificate
    /// (offered only where asked for: the centre listener). Idle
    /// connections are dropped before the gateway's 15 s keep-alive limit,
    /// so no request is sent on a connection the gateway is closing.
    pub fn client(&self, source: IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .http1_only()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca).expect("dev CA"))
            .identity(reqwest::Identity::from_pem(&self.identity_pem).expect("centre identity"))
            .local_address(source)
            .pool_idle_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .expect("client")
    }
}

/// Issues a grant on the download case for every file in it, as the
/// coordinator; returns its token.
pub async fn issue_grant(c: &reqwest::Client, fx: &Fixture) -> Result<String, String> {
    let resp = c
        .post(format!(
            "{}/api/v1/cases/{}/grants",
            fx.base, fx.download_case
        ))
        .bearer_auth(&fx.coordinator)
        .json(&serde_json::json!({
            "centre_id": fx.centre_id,
            "expires_in_secs": 3600,
            "max_downloads": crate::grants::MAX_DOWNLOADS,
        }))
        .send()
        .await
        .map_err(crate::client::describe)?;
    let resp = crate::client::expect_status(resp, 201).await?;
    let v: serde_json::Value = resp.json().await.map_err(crate::client::describe)?;
    v["grant_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no grant_token in the answer".to_owned())
}

async fn case_id(c: &reqwest::Client, base: &str, token: &str) -> String {
    let v = ok_json(
        c.get(format!("{base}/api/v1/patient/case"))
            .bearer_auth(token),
    )
    .await;
    v["case_id"].as_str().expect("case_id").to_owned()
}

async fn ok_json(req: reqwest::RequestBuilder) -> serde_json::Value {
    let resp = req.send().await.expect("setup request");
    let status = resp.status();
    assert!(status.is_success(), "setup request: {status}");
    resp.json().await.expect("setup answer is JSON")
}
