//! The download `Range` header (`casegate::http::range::parse`, then
//! `RangeSpec::resolve` once the length is known). Input: 8
//! bytes of representation length (little endian), then the header value.
//! Each input is tried with that length, with it modulo 4097 (small files)
//! and with 0 (an empty file).
//!
//! Invariants: a served range is non-empty and lies within the file, and it
//! is the one RFC 9110 §14.1.2 gives for `bytes=a-b`, `bytes=a-` and
//! `bytes=-n` (a last-byte position past the end means "to the end", also
//! when it does not fit in 64 bits).
#![no_main]

use std::ops::Range;

use casegate::http::range::{Unsatisfiable, parse};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

/// The single-range subset of RFC 9110 that casegate serves, in u128 so
/// that no position can overflow.
fn reference(text: Option<&str>, len: u64) -> Option<Range<u64>> {
    let spec = text?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u128> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Past u64 saturates: a last-byte-pos beyond any length means "to
        // the end", a first-byte-pos beyond it is past the end.
        Some(s.parse::<u128>().map_or(u128::from(u64::MAX), |v| v.min(u128::from(u64::MAX))))
    };
    let len = u128::from(len);
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n = num(n)?;
            if n == 0 {
                return None;
            }
            (len.saturating_sub(n), len)
        }
        (first, "") => (num(first)?, len),
        (first, last) => {
            let (first, last) = (num(first)?, num(last)?);
            if last < first {
                return None;
            }
            (first, (last + 1).min(len))
        }
    };
    if start >= len || start >= end {
        return None;
    }
    Some(u64::try_from(start).ok()?..u64::try_from(end).ok()?)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len_bytes, value) = data.split_at(8);
    let mut raw = [0u8; 8];
    raw.copy_from_slice(len_bytes);
    let len = u64::from_le_bytes(raw);
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, value.clone());
    for len in [len, len % 4097, 0] {
        let got = parse(&headers).and_then(|spec| spec.map(|s| s.resolve(len)).transpose());
        if let Ok(Some(range)) = &got {
            assert!(range.start < range.end, "{value:?} len {len}: {range:?}");
            assert!(range.end <= len, "{value:?} len {len}: {range:?}");
        }
        let want = reference(value.to_str().ok(), len)
            .map(Some)
            .ok_or(Unsatisfiable);
        assert_eq!(got, want, "{value:?} len {len}");
    }
    assert_eq!(parse(&HeaderMap::new()), Ok(None));
});
