//! Time: an injected [`Clock`], so expiry logic is tested without
//! sleeping, and [`Timestamp`], the one type every stored or shown instant
//! has.

mod timestamp;

pub use timestamp::{InvalidTimestamp, Timestamp};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// A source of "now" in UTC.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Now, as the second-precision instant that is stored and compared.
    fn timestamp(&self) -> Timestamp {
        Timestamp::from_datetime(self.now())
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The system clock shifted by an adjustable offset: tests move time forward
/// without sleeping.
#[derive(Debug, Default, Clone)]
pub struct OffsetClock {
    offset_secs: Arc<AtomicI64>,
}

impl OffsetClock {
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_clock_moves() {
        let c = OffsetClock::default();
        let before = c.now();
        c.advance(3600);
        assert!(c.now() - before >= time::Duration::seconds(3600));
    }
}
