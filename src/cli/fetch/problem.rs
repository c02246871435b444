//! The gateway's problem answers (problem+json) turned into one printable
//! line, and whether every other file would fail alike.

use reqwest::StatusCode;
use serde_json::Value;

use crate::cli::bounded::{MAX_PROBLEM_BYTES, body_within, printable};

/// Why one file did not land.
#[derive(Debug)]
pub struct FileError {
    pub message: String,
    /// Every other file would fail alike — the gateway refused the grant
    /// itself (revoked, expired, another certificate, rate limited), or the
    /// X25519 key opens no sealed key — so fetch stops instead of trying
    /// (and counting a download of) each.
    pub stop: bool,
}

impl From<String> for FileError {
    fn from(message: String) -> FileError {
        FileError {
            message,
            stop: false,
        }
    }
}

impl From<&str> for FileError {
    fn from(message: &str) -> FileError {
        message.to_owned().into()
    }
}

/// A gateway's error answer as one line; whether it refuses the whole grant
/// rather than this one file (`grant_exhausted` counts per file).
pub async fn problem(resp: reqwest::Response) -> FileError {
    let status = resp.status();
    let body: Value = body_within(resp, MAX_PROBLEM_BYTES)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let code = body["code"].as_str().unwrap_or("");
    FileError {
        message: printable(&format!(
            "{status}: {}",
            body["detail"].as_str().unwrap_or(code)
        )),
        stop: matches!(status.as_u16(), 401 | 429)
            || (status == StatusCode::FORBIDDEN && code != "grant_exhausted"),
    }
}
