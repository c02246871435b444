//! When to give up the whole run rather than one file: a dead line or a
//! gateway that stays away would otherwise be retried file after file
//! (minutes each) for days. The run stops after a few files in a row ran
//! out of tries, or after a stretch in which no byte went out or was
//! confirmed on any file (a PATCH streaming for an hour counts as alive);
//! the state is kept, so the same command continues later.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Files in a row given up before the run stops.
const FILES_IN_A_ROW: u32 = 3;
/// No byte accepted on any file for this long stops the run.
const QUIET: Duration = Duration::from_secs(15 * 60);

pub struct Stall {
    given_up_in_a_row: AtomicU32,
    last_progress: Mutex<Instant>,
}

impl Stall {
    pub fn new() -> Stall {
        Stall {
            given_up_in_a_row: AtomicU32::new(0),
            last_progress: Mutex::new(Instant::now()),
        }
    }

    /// Bytes went out, the gateway confirmed some, or a file is complete.
    pub fn progressed(&self) {
        if let Ok(mut last) = self.last_progress.lock() {
            *last = Instant::now();
        }
    }

    /// A file is complete: the line works.
    pub fn file_sent(&self) {
        self.given_up_in_a_row.store(0, Ordering::SeqCst);
        self.progressed();
    }

    /// A file ran out of tries; why the whole run should stop, if it should.
    pub fn file_given_up(&self, why: &str) -> Option<String> {
        let in_a_row = self.given_up_in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
        (in_a_row >= FILES_IN_A_ROW).then(|| {
            format!(
                "stopped: {in_a_row} files in a row could not be sent ({why}). What was sent is \
                 safe; check the internet connection, then run the same command again to continue"
            )
        })
    }

    /// Why the whole run should stop, when nothing got through for too long.
    pub fn quiet_too_long(&self, why: &str) -> Option<String> {
        let quiet = self.last_progress.lock().ok()?.elapsed();
        (quiet >= QUIET).then(|| {
            format!(
                "stopped: nothing reached the gateway for {} minutes ({why}). What was sent is \
                 safe; check the internet connection, then run the same command again to continue",
                quiet.as_secs() / 60
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_files_in_a_row_stop_the_run_and_a_sent_one_resets() {
        let stall = Stall::new();
        assert!(stall.file_given_up("x").is_none());
        assert!(stall.file_given_up("x").is_none());
        stall.file_sent();
        assert!(stall.file_given_up("x").is_none());
        assert!(stall.file_given_up("x").is_none());
        let why = stall.file_given_up("cannot reach the gateway").unwrap();
        assert!(why.contains("3 files in a row") && why.contains("cannot reach"));
        assert!(stall.quiet_too_long("x").is_none());
        *stall.last_progress.lock().unwrap() = Instant::now() - QUIET;
        assert!(stall.quiet_too_long("x").unwrap().contains("15 minutes"));
    }
}
