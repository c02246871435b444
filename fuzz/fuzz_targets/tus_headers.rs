//! tus request headers as the handlers read them: `Tus-Resumable`,
//! `Upload-Offset` / `Upload-Length` (`casegate::http::tus`), `Content-Type`
//! and `Upload-Checksum` (`casegate::upload::checksum`). The input is one
//! header value, set under every one of those names.
//!
//! Invariants: the version check accepts exactly `1.0.0`; the offsets are
//! exactly the non-empty all-digit strings that fit a u64, with their value;
//! a parsed checksum verifies exactly the body whose digest it names.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casegate::http::tus::{TUS_VERSION, check_version, is_offset_stream, parse_u64};
use casegate::upload::checksum::ExpectedChecksum;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ring::digest;

/// RFC 9110 / tus: 1*DIGIT, no sign, no spaces, at most u64::MAX.
fn reference_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 20 {
        return None;
    }
    let value: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    u64::try_from(value).ok()
}

fn algorithm(name: &str) -> Option<&'static digest::Algorithm> {
    match name.to_ascii_lowercase().as_str() {
        "sha1" => Some(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        "sha256" => Some(&digest::SHA256),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for name in [
        "tus-resumable",
        "upload-offset",
        "upload-length",
        "content-type",
        "upload-checksum",
    ] {
        headers.insert(name, value.clone());
    }
    // A header that is present but not visible ASCII is refused, never
    // taken as absent.
    let text = value.to_str().ok();

    assert_eq!(check_version(&headers).is_ok(), text == Some(TUS_VERSION));

    for name in ["upload-offset", "upload-length"] {
        let got = parse_u64(&headers, name).map_err(|_| ());
        let want = match text {
            None => Err(()),
            Some(t) => reference_u64(t).map(Some).ok_or(()),
        };
        assert_eq!(got, want, "{name}: {text:?}");
    }

    if is_offset_stream(&headers) {
        let t = text.map(str::to_ascii_lowercase).unwrap_or_default();
        assert!(t.contains("application/offset+octet-stream"), "{t:?}");
    }

    // Upload-Checksum on an arbitrary header: if it parses, it must name a
    // supported algorithm and a digest of the right length, and verify a
    // body exactly when that body's digest is the one named.
    if let Some(t) = text {
        if let Ok(mut checksum) = ExpectedChecksum::parse(t) {
            let Some((name, encoded)) = t.trim().split_once(' ') else {
                panic!("parsed a checksum without a space: {t:?}");
            };
            let Some(alg) = algorithm(name) else {
                panic!("parsed an unsupported algorithm: {t:?}");
            };
            let Ok(expected) = STANDARD.decode(encoded.trim()) else {
                panic!("parsed a digest that is not base64: {t:?}");
            };
            assert_eq!(expected.len(), alg.output_len(), "{t:?}");
            checksum.update(data);
            let actual = digest::digest(alg, data);
            assert_eq!(checksum.matches(), actual.as_ref() == expected.as_slice());
        }
    }

    // The digest of this very input, sent as the checksum of this input,
    // verifies (the algorithm name in any case); one byte more does not.
    for (name, alg) in [
        ("sha1", &digest::SHA1_FOR_LEGACY_USE_ONLY),
        ("sha256", &digest::SHA256),
    ] {
        let encoded = STANDARD.encode(digest::digest(alg, data));
        for header in [
            format!("{name} {encoded}"),
            format!("{} {encoded}", name.to_ascii_uppercase()),
        ] {
            let Ok(mut good) = ExpectedChecksum::parse(&header) else {
                panic!("a well-formed checksum header was refused: {header:?}");
            };
            let split = data.len() / 2;
            good.update(&data[..split]);
            good.update(&data[split..]);
            assert!(good.matches(), "{header:?}");
            let Ok(mut longer) = ExpectedChecksum::parse(&header) else {
                unreachable!()
            };
            longer.update(data);
            longer.update(b"x");
            assert!(!longer.matches(), "{header:?}");
        }
    }
});
