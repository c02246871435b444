//! The download grants the clients share. A grant allows at most
//! `max_downloads` (the gateway's maximum, 100) downloads per file, so the
//! load test keeps a few live grants and books every download against one
//! before making it — whole or Range, plaintext or sealed, each booked as a
//! full download, which keeps both the gateway's start count and its byte
//! budget (`max_downloads × size`) out of reach. A grant with a file used
//! up is retired, and the client that retired it issues a fresh one as a
//! coordinator would: refusals for exhausted grants are never load errors.

use std::sync::{Arc, Mutex};

/// The gateway's largest `max_downloads`.
pub const MAX_DOWNLOADS: u32 = 100;
/// Grants kept live at once.
pub const LIVE: usize = 4;

/// A granted file as the centre sees it.
#[derive(Clone, Debug)]
pub struct GrantedFile {
    pub file_id: String,
    pub size: u64,
    pub sealed_size: u64,
}

struct LiveGrant {
    token: Arc<str>,
    downloads_left: Vec<u32>,
}

pub enum Booking {
    /// A download of file `.1` booked under the grant token `.0`.
    Booked(Arc<str>, usize),
    /// The grant drawn had a file used up; it was retired by this call, and
    /// the caller should issue a replacement.
    Retired,
    /// No live grant (others are being issued).
    Empty,
}

pub struct GrantPool {
    pub files: Vec<GrantedFile>,
    live: Mutex<Vec<LiveGrant>>,
}

impl GrantPool {
    pub fn new(files: Vec<GrantedFile>) -> GrantPool {
        GrantPool {
            files,
            live: Mutex::new(Vec::new()),
        }
    }

    pub fn add(&self, token: String) {
        let grant = LiveGrant {
            token: token.into(),
            downloads_left: vec![MAX_DOWNLOADS; self.files.len()],
        };
        if let Ok(mut live) = self.live.lock() {
            live.push(grant);
        }
    }

    /// Books one download of a file drawn by `pick(grants, files)`.
    pub fn book(&self, pick: impl FnOnce(usize, usize) -> (usize, usize)) -> Booking {
        let Ok(mut live) = self.live.lock() else {
            return Booking::Empty;
        };
        if live.is_empty() || self.files.is_empty() {
            return Booking::Empty;
        }
        let (g, f) = pick(live.len(), self.files.len());
        let grant = &mut live[g];
        if grant.downloads_left[f] == 0 {
            live.swap_remove(g);
            return Booking::Retired;
        }
        grant.downloads_left[f] -= 1;
        Booking::Booked(grant.token.clone(), f)
    }

    /// Any live grant's token (for the grant's file list, which costs
    /// no download).
    pub fn any(&self, pick: impl FnOnce(usize) -> usize) -> Option<Arc<str>> {
        let live = self.live.lock().ok()?;
        if live.is_empty() {
            return None;
        }
        Some(live[pick(live.len())].token.clone())
    }
}
