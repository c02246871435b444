//! The tus `Upload-Metadata` header (`casegate::upload::metadata`): the
//! key/value pair parser and the filename/category/filetype rules on top.
//!
//! Each header is parsed as a patient's, a centre's and a coordinator's.
//!
//! Invariants: parsed keys are non-empty visible ASCII; the pairs survive a
//! round trip through their own encoding; a parsed upload has a filename
//! that is trimmed, non-empty, at most 1 KiB and free of control
//! characters, one of the known categories (for a centre only
//! `second_opinion_report` or `other`), and a bounded filetype; only a
//! coordinator's names a case, a translated file or a language, and its
//! language has the shape of a BCP 47 tag.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casegate::ids::CentreId;
use casegate::service::Source;
use casegate::upload::metadata::{CATEGORIES, UploadMetadata, is_language_tag, parse_pairs};
use libfuzzer_sys::fuzz_target;

const MAX_HEADER_BYTES: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = parse_pairs(header);
    let uploaders = [
        Source::Patient,
        Source::Centre {
            centre_id: CentreId::generate(),
        },
        Source::Coordinator,
    ];
    for uploader in &uploaders {
        let Ok(meta) = UploadMetadata::parse(Some(header), uploader) else {
            continue;
        };
        assert!(pairs.is_ok(), "{header:?}");
        check_parsed(header, &meta, uploader);
    }
    let Ok(pairs) = pairs else {
        return;
    };
    assert!(header.len() <= MAX_HEADER_BYTES);
    for key in pairs.keys() {
        assert!(!key.is_empty(), "{header:?}");
        assert!(
            key.bytes().all(|b| b.is_ascii_graphic() && b != b','),
            "{key:?}"
        );
    }

    // Encode the pairs the way a tus client does and parse them again.
    let encoded = pairs
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k} {}", STANDARD.encode(v))
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    if encoded.len() <= MAX_HEADER_BYTES {
        match parse_pairs(&encoded) {
            Ok(again) => assert_eq!(again, pairs, "{encoded:?}"),
            Err(e) => panic!("re-encoded pairs refused ({e}): {encoded:?}"),
        }
    }
});

/// What holds for every header an uploader's parse accepts.
fn check_parsed(header: &str, meta: &UploadMetadata, uploader: &Source) {
    let pairs = parse_pairs(header).unwrap_or_default();
    let Some(raw) = pairs.get("filename").or_else(|| pairs.get("name")) else {
        panic!("parsed without filename or name: {header:?}")
    };
    // Stored with control-like format characters (bidi overrides, zero
    // width) neutralised.
    assert_eq!(meta.filename, casegate::text::neutralise(raw.trim()));
    assert!(!meta.filename.chars().any(casegate::text::hidden));
    assert!(!meta.filename.is_empty());
    assert!(meta.filename.len() <= 1024);
    assert!(
        !meta.filename.chars().any(char::is_control),
        "{:?}",
        meta.filename
    );
    assert!(
        CATEGORIES.contains(&meta.category.as_str()),
        "{:?}",
        meta.category
    );
    if let Some(filetype) = &meta.filetype {
        assert!(!filetype.is_empty() && filetype.len() <= 255);
        assert_eq!(filetype.as_str(), filetype.trim());
        assert!(!filetype.chars().any(char::is_control), "{filetype:?}");
    }
    if let Source::Centre { .. } = uploader {
        assert!(
            ["second_opinion_report", "other"].contains(&meta.category.as_str()),
            "{:?}",
            meta.category
        );
    }
    if *uploader != Source::Coordinator {
        assert!(meta.case_id.is_none() && meta.translation_of.is_none() && meta.language.is_none());
    }
    if let Some(language) = &meta.language {
        assert!(is_language_tag(language), "{language:?}");
    }
}
