//! Failed-request limiter. Every denied request counts against its address
//! ([`AddressKey`]); after `limit` denials within a window of a minute the
//! address gets 429 for the rest of that window, before any database work.
//! So the audit log holds, per address and window, at most `limit` denials
//! one by one, one entry when limiting starts, and one summary with the
//! number of requests refused when the window ends — never one entry per
//! refused request, however fast they come. A window also counts the
//! unknown or malformed bearer tokens its address presented
//! ([`FailureLimiter::unknown_token`]), so the summary writer can raise one
//! token-guessing alert per address and window.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses have a window of
//! their own. While the table is full, failures from further addresses share
//! one overflow window, so a scan from very many addresses is limited (and
//! summarised) as one; their requests that do not fail are unaffected.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Bound on addresses with a window of their own.
pub const MAX_TRACKED: usize = 100_000;

/// Which requests and connections count as one client address for the
/// per-address limits: an IPv4 address as it is (also when it arrives
/// IPv4-mapped on a dual-stack listener); an IPv6 address by its /64 prefix,
/// since one subscriber routinely holds a whole /64 and could otherwise
/// rotate through 2^64 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => AddressKey(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
            },
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
    refused: u64,
    /// Unknown or malformed bearer tokens among the failures.
    unknown_tokens: u32,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            failures: 0,
            refused: 0,
            unknown_tokens: 0,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= WINDOW
    }
}

/// Whose window a summary or a start of limiting is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Address(AddressKey),
    /// The shared window of addresses that found the table full.
    Overflow,
}

/// A limiting window that ended having refused requests or seen unknown
/// tokens: its aggregate audit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub subject: Subject,
    pub refused: u64,
    /// Unknown or malformed bearer tokens seen (looked up) in the window.
    pub unknown_tokens: u32,
}

/// What to do with a denied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: audit it on its own. `started` is set on the
    /// denial that reaches the limit (audit the start of limiting too).
    Record { started: Option<Subject> },
    /// Over the limit: answer 429 and write nothing; it is counted in the
    /// window's summary.
    Refuse,
}

#[derive(Debug, Default)]
struct Table {
    windows: HashMap<AddressKey, Window>,
    overflow: Option<Window>,
    /// Summaries of windows that ended, waiting to be audited.
    ended: Vec<Summary>,
}

impl Table {
    fn close(&mut self, subject: Subject, window: Window) {
        if window.refused > 0 || window.unknown_tokens > 0 {
            self.ended.push(Summary {
                subject,
                refused: window.refused,
                unknown_tokens: window.unknown_tokens,
            });
        }
    }

    /// Removes `key`'s window if it is over.
    fn expire(&mut self, key: AddressKey, now: Instant) {
        if self.windows.get(&key).is_some_and(|w| w.expired(now))
            && let Some(w) = self.windows.remove(&key)
        {
            self.close(Subject::Address(key), w);
        }
    }

    /// Removes the overflow window if it is over.
    fn expire_overflow(&mut self, now: Instant) {
        if self.overflow.as_ref().is_some_and(|w| w.expired(now))
            && let Some(w) = self.overflow.take()
        {
            self.close(Subject::Overflow, w);
        }
    }
}

#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    table: Mutex<Table>,
}

impl FailureLimiter {
    pub fn new(limit: u32) -> FailureLimiter {
        FailureLimiter {
            limit,
            table: Mutex::new(Table::default()),
        }
    }

    fn with_table<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut guard = match self.table.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Is `key` limited right now? A limited request is counted as refused.
    pub fn is_limited(&self, key: AddressKey) -> bool {
        self.is_limited_at(key, Instant::now())
    }

    fn is_limited_at(&self, key: AddressKey, now: Instant) -> bool {
        let limit = self.limit;
        self.with_table(|t| {
            t.expire(key, now);
            match t.windows.get_mut(&key) {
                Some(w) if w.failures >= limit => {
                    w.refused += 1;
                    true
                }
                _ => false,
            }
        })
    }

