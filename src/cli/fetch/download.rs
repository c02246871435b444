//! The network side of a fetch: the sealed object of one file, downloaded
//! or resumed with a `Range` continuation.

use std::cmp::Ordering;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, RANGE};

use super::manifest::GrantedFile;
use super::problem::{FileError, problem};
use crate::cli::bounded::printable;

/// Where to continue a sealed download of `sealed_size` bytes that has
/// `on_disk` bytes so far. A complete one is re-confirmed from its last
/// byte: the sealed key only comes with a response, and a continuation is
/// not another download. Anything longer than the object is not ours.
fn resume_from(on_disk: u64, sealed_size: u64) -> u64 {
    match on_disk.cmp(&sealed_size) {
        Ordering::Less => on_disk,
        Ordering::Equal => sealed_size.saturating_sub(1),
        Ordering::Greater => 0,
    }
}

/// Where a download's progress shows: its own bar and the fetch's total.
#[derive(Clone, Copy)]
pub struct Meter<'a> {
    pub file: &'a ProgressBar,
    pub total: &'a ProgressBar,
}

/// Downloads (or resumes) the sealed object of `file` into `part`;
/// returns the sealed key header. On success `part` holds exactly its
/// `sealed_size` bytes.
pub async fn download_sealed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    part: &Path,
    file: &GrantedFile,
    meter: Meter<'_>,
) -> Result<String, FileError> {
    let sealed_size = file.sealed_size;
    let on_disk = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let have = resume_from(on_disk, sealed_size);
    let mut req = client.get(url).bearer_auth(token);
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(problem(resp).await);
    }
    same_object(&resp, file, part)?;
    let start = answered_from(&resp, have, sealed_size)?;
    // Everything past what the grant promised is refused before it is read.
    let promised = sealed_size.saturating_sub(start);
    if let Some(announced) = resp.content_length().filter(|n| *n > promised) {
        return Err(format!(
            "the gateway announced {announced} bytes where the grant promised {promised}; \
             nothing was written"
        )
        .into());
    }
    let sealed_key = resp
        .headers()
        .get("casegate-sealed-key")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Casegate-Sealed-Key header")?
        .to_owned();
    write_body(resp, part, start, sealed_size, meter).await?;
    Ok(sealed_key)
}

/// Whether the answer is the object the grant lists: its `ETag` is the
/// grant's `sealed_etag` (gateways that list none are not checked). A
/// different object makes the bytes on disk useless: they are discarded,
/// so the next run starts over.
fn same_object(resp: &reqwest::Response, file: &GrantedFile, part: &Path) -> Result<(), FileError> {
    let Some(expected) = &file.sealed_etag else {
        return Ok(());
    };
    let etag = resp.headers().get(ETAG).and_then(|v| v.to_str().ok());
    if etag.and_then(|e| e.strip_prefix('"')?.strip_suffix('"')) == Some(expected.as_str()) {
        return Ok(());
    }
    let _ = std::fs::remove_file(part);
    Err(
        "the gateway sent another object than the grant lists (its ETag differs); \
         what was downloaded of it is discarded, run fetch again"
            .into(),
    )
}

/// Where the answer starts: `have` for a 206 whose `Content-Range` is
/// exactly the continuation asked for, 0 for a whole object.
fn answered_from(resp: &reqwest::Response, have: u64, sealed_size: u64) -> Result<u64, FileError> {
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return Ok(0);
    }
    let last = sealed_size.saturating_sub(1);
    let expected = format!("bytes {have}-{last}/{sealed_size}");
    let got = resp
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got != expected {
        return Err(format!(
            "the gateway answered the range {:?}, not {expected:?}",
            printable(got)
        )
        .into());
    }
    Ok(have)
}

/// Writes the answer's body into `part` from `start`, refusing (and
/// discarding) anything past the object's promised end, and makes it
/// durable; the whole object must then be there.
async fn write_body(
    resp: reqwest::Response,
    part: &Path,
    start: u64,
    sealed_size: u64,
    meter: Meter<'_>,
) -> Result<(), FileError> {
    let promised = sealed_size.saturating_sub(start);
    let io = |e: std::io::Error| format!("{}: {e}", part.display());
    let mut file = crate::fsutil::private_file(part, false).map_err(io)?;
    file.set_len(start).map_err(io)?;
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    meter.file.set_position(start);
    meter.total.inc(start);
    let mut stream = resp.bytes_stream();
    let mut received = 0u64;
    while let Some(piece) = stream.next().await {
        let piece =
            piece.map_err(|e| format!("download interrupted: {e} (run fetch again to resume)"))?;
        received += piece.len() as u64;
        if received > promised {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(format!(
                "the gateway sent more than the {sealed_size} bytes the grant promised; \
                 the download was stopped and discarded"
            )
            .into());
        }
        file.write_all(&piece).map_err(io)?;
        meter.file.inc(piece.len() as u64);
        meter.total.inc(piece.len() as u64);
    }
    // Off the runtime: the other files keep downloading meanwhile.
    let file = tokio::task::spawn_blocking(move || file.sync_all().map(|()| file))
        .await
        .map_err(|e| e.to_string())?
        .map_err(io)?;
    let got = file.metadata().map_err(io)?.len();
    if got != sealed_size {
        return Err(format!(
            "download interrupted after {got} of {sealed_size} bytes (run fetch again to resume)"
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_where_the_download_stopped() {
        assert_eq!(resume_from(0, 100), 0);
        assert_eq!(resume_from(40, 100), 40);
        assert_eq!(resume_from(100, 100), 99, "complete: confirm the last byte");
        assert_eq!(
            resume_from(150, 100),
            0,
            "longer than the object: start over"
        );
    }
}
