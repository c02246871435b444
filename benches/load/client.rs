//! One simulated client: its own source address, its own case, and a loop
//! of randomly drawn actions until the deadline — tus uploads as a patient,
//! manifest reads as patient and coordinator, grant reads and downloads as
//! the centre. Nothing is buffered whole: upload bodies are slices of one
//! shared buffer, downloads are checked and dropped piece by piece.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::grants::Booking;
use crate::setup::{Case, Fixture, issue_grant};
use crate::stats::{Op, Progress, Recorder};
use crate::support::PIECE;
use crate::verify::Tally;

/// Upload lengths and PATCH sizes are drawn uniformly from these ranges.
pub const UPLOAD_LEN: (u64, u64) = (256 * 1024, 8 * 1024 * 1024);
pub const PATCH_LEN: (u64, u64) = (256 * 1024, 4 * 1024 * 1024);
/// The longest Range asked for.
const MAX_RANGE: u64 = 4 * 1024 * 1024;
/// A client pauses this long after an action that failed.
const ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// `filename load.bin`, `category other`.
const METADATA: &str = "filename bG9hZC5iaW4,category b3RoZXI";

/// The mix: an action and its weight. An upload is one POST and as many
/// PATCHes as its length needs.
pub const MIX: [(Op, u64); 8] = [
    (Op::TusCreate, 25),
    (Op::PatientManifest, 15),
    (Op::CaseManifest, 15),
    (Op::GrantInfo, 5),
    (Op::PlainWhole, 10),
    (Op::PlainRange, 10),
    (Op::SealedWhole, 10),
    (Op::SealedRange, 10),
];

/// SplitMix64: small, seedable, good enough to draw sizes and actions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

pub struct Client {
    pub fx: Arc<Fixture>,
    pub http: reqwest::Client,
    pub case: usize,
    pub rng: Rng,
    pub progress: Arc<Progress>,
    /// `support::payload()`: the byte pattern of the downloadable files.
    pub pattern: Bytes,
    /// Upload bodies are slices of this (at least `PATCH_LEN.1` bytes).
    pub upload: Bytes,
    pub rec: Recorder,
    pub tally: Tally,
}

impl Client {
    pub async fn run(mut self, deadline: Instant) -> (Recorder, Tally) {
        let weights: u64 = MIX.iter().map(|(_, w)| w).sum();
        while Instant::now() < deadline {
            let errors = self.rec.total_errors();
            let mut draw = self.rng.below(weights);
            let op = MIX
                .iter()
                .find(|(_, w)| {
                    let hit = draw < *w;
                    draw = draw.saturating_sub(*w);
                    hit
                })
                .map_or(Op::PatientManifest, |(op, _)| *op);
            match op {
                Op::TusCreate => self.upload(deadline).await,
                Op::PatientManifest => {
                    let url = format!("{}/api/v1/patient/case", self.fx.base);
                    let token = self.own_case().token.clone();
                    self.read_json(op, &url, &token).await;
                }
                Op::CaseManifest => {
                    let case = &self.fx.cases[self.rng.below(self.fx.cases.len() as u64) as usize];
                    let url = format!("{}/api/v1/cases/{}", self.fx.base, case.case_id);
                    let token = self.fx.coordinator.clone();
                    self.read_json(op, &url, &token).await;
                }
                Op::GrantInfo => {
                    let url = format!("{}/api/v1/grant", self.fx.centre_base);
                    let rng = &mut self.rng;
                    match self.fx.grants.any(|n| rng.below(n as u64) as usize) {
                        Some(token) => self.read_json(op, &url, &token).await,
                        None => self.issue().await,
                    }
                }
                _ => self.download(op).await,
            }
            if self.rec.total_errors() > errors {
                // As a real client would: a failing gateway is not hammered
                // (and a storm of refusals does not spin this process).
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        (self.rec, self.tally)
    }

    fn own_case(&self) -> &Case {
        &self.fx.cases[self.case]
    }

    fn record(&mut self, op: Op, started: Instant, bytes: u64, outcome: Result<(), String>) {
        self.rec
            .record(&self.progress, op, started.elapsed(), bytes, outcome);
    }

    /// A tus upload of a random length in PATCHes of random sizes; stops at
    /// the first failure (counted) or at the deadline.
    async fn upload(&mut self, deadline: Instant) {
        let len = self.rng.between(UPLOAD_LEN);
        let token = self.own_case().token.clone();
        let started = Instant::now();
        let created = async {
            let resp = self
                .http
                .post(format!("{}/tus/", self.fx.base))
                .bearer_auth(&token)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Length", len)
                .header("Upload-Metadata", METADATA)
                .send()
                .await
                .map_err(describe)?;
            let resp = expect_status(resp, 201).await?;
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or("201 without Location")?;
            Ok::<_, String>(format!("{}{location}", self.fx.base))
        }
        .await;
        let url = match created {
            Ok(url) => {
                self.tally.created += 1;
                self.record(Op::TusCreate, started, 0, Ok(()));
                url
            }
            Err(e) => return self.record(Op::TusCreate, started, 0, Err(e)),
        };
        let mut offset = 0;
        while offset < len && Instant::now() < deadline {
            let n = self.rng.between(PATCH_LEN).min(len - offset);
            let started = Instant::now();
            let outcome = async {
                let resp = self
                    .http
                    .patch(&url)
                    .bearer_auth(&token)
                    .header("Tus-Resumable", "1.0.0")
                    .header("Upload-Offset", offset)
                    .header("Content-Type", "application/offset+octet-stream")
                    .body(self.upload.slice(..n as usize))
                    .send()
                    .await
                    .map_err(describe)?;
                let resp = expect_status(resp, 204).await?;
                let stored = resp
                    .headers()
                    .get("upload-offset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if stored != Some(offset + n) {
                    return Err(format!("204 with Upload-Offset {stored:?}, not the sum"));
                }
                Ok(())
            }
            .await;
            let failed = outcome.is_err();
            self.record(Op::TusPatch, started, n, outcome);
            if failed {
                return;
            }
            offset += n;
        }
        if offset == len {
            self.tally.completed += 1;
        }
    }

    /// A JSON read that must answer 200 with a JSON object.
    async fn read_json(&mut self, op: Op, url: &str, token: &str) {
        let started = Instant::now();
        let outcome = async {
            let resp = self
                .http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map_err(describe)?;
            let body = expect_status(resp, 200)
                .await?
                .bytes()
                .await
                .map_err(describe)?;
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) if v.is_object() => Ok(body.len() as u64),
                _ => Err("200 whose body is not a JSON object".to_owned()),
            }
        }
        .await;
        let bytes = *outcome.as_ref().unwrap_or(&0);
        self.record(op, started, bytes, outcome.map(|_| ()));
    }