    /// Counts a denied request from `key` and says whether to record it.
    pub fn failure(&self, key: AddressKey) -> Verdict {
        self.count_at(key, Instant::now(), false)
    }

    /// Counts a denial that has been answered and recorded already (a
    /// handler's own refusal); returns the subject if limiting starts now.
    pub fn recorded_failure(&self, key: AddressKey) -> Option<Subject> {
        match self.count_at(key, Instant::now(), true) {
            Verdict::Record { started } => started,
            Verdict::Refuse => None,
        }
    }

    /// Notes that a failure of `key` (counted already) presented an unknown
    /// or malformed bearer token: a guess, in the window its failures count in.
    pub fn unknown_token(&self, key: AddressKey) {
        self.with_table(|t| {
            let window = match t.windows.get_mut(&key) {
                Some(w) => Some(w),
                None => t.overflow.as_mut(),
            };
            if let Some(w) = window {
                w.unknown_tokens = w.unknown_tokens.saturating_add(1);
            }
        });
    }

    #[cfg(test)]
    fn failure_at(&self, key: AddressKey, now: Instant) -> Verdict {
        self.count_at(key, now, false)
    }

    fn count_at(&self, key: AddressKey, now: Instant, recorded: bool) -> Verdict {
        let limit = self.limit;
        self.with_table(|t| {
            t.expire(key, now);
            let (subject, window) = if t.windows.contains_key(&key) || t.windows.len() < MAX_TRACKED
            {
                let w = t.windows.entry(key).or_insert_with(|| Window::new(now));
                (Subject::Address(key), w)
            } else {
                t.expire_overflow(now);
                (
                    Subject::Overflow,
                    t.overflow.get_or_insert_with(|| Window::new(now)),
                )
            };
            if window.failures >= limit {
                // Only what is refused unrecorded goes into the summary.
                if !recorded {
                    window.refused += 1;
                }
                return Verdict::Refuse;
            }
            window.failures += 1;
            Verdict::Record {
                started: (window.failures == limit).then_some(subject),
            }
        })
    }

    /// Ends the windows that are over and returns every summary waiting to
    /// be audited (run periodically, so a window ends on time even if its
    /// address never returns, and the table sheds old addresses).
    pub fn sweep(&self) -> Vec<Summary> {
        self.sweep_at(Instant::now())
    }

    fn sweep_at(&self, now: Instant) -> Vec<Summary> {
        self.with_table(|t| {
            let expired: Vec<AddressKey> = t
                .windows
                .iter()
                .filter(|(_, w)| w.expired(now))
                .map(|(k, _)| *k)
                .collect();
            for key in expired {
                t.expire(key, now);
            }
            t.expire_overflow(now);
            std::mem::take(&mut t.ended)
        })
    }

    /// Ends every window now (shutdown) and returns all summaries.
    pub fn drain(&self) -> Vec<Summary> {
        self.with_table(|t| {
            let windows: Vec<(AddressKey, Window)> = t.windows.drain().collect();
            for (key, w) in windows {
                t.close(Subject::Address(key), w);
            }
            if let Some(w) = t.overflow.take() {
                t.close(Subject::Overflow, w);
            }
            std::mem::take(&mut t.ended)
        })
    }

