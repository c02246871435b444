//! After the load: does the gateway's state agree with what the clients
//! did? Every case must list exactly the uploads its client created, with
//! the finished ones `complete`; and per granted file, the grants' use
//! counts must equal the downloads started at byte 0, and their bytes
//! served what was received (sealed bytes scaled to the plaintext size, as
//! the gateway charges them). A mismatch is a defect under concurrency.

use std::collections::HashMap;

use crate::client::{describe, expect_status};
use crate::setup::Fixture;

/// What one client did that the gateway should remember.
#[derive(Clone, Default)]
pub struct Tally {
    /// Uploads created (201) and uploads whose last PATCH was answered.
    pub created: u64,
    pub completed: u64,
    /// Per granted file: downloads from byte 0, and budget units charged.
    pub starts: Vec<u64>,
    pub charged: Vec<u64>,
}

impl Tally {
    pub fn new(files: usize) -> Tally {
        Tally {
            starts: vec![0; files],
            charged: vec![0; files],
            ..Tally::default()
        }
    }

    pub fn add(&mut self, other: &Tally) {
        self.created += other.created;
        self.completed += other.completed;
        for (a, b) in self.starts.iter_mut().zip(&other.starts) {
            *a += b;
        }
        for (a, b) in self.charged.iter_mut().zip(&other.charged) {
            *a += b;
        }
    }
}

async fn get(c: &reqwest::Client, url: String, token: &str) -> Result<serde_json::Value, String> {
    let resp = c
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(describe)?;
    expect_status(resp, 200)
        .await?
        .json()
        .await
        .map_err(describe)
}

/// Compares; prints one line per check and every mismatch; returns the
/// number of mismatches.
pub async fn check(fx: &Fixture, c: &reqwest::Client, per_case: &[Tally]) -> usize {
    let mut problems = Vec::new();
    let (mut files, mut complete) = (0u64, 0u64);
    for (case, did) in fx.cases.iter().zip(per_case) {
        let url = format!("{}/api/v1/patient/case", fx.base);
        let manifest = match get(c, url, &case.token).await {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("case {}: manifest: {e}", case.case_id));
                continue;
            }
        };
        let listed = manifest["files"].as_array().cloned().unwrap_or_default();
        let done = listed.iter().filter(|f| f["state"] == "complete").count() as u64;
        files += listed.len() as u64;
        complete += done;
        if listed.len() as u64 != did.created || done != did.completed {
            problems.push(format!(
                "case {}: {} files listed, {done} complete; its client created {} and finished {}",
                case.case_id,
                listed.len(),
                did.created,
                did.completed
            ));
        }
    }
    let uploads = per_case.iter().fold(Tally::default(), |mut all, t| {
        all.created += t.created;
        all.completed += t.completed;
        all
    });
    println!(
        "consistency: uploads — {files} files listed, {complete} complete; clients created {}, finished {}",
        uploads.created, uploads.completed
    );

    let mut did = Tally::new(fx.grants.files.len());
    for t in per_case {
        did.add(t);
    }
    let url = format!("{}/api/v1/cases/{}/grants", fx.base, fx.download_case);
    let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
    let mut grants = 0;
    match get(c, url, &fx.coordinator).await {
        Ok(list) => {
            for g in list["grants"].as_array().cloned().unwrap_or_default() {
                grants += 1;
                for f in g["files"].as_array().cloned().unwrap_or_default() {
                    let (downloads, bytes) = (
                        f["downloads"].as_u64().unwrap_or(0),
                        f["bytes_served"].as_u64().unwrap_or(0),
                    );
                    if downloads > u64::from(crate::grants::MAX_DOWNLOADS) {
                        problems.push(format!("a grant counts {downloads} downloads of one file"));
                    }
                    let sum = seen
                        .entry(f["file_id"].as_str().unwrap_or("").to_owned())
                        .or_default();
                    sum.0 += downloads;
                    sum.1 += bytes;
                }
            }
        }
        Err(e) => problems.push(format!("grant list: {e}")),
    }
    for (i, file) in fx.grants.files.iter().enumerate() {
        let (downloads, bytes) = seen.get(&file.file_id).copied().unwrap_or_default();
        if downloads != did.starts[i] || bytes != did.charged[i] {
            problems.push(format!(
                "file of {} bytes: grants count {downloads} downloads and {bytes} bytes served; \
                 clients started {} and received {} (plaintext-equivalent)",
                file.size, did.starts[i], did.charged[i]
            ));
        }
    }
    println!(
        "consistency: downloads — {grants} grants; use counts and bytes served per file {} the clients' downloads",
        if problems.is_empty() {
            "match"
        } else {
            "checked against"
        }
    );
    for p in &problems {
        println!("  MISMATCH {p}");
    }
    problems.len()
}
