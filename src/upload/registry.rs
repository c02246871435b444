//! In-process upload coordination: one PATCH per upload at a time (the
//! loser gets 423), a cap on PATCHes running per case, and the running
//! SHA-256 of each live upload (lost on restart; completion then re-hashes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::digest;

use crate::crypto::format::{Layout, ObjectDigest};
use crate::ids::UploadId;

#[derive(Default)]
pub struct UploadRegistry {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    running: Arc<Mutex<HashMap<String, u64>>>,
    hashes: Mutex<HashMap<String, (u64, RunningHashes)>>,
    /// Where the next sweep goes on through stalled completions.
    sweep_after: Mutex<Option<UploadId>>,
}

/// SHA-256 of an upload's plaintext so far and the digest of the object
/// bytes written so far (the sealed download's ETag).
#[derive(Clone)]
pub struct RunningHashes {
    pub plain: digest::Context,
    pub sealed: ObjectDigest,
}

impl RunningHashes {
    /// For an upload that has stored nothing yet.
    pub fn new(layout: Layout) -> RunningHashes {
        RunningHashes {
            plain: digest::Context::new(&digest::SHA256),
            sealed: ObjectDigest::new(layout),
        }
    }
}

impl std::fmt::Debug for UploadRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadRegistry")
    }
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Held while a request works on one upload.
pub struct UploadLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Counts one running PATCH against its case while alive.
pub struct CaseSlot {
    running: Arc<Mutex<HashMap<String, u64>>>,
    case_id: String,
}

impl Drop for CaseSlot {
    fn drop(&mut self) {
        let mut running = guard(&self.running);
        if let Some(n) = running.get_mut(&self.case_id) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.case_id);
            }
        }
    }
}

impl UploadRegistry {
    /// The upload's lock, or None if another request holds it.
    pub fn try_lock(&self, upload_id: &str) -> Option<UploadLock> {
        let mut locks = guard(&self.locks);
        // Forget locks nobody holds, so the map stays as small as the set
        // of uploads in progress.
        locks.retain(|_, l| Arc::strong_count(l) > 1 || l.try_lock().is_err());
        let lock = locks.entry(upload_id.to_owned()).or_default().clone();
        lock.try_lock_owned().ok().map(|g| UploadLock { _guard: g })
    }

    /// Waits up to `bound` for the upload's lock: for a request that must
    /// see the upload as the running PATCH leaves it (a HEAD after a PATCH
    /// whose connection dropped, which may still be taking its last durable
    /// point). None if it is still held after `bound`.
    pub async fn lock_within(
        &self,
        upload_id: &str,
        bound: std::time::Duration,
    ) -> Option<UploadLock> {
        let lock = {
            let mut locks = guard(&self.locks);
            locks.retain(|_, l| Arc::strong_count(l) > 1 || l.try_lock().is_err());
            locks.entry(upload_id.to_owned()).or_default().clone()
        };
        tokio::time::timeout(bound, lock.lock_owned())
            .await
            .ok()
            .map(|g| UploadLock { _guard: g })
    }

    /// Waits up to `bound` until no request holds any upload — at
    /// shutdown, for the PATCHes whose connections were closed to take
    /// their last durable point and give their lease back. False if some
    /// still hold one after `bound`.
    pub async fn idle_within(&self, bound: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let busy = guard(&self.locks).values().any(|l| l.try_lock().is_err());
            if !busy {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A slot for one more running PATCH in `case_id`, unless `max` run.
    pub fn enter_case(&self, case_id: &str, max: u64) -> Option<CaseSlot> {
        let mut running = guard(&self.running);
        let n = running.entry(case_id.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(CaseSlot {
            running: self.running.clone(),
            case_id: case_id.to_owned(),
        })
    }

    /// The running hashes of `upload_id` if they cover exactly `offset` bytes.
    pub fn take_hash(&self, upload_id: &str, offset: u64) -> Option<RunningHashes> {
        let mut hashes = guard(&self.hashes);
        match hashes.remove(upload_id) {
            Some((at, ctx)) if at == offset => Some(ctx),
            _ => None,
        }
    }

    pub fn put_hash(&self, upload_id: &str, offset: u64, ctx: RunningHashes) {
        guard(&self.hashes).insert(upload_id.to_owned(), (offset, ctx));
    }

    /// The last stalled completion the previous sweep reached (`None`:
    /// start from the first).
    pub fn sweep_after(&self) -> Option<UploadId> {
        guard(&self.sweep_after).clone()
    }

    pub fn set_sweep_after(&self, after: Option<UploadId>) {
        *guard(&self.sweep_after) = after;
    }

    pub fn forget(&self, upload_id: &str) {
        guard(&self.hashes).remove(upload_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_holder_and_case_slots() {
        let r = UploadRegistry::default();
        let held = r.try_lock("up_1").unwrap();
        assert!(r.try_lock("up_1").is_none());
        assert!(r.try_lock("up_2").is_some());
        drop(held);
        assert!(r.try_lock("up_1").is_some());

        let a = r.enter_case("c", 2).unwrap();
        let _b = r.enter_case("c", 2).unwrap();
        assert!(r.enter_case("c", 2).is_none());
        drop(a);
        assert!(r.enter_case("c", 2).is_some());
    }
}
