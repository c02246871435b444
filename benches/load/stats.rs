//! What the load test measures: per operation kind a latency histogram
//! (bounded memory, about 3 % resolution, exact maximum), counts, bytes and
//! every distinct error with its count; and the table printed at the end.
//! Each client records into its own `Recorder`; they are merged once the
//! run is over, so recording never takes a lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The kinds of request the clients make, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    TusCreate,
    TusPatch,
    PatientManifest,
    CaseManifest,
    GrantIssue,
    GrantInfo,
    PlainWhole,
    PlainRange,
    SealedWhole,
    SealedRange,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::TusCreate,
        Op::TusPatch,
        Op::PatientManifest,
        Op::CaseManifest,
        Op::GrantIssue,
        Op::GrantInfo,
        Op::PlainWhole,
        Op::PlainRange,
        Op::SealedWhole,
        Op::SealedRange,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::TusCreate => "tus POST /tus/",
            Op::TusPatch => "tus PATCH",
            Op::PatientManifest => "patient GET case",
            Op::CaseManifest => "coord GET cases/{id}",
            Op::GrantIssue => "coord POST grants",
            Op::GrantInfo => "centre GET grant",
            Op::PlainWhole => "plaintext whole",
            Op::PlainRange => "plaintext Range",
            Op::SealedWhole => "sealed whole",
            Op::SealedRange => "sealed Range",
        }
    }

    fn index(self) -> usize {
        Op::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }
}

/// Sub-buckets per power of two: 32 gives at most ~3 % relative error.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Microsecond values up to 2^40 µs (12 days) have their own bucket.
const BUCKETS: usize = 2 * SUB + (40 - SUB_BITS as usize) * SUB;

/// A log-linear histogram of microsecond latencies.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < (2 * SUB) as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // > SUB_BITS
        let sub = ((v >> (exp - SUB_BITS)) as usize) & (SUB - 1);
        (SUB + (exp - SUB_BITS) as usize * SUB + sub).min(BUCKETS - 1)
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 2 * SUB {
            return i as u64;
        }
        let exp = (i - SUB) / SUB + SUB_BITS as usize;
        let sub = ((i - SUB) % SUB) as u64;
        ((SUB as u64 + sub + 1) << (exp - SUB_BITS as usize)) - 1
    }

    fn record(&mut self, micros: u64) {
        self.counts[Histogram::bucket(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (upper edge of its bucket, never above the max).
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Histogram::upper(i).min(self.max);
            }
        }
        self.max
    }
}

/// One operation kind's numbers.
#[derive(Clone)]
struct Kind {
    latency: Histogram,
    errors: u64,
    bytes: u64,
}

/// Distinct error descriptions kept per client; beyond that they are
/// lumped together, so a storm of unique messages cannot grow memory.
const MAX_DISTINCT: usize = 64;

/// Live counters for the progress line, shared by all clients.
#[derive(Default)]
pub struct Progress {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// One client's record of what it did.
pub struct Recorder {
    kinds: Vec<Kind>,
    errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn new() -> Recorder {
        let kind = Kind {
            latency: Histogram::new(),
            errors: 0,
            bytes: 0,
        };
        Recorder {
            kinds: vec![kind; Op::ALL.len()],
            errors: BTreeMap::new(),
        }
    }

    /// A request that ended, successfully or not, after `took`, having
    /// moved `bytes` of body (sent or received).
    pub fn record(
        &mut self,
        progress: &Progress,
        op: Op,
        took: Duration,
        bytes: u64,
        outcome: Result<(), String>,
    ) {
        let kind = &mut self.kinds[op.index()];
        kind.latency
            .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        kind.bytes += bytes;
        progress.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = outcome {
            kind.errors += 1;
            progress.errors.fetch_add(1, Ordering::Relaxed);
            let key = format!("{}: {e}", op.name());
            let key = if self.errors.len() >= MAX_DISTINCT && !self.errors.contains_key(&key) {
                format!("{}: (further distinct errors)", op.name())
            } else {
                key
            };
            *self.errors.entry(key).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (a, b) in self.kinds.iter_mut().zip(&other.kinds) {
            a.latency.merge(&b.latency);
            a.errors += b.errors;
            a.bytes += b.bytes;
        }
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.kinds.iter().map(|k| k.errors).sum()
    }

    /// The table: one line per kind that occurred, then the total.
    pub fn print(&self, secs: f64) {
        println!(
            "{:<22} {:>8} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "operation", "count", "errors", "p50 ms", "p99 ms", "max ms", "req/s", "MiB/s"
        );
        let ms = |us: u64| us as f64 / 1000.0;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut total = Histogram::new();
        let (mut errors, mut bytes) = (0, 0);
        for op in Op::ALL {
            let k = &self.kinds[op.index()];
            if k.latency.total == 0 {
                continue;
            }
            total.merge(&k.latency);
            errors += k.errors;
            bytes += k.bytes;
            println!(
                "{:<22} {:>8} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1}",
                op.name(),
                k.latency.total,
                k.errors,
                ms(k.latency.quantile(0.50)),
                ms(k.latency.quantile(0.99)),
                ms(k.latency.max),
                k.latency.total as f64 / secs,
                mib(k.bytes) / secs,
            );
        }
        println!(
            "{:<22} {:>8} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1}",
            "all requests",
            total.total,
            errors,
            ms(total.quantile(0.50)),
            ms(total.quantile(0.99)),
            ms(total.max),
            total.total as f64 / secs,
            mib(bytes) / secs,
        );
        if self.errors.is_empty() {
            println!("errors: none");
        } else {
            println!("errors (every distinct one, with its count):");
            for (e, n) in &self.errors {
                println!("  {n:>7} × {e}");
            }
        }
    }
}
