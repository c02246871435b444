//! The byte range a download asks for, resolved once the length of the
//! representation is known.

use std::ops::Range;

/// A single byte range as asked for (RFC 9110 `bytes=`), before the length
/// of the representation is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `a-b` (inclusive; `b` may lie beyond the end).
    FromTo(u64, u64),
    /// `a-`
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// A Range that cannot be served (answered 416 with the length).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

impl RangeSpec {
    /// The bytes of a representation of `len` bytes this range covers; a
    /// range starting at or past the end is not satisfiable.
    pub fn resolve(self, len: u64) -> Result<Range<u64>, Unsatisfiable> {
        let range = match self {
            RangeSpec::Suffix(n) => len.saturating_sub(n)..len,
            RangeSpec::From(start) => start..len,
            RangeSpec::FromTo(start, last) => start..last.saturating_add(1).min(len),
        };
        if range.start >= len || range.is_empty() {
            return Err(Unsatisfiable);
        }
        Ok(range)
    }
}