    /// Issues a grant as the coordinator (when a live one was used up).
    async fn issue(&mut self) {
        let started = Instant::now();
        let outcome = issue_grant(&self.http, &self.fx).await;
        let outcome = outcome.map(|token| self.fx.grants.add(token));
        self.record(Op::GrantIssue, started, 0, outcome);
    }

    /// A download through a booked grant: whole or one random Range,
    /// plaintext (every byte checked) or sealed (length and key header).
    async fn download(&mut self, op: Op) {
        let mut attempts = 0;
        let (token, index) = loop {
            attempts += 1;
            if attempts > 3 {
                // Grants could not be issued (counted as errors there).
                return;
            }
            let rng = &mut self.rng;
            let booking = self.fx.grants.book(|grants, files| {
                (
                    rng.below(grants as u64) as usize,
                    rng.below(files as u64) as usize,
                )
            });
            match booking {
                Booking::Booked(token, file) => break (token, file),
                Booking::Retired | Booking::Empty => self.issue().await,
            }
        };
        let file = self.fx.grants.files[index].clone();
        let sealed = matches!(op, Op::SealedWhole | Op::SealedRange);
        let total = if sealed { file.sealed_size } else { file.size };
        let range = matches!(op, Op::PlainRange | Op::SealedRange).then(|| {
            let start = self.rng.below(total);
            let len = 1 + self.rng.below((total - start).min(MAX_RANGE));
            (start, len)
        });
        let (start, len) = range.unwrap_or((0, total));
        let url = format!(
            "{}/api/v1/grant/files/{}{}",
            self.fx.centre_base,
            file.file_id,
            if sealed { "/sealed" } else { "" }
        );
        let started = Instant::now();
        let (mut received, mut accepted) = (0u64, false);
        let outcome = async {
            let mut req = self.http.get(&url).bearer_auth(&*token);
            if range.is_some() {
                req = req.header("Range", format!("bytes={start}-{}", start + len - 1));
            }
            let resp = req.send().await.map_err(describe)?;
            let resp = expect_status(resp, if range.is_some() { 206 } else { 200 }).await?;
            accepted = true;
            if resp.content_length() != Some(len) {
                return Err(format!(
                    "Content-Length {:?}, not {len}",
                    resp.content_length()
                ));
            }
            if sealed && resp.headers().get("casegate-sealed-key").is_none() {
                return Err("sealed download without Casegate-Sealed-Key".to_owned());
            }
            let mut body = resp.bytes_stream();
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(describe)?;
                if !sealed && !matches_pattern(&self.pattern, start + received, &piece) {
                    return Err("plaintext bytes differ from the uploaded ones".to_owned());
                }
                received += piece.len() as u64;
            }
            if received != len {
                return Err(format!("body ended after {received} of {len} bytes"));
            }
            Ok(())
        }
        .await;
        // As the gateway charges a grant's byte budget.
        self.tally.starts[index] += u64::from(accepted && start == 0);
        self.tally.charged[index] += match (sealed, received) {
            (false, n) => n,
            (true, 0) => 0,
            (true, n) => (u128::from(n) * u128::from(file.size) / u128::from(total)).max(1) as u64,
        };
        self.record(op, started, received, outcome);
    }
}

/// Whether `piece`, found at `offset` of a download file, holds the bytes
/// uploaded there: `pattern[(offset + i) % PIECE]`.
fn matches_pattern(pattern: &[u8], mut offset: u64, mut piece: &[u8]) -> bool {
    while !piece.is_empty() {
        let at = (offset % PIECE as u64) as usize;
        let n = piece.len().min(PIECE - at);
        if piece[..n] != pattern[at..at + n] {
            return false;
        }
        piece = &piece[n..];
        offset += n as u64;
    }
    true
}

/// A transport error without the URL (which holds ids) but with its causes.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The response if its status is `want`; else the status and the
/// problem's `code` (reading at most a few KiB of the body).
pub async fn expect_status(
    mut resp: reqwest::Response,
    want: u16,
) -> Result<reqwest::Response, String> {
    let status = resp.status();
    if status.as_u16() == want {
        return Ok(resp);
    }
    let mut body = Vec::new();
    while body.len() < 4096 {
        match resp.chunk().await {
            Ok(Some(piece)) => body.extend_from_slice(&piece),
            _ => break,
        }
    }
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Err(format!("HTTP {} {code}", status.as_u16())
        .trim_end()
        .to_owned())
}
