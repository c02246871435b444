//! External copies of checkpoints in an S3 bucket
//! (`audit.checkpoint_copy = "s3://bucket/prefix"`): each one written as
//! `<prefix>/<size>.checkpoint` with `If-None-Match: *`, so a copy once
//! written is never replaced, and, with `audit.checkpoint_copy_retention_days`,
//! under S3 Object Lock in compliance mode until that many days from now, so
//! nobody — not the gateway's operators, not the bucket's owner — can delete
//! or overwrite it before then. Stores without Object Lock (Garage) ignore
//! or refuse those headers: see docs/operations.md.
//!
//! The endpoint, region, keys and addressing style are
//! `audit.checkpoint_copy_s3`'s, else `storage.s3`'s.

use s3::Bucket;
use s3::Region;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::ResponseData;

use crate::clock::Timestamp;
use crate::config::{S3Connection, parse_s3_url};

/// Why an S3 copy could not be written.
#[derive(Debug, thiserror::Error)]
pub enum S3CopyError {
    #[error("checkpoint copy s3://{bucket}/{key}: {detail}")]
    Failed {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error(
        "checkpoint copy s3://{bucket}/{key} already exists with other contents; not overwritten"
    )]
    Conflict { bucket: String, key: String },
}

/// Where copies go: the bucket (with `storage.s3`'s connection) and the
/// key prefix.
pub struct S3Copy {
    bucket: Box<Bucket>,
    prefix: String,
    retention_days: Option<u32>,
}

impl std::fmt::Debug for S3Copy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Copy(s3://{}/{})", self.bucket.name, self.prefix)
    }
}

impl S3Copy {
    /// The copy target for `url` over `connection`'s endpoint and keys.
    pub fn open(
        url: &str,
        connection: &S3Connection,
        retention_days: Option<u32>,
    ) -> Option<S3Copy> {
        let (name, prefix) = parse_s3_url(url)?;
        let region = Region::Custom {
            region: connection.region.clone(),
            endpoint: connection.endpoint.clone(),
        };
        let credentials = Credentials::new(
            Some(&connection.access_key),
            Some(connection.secret_key.expose()),
            None,
            None,
            None,
        )
        .ok()?;
        let bucket = Bucket::new(&name, region, credentials).ok()?;
        let bucket = if connection.path_style {
            bucket.with_path_style()
        } else {
            bucket
        };
        Some(S3Copy {
            bucket,
            prefix,
            retention_days,
        })
    }

    /// The object key of the copy of the checkpoint of `size` entries.
    pub fn key(&self, size: u64) -> String {
        if self.prefix.is_empty() {
            format!("{size}.checkpoint")
        } else {
            format!("{}/{size}.checkpoint", self.prefix)
        }
    }

    fn failed(&self, key: &str, detail: String) -> S3CopyError {
        S3CopyError::Failed {
            bucket: self.bucket.name.clone(),
            key: key.to_owned(),
            detail,
        }
    }

    /// The headers of the write: never over an existing object, and under
    /// Object Lock retention when configured.
    fn headers(&self, now: Timestamp) -> Result<http::HeaderMap, S3CopyError> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::IF_NONE_MATCH,
            http::HeaderValue::from_static("*"),
        );
        if let Some(days) = self.retention_days {
            let until = now.plus_secs(u64::from(days) * 24 * 3600).to_string();
            headers.insert(
                "x-amz-object-lock-mode",
                http::HeaderValue::from_static("COMPLIANCE"),
            );
            let value = http::HeaderValue::from_str(&until)
                .map_err(|e| self.failed("", format!("retention date: {e}")))?;
            headers.insert("x-amz-object-lock-retain-until-date", value);
        }
        Ok(headers)
    }

    /// Writes `note` as the copy of the checkpoint of `size` entries and
    /// returns its `s3://` address. An identical existing copy is fine
    /// (another replica wrote it); a different one is refused.
    pub async fn write(
        &self,
        size: u64,
        note: &str,
        now: Timestamp,
    ) -> Result<String, S3CopyError> {
        let key = self.key(size);
        let address = format!("s3://{}/{key}", self.bucket.name);
        // Looked at first: some stores (Garage) ignore If-None-Match and
        // would replace an existing object. The conditional write below
        // still closes the gap on stores that honour it.
        match self.bucket.get_object(&key).await {
            Ok(data) => return self.compare(key, address, data.as_slice(), note),
            Err(S3Error::HttpFailWithBody(404, _)) => {}
            Err(e) => {
                return Err(
                    self.failed(&key, format!("looking for an existing copy: {}", brief(&e)))
                );
            }
        }
        let headers = self.headers(now)?;
        let put = self
            .bucket
            .put_object_with_content_type_and_headers(
                &key,
                note.as_bytes(),
                "text/plain; charset=utf-8",
                Some(headers),
            )
            .await;
        match put {
            Ok(_) => Ok(address),
            Err(S3Error::HttpFailWithBody(412, _)) => {
                let existing: Result<ResponseData, S3Error> = self.bucket.get_object(&key).await;
                match existing {
                    Ok(data) => self.compare(key, address, data.as_slice(), note),
                    Err(e) => Err(self.failed(
                        &key,
                        format!("exists, and reading it back failed: {}", brief(&e)),
                    )),
                }
            }
            Err(e) => Err(self.failed(&key, brief(&e))),
        }
    }

    /// An existing copy: fine when it is this note (another replica, or an
    /// earlier attempt, wrote it), refused otherwise.
    fn compare(
        &self,
        key: String,
        address: String,
        existing: &[u8],
        note: &str,
    ) -> Result<String, S3CopyError> {
        if existing == note.as_bytes() {
            Ok(address)
        } else {
            Err(S3CopyError::Conflict {
                bucket: self.bucket.name.clone(),
                key,
            })
        }
    }
}

/// An S3 error in a line: the status and the store's error code, never the
/// request (which holds a signature).
fn brief(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(code, body) => {
            let code_text = body
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next())
                .unwrap_or("");
            format!("HTTP {code} {code_text}").trim_end().to_owned()
        }
        other => other.to_string(),
    }
}
