//! The download of a filtered export with proofs: the gateway sends one
//! JSON object per entry (`line`: the entry's exact line; `leaf_index`,
//! `tree_size`, `hashes`: its inclusion proof), split here into FILE (the
//! lines, as any export) and FILE.proofs (the proofs, line by line).

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::super::CliError;
use super::super::api_client::ApiClient;

#[derive(Deserialize)]
struct ProvenEntry {
    line: String,
    #[serde(flatten)]
    proof: Proof,
}

#[derive(Deserialize, Serialize)]
struct Proof {
    hashes: Vec<String>,
    leaf_index: u64,
    tree_size: u64,
}

struct Split {
    log: std::fs::File,
    proofs: std::fs::File,
    entries: u64,
}

impl Split {
    fn line(&mut self, raw: &[u8]) -> Result<(), String> {
        let entry: ProvenEntry = serde_json::from_slice(raw)
            .map_err(|e| format!("the gateway sent an export line that is not an entry: {e}"))?;
        let proof = serde_json::to_string(&entry.proof).map_err(|e| e.to_string())?;
        writeln!(self.log, "{}", entry.line).map_err(|e| e.to_string())?;
        writeln!(self.proofs, "{proof}").map_err(|e| e.to_string())?;
        self.entries += 1;
        Ok(())
    }
}

/// Streams `path` into `log` and `proofs` (created owner-only); returns
/// the number of entries.
pub async fn download(
    client: &ApiClient,
    path: &str,
    log: &Path,
    proofs: &Path,
) -> Result<u64, CliError> {
    let open = |p: &Path| {
        crate::fsutil::private_file(p, true).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut split = Split {
        log: open(log)?,
        proofs: open(proofs)?,
        entries: 0,
    };
    let resp = client.get(path).await?;
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the export broke off: {e}"))?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=end).collect();
            split.line(&raw[..end])?;
        }
    }
    if !pending.is_empty() {
        return Err("the export broke off inside a line".to_owned().into());
    }
    for file in [&split.log, &split.proofs] {
        file.sync_all().map_err(|e| e.to_string())?;
    }
    Ok(split.entries)
}
