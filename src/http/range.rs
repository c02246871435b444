//! A single HTTP byte range (`Range: bytes=a-b`, `a-`, `-n`); several
//! ranges, other units or a range past the end are not satisfiable.

use std::ops::Range;

use axum::http::{HeaderMap, header};

/// The Range header cannot be served (answered 416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// `Ok(None)`: no Range header (the whole representation).
pub fn parse(headers: &HeaderMap, len: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
    parse_inner(headers, len).map_err(|()| Unsatisfiable)
}

fn parse_inner(headers: &HeaderMap, len: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let spec = value.to_str().map_err(|_| ())?.trim();
    let spec = spec.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |s: &str| -> Result<u64, ()> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().map_err(|_| ()))
            .ok_or(())?
    };
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n = num(n)?;
            if n == 0 {
                return Err(());
            }
            len.saturating_sub(n)..len
        }
        (start, "") => num(start)?..len,
        (start, end) => {
            let (s, e) = (num(start)?, num(end)?);
            if e < s {
                return Err(());
            }
            s..e.saturating_add(1).min(len)
        }
    };
    if range.start >= len || range.is_empty() {
        return Err(());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Found by fuzz/range_header: e + 1 overflowed (panic in debug, 416 in release).
        assert_eq!(
            parse(&h("bytes=0-18446744073709551615"), 10),
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
        ] {
            assert_eq!(parse(&h(bad), 10), Err(Unsatisfiable), "{bad}");
        }
    }
}
