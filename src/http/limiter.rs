//! Failed-authentication limiter: after too many failures from one address
//! within a minute, that address gets 429 until the minute is over. The
//! audit log gets one entry when limiting starts and one summary when it
//! ends, not one per refused request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Bound on tracked addresses, so a wide scan cannot grow memory without limit.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
    refused: u64,
}

#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

/// What the caller should audit, if anything.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitEvent {
    /// Limiting of this address started now, after this many failures.
    Started(u32),
    /// A past limiting period ended having refused this many requests.
    Ended(u64),
}

impl FailureLimiter {
    pub fn new(limit: u32) -> FailureLimiter {
        FailureLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn with_windows<R>(&self, f: impl FnOnce(&mut HashMap<IpAddr, Window>) -> R) -> R {
        let mut guard = match self.windows.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Is `ip` limited right now? A limited request is counted as refused.
    /// Also reports the end of an earlier limiting period.
    pub fn check(&self, ip: IpAddr) -> (bool, Option<LimitEvent>) {
        let now = Instant::now();
        self.with_windows(|windows| {
            let Some(w) = windows.get_mut(&ip) else {
                return (false, None);
            };
            if now.duration_since(w.started) >= WINDOW {
                let refused = w.refused;
                windows.remove(&ip);
                return (false, (refused > 0).then_some(LimitEvent::Ended(refused)));
            }
            if w.failures >= self.limit {
                w.refused += 1;
                return (true, None);
            }
            (false, None)
        })
    }

    /// Records a failed authentication.
    pub fn failure(&self, ip: IpAddr) -> Option<LimitEvent> {
        let now = Instant::now();
        self.with_windows(|windows| {
            if windows.len() >= MAX_TRACKED {
                windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            }
            let w = windows.entry(ip).or_insert(Window {
                started: now,
                failures: 0,
                refused: 0,
            });
            w.failures = w.failures.saturating_add(1);
            (w.failures == self.limit).then_some(LimitEvent::Started(w.failures))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_threshold() {
        let l = FailureLimiter::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(l.failure(ip), None);
        assert_eq!(l.failure(ip), None);
        assert!(!l.check(ip).0);
        assert_eq!(l.failure(ip), Some(LimitEvent::Started(3)));
        assert!(l.check(ip).0);
        assert!(!l.check(other).0);
    }
}
