//! A reviewing centre for the fetch tests: keys from `casegate centre
//! keygen`, registered at the gateway, a grant over every file of a case,
//! and `casegate fetch` run as the real binary against a chosen server (the
//! gateway's centre listener, or a fake one that misbehaves).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::grants::grant;

pub const BIN: &str = env!("CARGO_BIN_EXE_casegate");

pub struct Centre {
    pub keys: PathBuf,
    pub token: String,
    pub case: String,
    /// Speaks to the centre listener with the centre's certificate.
    pub client: reqwest::Client,
}

/// What one `casegate fetch` run did.
pub struct Fetched {
    pub ok: bool,
    pub stderr: String,
}

impl Centre {
    /// Keys, registration and a grant over every complete file of `case`.
    pub async fn with_grant(app: &TestApp, case: &str, max_downloads: u32) -> Centre {
        let keys = app.dir.path().join("fetch-centre");
        let out = Command::new(BIN)
            .args(["centre", "keygen", "--out"])
            .arg(&keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let read = |f: &str| std::fs::read_to_string(keys.join(f)).unwrap();
        let centre_id = app
            .register_centre_from(
                "Fetch Test Centre",
                &read("centre.pem"),
                &read("x25519.pub"),
            )
            .await;
        let (_, token) = grant(
            app,
            case,
            json!({ "centre_id": centre_id, "expires_in_secs": 3600,
                    "max_downloads": max_downloads }),
        )
        .await;
        let identity = format!("{}{}", read("centre.pem"), read("centre-key.pem"));
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem).unwrap())
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
            .build()
            .unwrap();
        Centre {
            keys,
            token,
            case: case.to_owned(),
            client,
        }
    }

    /// `casegate fetch` into `out` from the server at 127.0.0.1:`port`.
    pub fn fetch(&self, app: &TestApp, port: u16, out: &Path) -> Fetched {
        self.fetch_with(app, port, out, &[])
    }

    /// `fetch` with more arguments (e.g. `--jobs`).
    pub fn fetch_with(&self, app: &TestApp, port: u16, out: &Path, more: &[&str]) -> Fetched {
        let out = Command::new(BIN)
            .arg("fetch")
            .args(["--server", &format!("https://127.0.0.1:{port}")])
            .args(["--grant", &self.token])
            .arg("--cert")
            .arg(self.keys.join("centre.pem"))
            .arg("--key")
            .arg(self.keys.join("centre-key.pem"))
            .arg("--x25519-key")
            .arg(self.keys.join("x25519.key"))
            .arg("--out")
            .arg(out)
            .arg("--ca")
            .arg(app.dir.path().join("certs/dev-ca.pem"))
            .args(more)
            .env_remove("CASEGATE_GRANT")
            .output()
            .unwrap();
        Fetched {
            ok: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The grant's file list, as the centre sees it.
    pub async fn manifest(&self, app: &TestApp) -> Value {
        self.client
            .get(format!(
                "https://127.0.0.1:{}/api/v1/grant",
                app.centre_addr.port()
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One file's sealed object and its `Casegate-Sealed-Key` header.
    pub async fn sealed(&self, app: &TestApp, file_id: &str) -> (Vec<u8>, String) {
        let resp = self
            .client
            .get(format!(
                "https://127.0.0.1:{}/api/v1/grant/files/{file_id}/sealed",
                app.centre_addr.port()
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let key = resp.headers()["casegate-sealed-key"]
            .to_str()
            .unwrap()
            .to_owned();
        (resp.bytes().await.unwrap().to_vec(), key)
    }

    /// How often each file of the grant was downloaded (from byte 0).
    pub async fn downloads(&self, app: &TestApp) -> BTreeMap<String, i64> {
        let list = app
            .get_json(
                &format!("/api/v1/cases/{}/grants", self.case),
                &app.coordinator,
            )
            .await;
        list["grants"][0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["file_id"].as_str().unwrap().to_owned(),
                    f["downloads"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

/// The manifest entry whose plaintext has this SHA-256.
pub fn entry_for<'a>(manifest: &'a Value, data: &[u8]) -> &'a Value {
    let sha = casegate::hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["sha256"] == sha.as_str())
        .unwrap()
}

/// Every regular file under `dir` (hidden ones included), relative path →
/// size; `index.csv` at the top (fetch's own index) left out.
pub fn files_under(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut found = all_files_under(dir);
    found.remove(Path::new("index.csv"));
    found
}

/// Every regular file under `dir`, `index.csv` included.
pub fn all_files_under(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                found.insert(
                    e.path().strip_prefix(dir).unwrap().to_path_buf(),
                    meta.len(),
                );
            }
        }
    }
    found
}
