//! What is left to send: each file found is either confirmed on the
//! gateway already — finished by an earlier run (resume state) or by the
//! upload page, matched in the manifest by name, size and SHA-256 — or a
//! job, continuing the upload an earlier run started when its file is
//! unchanged. An upload started for a file that has since changed is
//! terminated (once the patient confirms), so the case does not keep a
//! half of the old version. A file
//! an earlier run finished but the manifest does not list as complete
//! (the gateway stopped while finishing it) is not sent again blindly: its
//! upload is asked first, and only an upload the gateway no longer knows
//! (404/410) is started afresh.

use indicatif::DecimalBytes;

use super::Found;
use super::hashing::hash_prefix;
use super::matching::ServerFiles;
use super::receipt::Line;
use super::send::Job;
use super::state::{Entry, Phase, StateStore};
use super::ticker::Ticker;
use super::tus::Tus;

/// What a run will do.
pub struct Plan {
    pub jobs: Vec<Job>,
    /// One per file found, in the same order.
    pub lines: Vec<Line>,
    /// Unfinished uploads of files changed since: terminated once the
    /// patient confirms.
    pub stale: Vec<reqwest::Url>,
}

pub async fn plan(
    tus: &Tus,
    state: &StateStore,
    server: &mut ServerFiles,
    found: Vec<Found>,
) -> Plan {
    let mut lines: Vec<Line> = found.iter().map(Line::new).collect();
    let entries: Vec<Option<Entry>> = found.iter().map(|f| state.get(&f.file.path)).collect();
    // First the files this tool finished, so the gateway's files with the
    // same name and size are not taken by others first.
    for ((f, entry), line) in found.iter().zip(&entries).zip(lines.iter_mut()) {
        if let Some(Entry {
            state: Phase::Complete,
            sha256: Some(sha),
            ..
        }) = entry.as_ref().filter(|e| e.describes(&f.file))
            && server.take(&f.file.name, f.file.size, sha)
        {
            line.local_sha256 = Some(sha.clone());
        }
    }
    let mut plan = Plan {
        jobs: Vec::new(),
        lines,
        stale: Vec::new(),
    };
    let total = found.len();
    let mut ticker = Ticker::new("comparing with the files on the gateway");
    for (i, (f, entry)) in found.into_iter().zip(entries).enumerate() {
        ticker.tick(i, Some(total));
        if plan.lines[i].local_sha256.is_some() {
            continue;
        }
        if let Some(sha) = finished_elsewhere(state, server, &f).await {
            plan.lines[i].local_sha256 = Some(sha);
            continue;
        }
        plan.add_job(tus, entry, f, i);
    }
    plan.say_what_is_left();
    plan
}

impl Plan {
    fn add_job(&mut self, tus: &Tus, entry: Option<Entry>, f: Found, line: usize) {
        let (resume, known_sha256) = match earlier(tus, entry, &f) {
            Some(e) if e.same_file => (Some(e.url), e.sha256),
            // Only an unfinished upload: a finished one is the old
            // version, already part of the case.
            Some(e) if e.sha256.is_none() => {
                self.stale.push(e.url);
                (None, None)
            }
            _ => (None, None),
        };
        self.jobs.push(Job {
            dicom: f.kind.is_dicom(),
            category: f.category,
            file: f.file,
            resume,
            known_sha256,
            line,
        });
    }

    fn say_what_is_left(&self) {
        let already = self.lines.len() - self.jobs.len();
        if already > 0 {
            let bytes: u64 = self.jobs.iter().map(|j| j.file.size).sum();
            eprintln!(
                "{already} of {} files are on the gateway already; {} to send ({})",
                self.lines.len(),
                self.jobs.len(),
                DecimalBytes(bytes)
            );
        }
    }
}

impl Line {
    fn new(f: &Found) -> Line {
        Line {
            shown: f.file.shown.clone(),
            name: f.file.name.clone(),
            size: f.file.size,
            category: f.category,
            local_sha256: None,
            server_sha256: None,
            problem: None,
        }
    }
}

/// The file's SHA-256 if the gateway holds it (name, size and SHA-256
/// agree) although the state does not say so: sent by the upload page, by
/// another computer, or by a run killed before it wrote it down.
async fn finished_elsewhere(
    state: &StateStore,
    server: &mut ServerFiles,
    f: &Found,
) -> Option<String> {
    if !server.has(&f.file.name, f.file.size) {
        return None;
    }
    let ctx = hash_prefix(&f.file.path, f.file.size).await.ok()?;
    let sha = crate::hex::encode(ctx.finish().as_ref());
    if !server.take(&f.file.name, f.file.size, &sha) {
        return None;
    }
    let done = Entry {
        size: f.file.size,
        mtime_ns: f.file.mtime_ns,
        upload_url: None,
        state: Phase::Complete,
        sha256: Some(sha.clone()),
    };
    let _ = state.record(&f.file.path, done);
    Some(sha)
}

/// An upload an earlier run made for this path.
struct Earlier {
    /// The file is still the one it was made for.
    same_file: bool,
    url: reqwest::Url,
    /// Set when that run saw every byte accepted.
    sha256: Option<String>,
}

fn earlier(tus: &Tus, entry: Option<Entry>, f: &Found) -> Option<Earlier> {
    let entry = entry?;
    let url = tus.upload_url(entry.upload_url.as_deref()?)?;
    let same_file = entry.describes(&f.file);
    let complete = entry.state == Phase::Complete;
    Some(Earlier {
        same_file,
        url,
        sha256: entry.sha256.filter(|_| complete),
    })
}