    /// Puts back summaries that could not be audited, to try again later.
    /// Bounded like the table: while the audit log stays unwritable, the
    /// counts beyond that are dropped (and the loss logged).
    pub fn requeue(&self, summaries: Vec<Summary>) {
        self.with_table(|t| {
            let room = (MAX_TRACKED + 1).saturating_sub(t.ended.len());
            let lost = summaries.len().saturating_sub(room);
            if lost > 0 {
                tracing::error!(
                    lost,
                    "rate-limiting summaries dropped: the audit log stays unwritable"
                );
            }
            t.ended.extend(summaries.into_iter().take(room));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::from(s.parse::<IpAddr>().unwrap())
    }

    const RECORD: Verdict = Verdict::Record { started: None };

    #[test]
    fn limits_after_threshold() {
        let l = FailureLimiter::new(3);
        let (a, b) = (key("192.0.2.1"), key("192.0.2.2"));
        let t0 = Instant::now();
        assert_eq!(l.failure_at(a, t0), RECORD);
        assert_eq!(l.failure_at(a, t0), RECORD);
        assert!(!l.is_limited_at(a, t0));
        assert_eq!(
            l.failure_at(a, t0),
            Verdict::Record {
                started: Some(Subject::Address(a))
            }
        );
        assert!(l.is_limited_at(a, t0));
        assert!(!l.is_limited_at(b, t0));
        // A denial racing past the check is refused, not recorded; one a
        // handler recorded already is not in the summary's count.
        assert_eq!(l.failure_at(a, t0), Verdict::Refuse);
        assert_eq!(l.recorded_failure(a), None);
        assert!(l.sweep_at(t0 + Duration::from_secs(59)).is_empty());
        let later = t0 + WINDOW;
        assert_eq!(
            l.sweep_at(later),
            vec![Summary {
                subject: Subject::Address(a),
                refused: 2,
                unknown_tokens: 0,
            }]
        );
        assert!(!l.is_limited_at(a, later), "a new window starts");
        assert!(l.sweep_at(later).is_empty(), "summarised once");
    }

    #[test]
    fn a_window_ended_by_its_address_is_still_summarised() {
        let l = FailureLimiter::new(1);
        let a = key("192.0.2.1");
        let t0 = Instant::now();
        l.failure_at(a, t0);
        assert!(l.is_limited_at(a, t0));
        let started = Verdict::Record {
            started: Some(Subject::Address(a)),
        };
        assert_eq!(l.failure_at(a, t0 + WINDOW), started, "a new window");
        assert_eq!(l.sweep_at(t0 + WINDOW).len(), 1, "the old one's summary");
        assert!(l.drain().is_empty(), "the new window refused nothing yet");
    }

    /// Unknown tokens are counted in their address's window and reported
    /// when it ends, also when nothing was refused; a window without either
    /// leaves no summary.
    #[test]
    fn unknown_tokens_are_summarised_per_window() {
        let l = FailureLimiter::new(10);
        let (a, b) = (key("192.0.2.1"), key("192.0.2.2"));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.failure_at(a, t0);
            l.unknown_token(a);
        }
        l.failure_at(b, t0);
        l.unknown_token(key("192.0.2.3")); // no window: nothing to count in
        assert_eq!(
            l.sweep_at(t0 + WINDOW),
            vec![Summary {
                subject: Subject::Address(a),
                refused: 0,
                unknown_tokens: 3,
            }]
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("::ffff:192.0.2.7"), key("::ffff:192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("192.0.2.7").to_string(), "192.0.2.7");
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_shared() {
        let l = FailureLimiter::new(2);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            l.failure_at(AddressKey(IpAddr::from(i.to_be_bytes())), t0);
        }
        let (x, y) = (key("203.0.113.1"), key("203.0.113.2"));
        assert_eq!(l.failure_at(x, t0), RECORD);
        assert_eq!(
            l.failure_at(y, t0),
            Verdict::Record {
                started: Some(Subject::Overflow)
            }
        );
        assert_eq!(l.failure_at(x, t0), Verdict::Refuse);
        assert!(
            !l.is_limited_at(x, t0),
            "untracked requests that succeed pass"
        );
        assert_eq!(l.with_table(|t| t.windows.len()), MAX_TRACKED);
        let summaries = l.sweep_at(t0 + WINDOW);
        assert!(summaries.contains(&Summary {
            subject: Subject::Overflow,
            refused: 1,
            unknown_tokens: 0,
        }));
        assert_eq!(l.with_table(|t| t.windows.len()), 0, "swept");
    }
}
