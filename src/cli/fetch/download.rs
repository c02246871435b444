//! The network side of a fetch: the sealed object of one file, downloaded
//! or resumed with a `Range` continuation, and the gateway's problem
//! answers turned into one line.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use serde_json::Value;

pub async fn problem(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    format!(
        "{status}: {}",
        body["detail"]
            .as_str()
            .or(body["code"].as_str())
            .unwrap_or("")
    )
}

/// Downloads (or resumes) the sealed object into `part`; returns the
/// sealed key header.
pub async fn download_sealed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    part: &Path,
    sealed_size: u64,
    bar: &ProgressBar,
) -> Result<String, String> {
    let have = std::fs::metadata(part)
        .map(|m| m.len())
        .unwrap_or(0)
        .min(sealed_size);
    let mut req = client.get(url).bearer_auth(token);
    if have > 0 && have < sealed_size {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let resuming = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
    if !resp.status().is_success() {
        return Err(problem(resp).await);
    }
    let sealed_key = resp
        .headers()
        .get("casegate-sealed-key")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Casegate-Sealed-Key header")?
        .to_owned();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resuming)
        .truncate(!resuming)
        .open(part)
        .map_err(|e| format!("{}: {e}", part.display()))?;
    bar.set_position(if resuming { have } else { 0 });
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece =
            piece.map_err(|e| format!("download interrupted: {e} (run fetch again to resume)"))?;
        file.write_all(&piece).map_err(|e| e.to_string())?;
        bar.inc(piece.len() as u64);
    }
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(sealed_key)
}
