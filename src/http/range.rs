//! A single HTTP byte range (`Range: bytes=a-b`, `a-`, `-n`); several
//! ranges, other units or a range past the end are not satisfiable.

use axum::http::{HeaderMap, header};

pub use crate::service::downloads::{RangeSpec, Unsatisfiable};

/// The `Range` header's single range. `Ok(None)`: no Range header (the
/// whole representation). Whether it fits the representation is decided
/// once its length is known ([`RangeSpec::resolve`]).
pub fn parse(headers: &HeaderMap) -> Result<Option<RangeSpec>, Unsatisfiable> {
    parse_inner(headers).map_err(|()| Unsatisfiable)
}

fn parse_inner(headers: &HeaderMap) -> Result<Option<RangeSpec>, ()> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let spec = value.to_str().map_err(|_| ())?.trim();
    let spec = spec.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    // Digits only; a value too large for u64 saturates (a last-byte-pos
    // beyond the end means "to the end", RFC 9110 §14.1.2), and every sum
    // in `resolve` is checked, so no client number can overflow.
    let num = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        Ok(s.parse().unwrap_or(u64::MAX))
    };
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n = num(n)?;
            if n == 0 {
                return Err(());
            }
            RangeSpec::Suffix(n)
        }
        (start, "") => RangeSpec::From(num(start)?),
        (start, end) => {
            let (s, e) = (num(start)?, num(end)?);
            if e < s {
                return Err(());
            }
            RangeSpec::FromTo(s, e)
        }
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;

    /// The range of a representation of `len` bytes the headers ask for.
    fn parse(headers: &HeaderMap, len: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
        super::parse(headers)?.map(|r| r.resolve(len)).transpose()
    }

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::RANGE, v.parse().unwrap());
        m
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(parse(&h("bytes=0-4"), 10), Ok(Some(0..5)));
        assert_eq!(parse(&h("bytes=5-"), 10), Ok(Some(5..10)));
        assert_eq!(parse(&h("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(parse(&h("bytes=8-100"), 10), Ok(Some(8..10)));
        assert_eq!(
            parse(&h("bytes=0-18446744073709551615"), 10),
            Ok(Some(0..10))
        );
        assert_eq!(
            parse(&h("bytes=3-99999999999999999999999"), 10),
            Ok(Some(3..10))
        );
        assert_eq!(
            parse(&h("bytes=-99999999999999999999"), 10),
            Ok(Some(0..10))
        );
        for bad in [
            "bytes=10-",
            "bytes=5-4",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=-0",
            "bytes=a-b",
            "bytes=-",
            "bytes= 1-2x",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse(&h(bad), 10), Err(Unsatisfiable), "{bad}");
        }
    }
}
