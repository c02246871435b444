//! The tus 1.0 requests `casegate upload` (and `casegate reply`) make, over
//! one reqwest client: create (POST with `Upload-Length` and
//! `Upload-Metadata`), offset (HEAD), append (one streaming PATCH from an
//! offset), terminate (DELETE), and what the uploader already sent (read up
//! to a fixed size): the patient's own files from its case manifest, or a
//! centre's replies from its grant listing ([`Route`]). The token travels
//! only as `Authorization: Bearer`; upload URLs the gateway hands out are
//! followed only on the gateway's own origin, so a token never goes
//! elsewhere.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, RequestBuilder, Url};
use serde_json::Value;

use super::problem::{Failure, from_response, from_transport};
use crate::cli::bounded::{BodyError, MAX_MANIFEST_BYTES, body_within};
use crate::token::SecretToken;

/// How long a HEAD, POST or DELETE may take.
const SHORT_REQUEST: std::time::Duration = std::time::Duration::from_secs(60);
/// How long the case manifest (up to a few MB) may take on a slow line.
const MANIFEST_REQUEST: std::time::Duration = std::time::Duration::from_secs(300);

pub struct Tus {
    client: reqwest::Client,
    base: Url,
    token: SecretToken,
    route: Route,
}

/// Whose uploads these are: where they are created and where what was
/// sent is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A patient, with its upload token, on the main listener.
    Patient,
    /// A reviewing centre replying with its grant token and client
    /// certificate, on the centre listener.
    Centre,
}

impl Route {
    fn create_path(self) -> &'static str {
        match self {
            Route::Patient => "tus/",
            Route::Centre => "api/v1/grant/tus/",
        }
    }

    fn listing_path(self) -> &'static str {
        match self {
            Route::Patient => "api/v1/patient/case",
            Route::Centre => "api/v1/grant",
        }
    }

    /// The listing as a manifest of what this uploader sent: `case_id`
    /// and `files`. A patient's manifest also lists documents released to
    /// the patient, which are not its uploads (even with the same bytes);
    /// a centre's are the `replies` of its grant listing.
    fn own_files(self, mut listing: Value) -> Value {
        let files = match self {
            Route::Patient => Value::Array(
                listing["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|f| f["source"]["kind"].as_str().is_none_or(|k| k == "patient"))
                    .cloned()
                    .collect(),
            ),
            Route::Centre => listing["replies"].take(),
        };
        listing["files"] = files;
        listing
    }
}

/// What a new upload is announced as.
pub struct Announce<'a> {
    pub name: &'a str,
    pub size: u64,
    pub category: &'a str,
    pub filetype: Option<&'a str>,
}

impl Tus {
    pub fn new(
        client: reqwest::Client,
        server: &str,
        token: SecretToken,
        route: Route,
    ) -> Result<Tus, String> {
        let base = Url::parse(&format!("{}/", server.trim_end_matches('/')))
            .map_err(|_| format!("{server}: not a gateway address"))?;
        Ok(Tus {
            client,
            base,
            token,
            route,
        })
    }

    /// A tus request. Every one but the PATCH (as long as the file takes)
    /// has a deadline, so a gateway that stops answering is retried
    /// rather than waited on forever.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self
            .client
            .request(method.clone(), url)
            .bearer_auth(self.token.expose())
            .header("Tus-Resumable", "1.0.0");
        if method == Method::PATCH {
            request
        } else {
            request.timeout(SHORT_REQUEST)
        }
    }

    /// The gateway as the patient should recognise it (scheme, host, port).
    pub fn gateway(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// An upload URL from the state file or a `Location` header, if it is
    /// on the gateway's origin.
    pub fn upload_url(&self, location: &str) -> Option<Url> {
        let url = self.base.join(location).ok()?;
        (url.origin() == self.base.origin()).then_some(url)
    }

    pub async fn create(&self, file: &Announce<'_>, shown: &str) -> Result<Url, Failure> {
        let mut metadata = format!(
            "filename {},category {}",
            STANDARD.encode(file.name),
            STANDARD.encode(file.category)
        );
        if let Some(t) = file.filetype {
            metadata.push_str(&format!(",filetype {}", STANDARD.encode(t)));
        }
        let url = self
            .base
            .join(self.route.create_path())
            .map_err(|e| Failure::Stop(e.to_string()))?;
        let resp = self
            .request(Method::POST, url)
            .header("Upload-Length", file.size)
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        if resp.status().as_u16() != 201 {
            return Err(from_response(resp, shown).await);
        }
        resp.headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| self.upload_url(l))
            .ok_or_else(|| {
                Failure::Stop("the gateway answered without a usable upload address".into())
            })
    }

    /// HEAD: the bytes the gateway holds durably.
    pub async fn offset(&self, url: &Url, shown: &str) -> Result<u64, Failure> {
        let resp = self
            .request(Method::HEAD, url.clone())
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        if resp.status().as_u16() != 200 {
            return Err(from_response(resp, shown).await);
        }
        upload_offset(&resp)
    }

    /// One PATCH streaming `len` bytes from `offset`; the new offset.
    pub async fn append(
        &self,
        url: &Url,
        offset: u64,
        len: u64,
        body: reqwest::Body,
        shown: &str,
    ) -> Result<u64, Failure> {
        let resp = self
            .request(Method::PATCH, url.clone())
            .header("Upload-Offset", offset)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/offset+octet-stream",
            )
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        if resp.status().as_u16() != 204 {
            return Err(from_response(resp, shown).await);
        }
        upload_offset(&resp)
    }

    /// Best effort: an upload the state no longer needs (its file changed).
    pub async fn terminate(&self, url: &Url) {
        let _ = self.request(Method::DELETE, url.clone()).send().await;
    }

    /// The case's id and the files this uploader sent, as the gateway has
    /// them (`GET /api/v1/patient/case` or `GET /api/v1/grant`).
    pub async fn manifest(&self) -> Result<Value, Failure> {
        let url = self
            .base
            .join(self.route.listing_path())
            .map_err(|e| Failure::Stop(e.to_string()))?;
        let resp = self
            .client
            .get(url)
            .bearer_auth(self.token.expose())
            .timeout(MANIFEST_REQUEST)
            .send()
            .await
            .map_err(|e| from_transport(&e))?;
        if !resp.status().is_success() {
            return Err(from_response(resp, "the case").await);
        }
        let body = body_within(resp, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => Failure::Stop(format!(
                    "the gateway's case manifest is larger than {} MiB; check the address",
                    MAX_MANIFEST_BYTES >> 20
                )),
                BodyError::Interrupted(why) => Failure::Retry {
                    why: format!("the connection broke ({why})"),
                    after: None,
                },
            })?;
        serde_json::from_slice(&body)
            .map(|listing| self.route.own_files(listing))
            .map_err(|_| Failure::Stop("the gateway's case manifest is not readable".into()))
    }
}

fn upload_offset(resp: &reqwest::Response) -> Result<u64, Failure> {
    resp.headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Failure::Retry {
            why: "the gateway's answer had no Upload-Offset".into(),
            after: None,
        })
}

/// The `filetype` announced: DICOM, or a few common document types.
pub fn filetype(name: &str, dicom: bool) -> Option<&'static str> {
    if dicom {
        return Some("application/dicom");
    }
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "txt" => "text/plain",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKind;

    #[test]
    fn upload_addresses_stay_on_the_gateway() {
        let token = SecretToken::generate(TokenKind::Upload);
        let tus = Tus::new(
            reqwest::Client::new(),
            "https://gw.example:8443/cg",
            token,
            Route::Patient,
        )
        .unwrap();
        assert_eq!(
            tus.upload_url("/tus/up_1").unwrap().as_str(),
            "https://gw.example:8443/tus/up_1"
        );
        assert!(tus.upload_url("https://gw.example:8443/tus/up_2").is_some());
        for elsewhere in [
            "https://evil.example/tus/up_1",
            "//evil.example/tus/up_1",
            "http://gw.example:8443/tus/up_1",
            "https://gw.example:9443/tus/up_1",
        ] {
            assert!(tus.upload_url(elsewhere).is_none(), "{elsewhere}");
        }
        assert_eq!(filetype("scan.PDF", false), Some("application/pdf"));
        assert_eq!(filetype("IM0001", true), Some("application/dicom"));
        assert_eq!(filetype("notes", false), None);
    }
}

#[cfg(test)]
mod own_files {
    use super::Route;
    use serde_json::json;

    #[test]
    fn each_uploader_compares_with_what_it_sent() {
        let patient = json!({"case_id": "c", "files": [
            {"filename": "mine.pdf", "source": {"kind": "patient"}},
            {"filename": "old-server.pdf"},
            {"filename": "opinion.pdf", "source": {"kind": "centre", "centre_id": "ctr_1"}},
            {"filename": "report-en.pdf", "source": {"kind": "coordinator"}},
        ]});
        let own = Route::Patient.own_files(patient);
        let names: Vec<_> = own["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].clone())
            .collect();
        assert_eq!(names, [json!("mine.pdf"), json!("old-server.pdf")]);
        let grant = json!({"case_id": "c", "files": [{"filename": "granted.pdf"}],
                           "replies": [{"filename": "opinion.pdf"}]});
        let own = Route::Centre.own_files(grant);
        assert_eq!(own["files"], json!([{"filename": "opinion.pdf"}]));
        assert_eq!(own["case_id"], "c");
    }
}
