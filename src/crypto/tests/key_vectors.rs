//! The generator of tests/vectors/keys-v1.json, test-only: the master key
//! file, case keys wrapped under master key versions, file keys wrapped
//! under a case key, and negative vectors (each with a stable `reason`)
//! that must not unwrap or parse. Deterministic (fixed keys, nonces derived
//! from vector names); the test below proves the committed file is exactly
//! what it writes. Regenerate with
//!
//! ```text
//! CASEGATE_WRITE_VECTORS=1 cargo test --lib crypto::key_vectors
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{aead, case_key, file_key, master};
use crate::hex::encode as hex;
use crate::ids::CaseId;

const CASE_A: &str = "case_000102030405060708090a0b0c0d0e0f";
const CASE_B: &str = "case_f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
const FILE_ID: &str = "file_101112131415161718191a1b1c1d1e1f";
const OTHER_FILE_ID: &str = "file_202122232425262728292a2b2c2d2e2f";
const KEY_ID: [u8; 16] = [0xa0; 16];

fn bytes32(first: u8) -> [u8; 32] {
    std::array::from_fn(|i| first.wrapping_add(i as u8))
}

fn master_key(version: u32) -> [u8; 32] {
    bytes32(0x40 * version as u8)
}

fn case_key_of(case_id: &str) -> [u8; 32] {
    bytes32(if case_id == CASE_A { 0x10 } else { 0x90 })
}

fn nonce(name: &str) -> [u8; 12] {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("casegate key vector nonce {name}").as_bytes(),
    );
    std::array::from_fn(|i| d.as_ref()[i])
}

fn case_id(text: &str) -> CaseId {
    // Fixed, well-formed constants above.
    CaseId::parse(text).unwrap()
}

/// The master key file with versions 1 and 2, as `keys rotate` writes it.
fn key_file() -> String {
    let mut text = String::from(
        "# casegate master key versions: <version> <base64url 32-byte key>. Keep secret; back up (escrow) separately from the database.\n",
    );
    for v in [1, 2] {
        text.push_str(&format!("{v} {}\n", URL_SAFE_NO_PAD.encode(master_key(v))));
    }
    text
}

fn wrapped_case_key(name: &str, case: &str, version: u32) -> (Vec<u8>, Vec<u8>) {
    let aad = master::version_aad(&case_key::wrap_aad(&case_id(case)), version);
    let wrapped =
        aead::seal_with_nonce(&master_key(version), nonce(name), &aad, &case_key_of(case));
    (aad, wrapped)
}

fn case_vector(name: &str, description: &str, case: &str, version: u32) -> Value {
    let (aad, wrapped) = wrapped_case_key(name, case, version);
    json!({
        "name": name, "kind": "case_key", "expect": "ok", "description": description,
        "case_id": case, "kek_version": version, "aad": hex(&aad), "nonce": hex(&nonce(name)),
        "wrapped": hex(&wrapped), "case_key": hex(&case_key_of(case)),
    })
}

fn case_fail(
    name: &str,
    reason: &str,
    description: &str,
    case: &str,
    version: u32,
    wrapped: &[u8],
) -> Value {
    json!({
        "name": name, "kind": "case_key", "expect": "fail", "reason": reason,
        "description": description, "case_id": case, "kek_version": version, "wrapped": hex(wrapped),
    })
}

/// File key `FILE_ID` (key id `KEY_ID`) wrapped under `under`'s case key
/// with the associated data of (`case`, `file`).
fn wrapped_file_key(name: &str, under: &str, case: &str, file: &str) -> (Vec<u8>, Vec<u8>) {
    let aad = file_key::wrap_aad(case, file, &KEY_ID);
    let wrapped = aead::seal_with_nonce(&case_key_of(under), nonce(name), &aad, &bytes32(0x00));
    (aad, wrapped)
}

fn file_vector(
    name: &str,
    reason: Option<&str>,
    description: &str,
    wrapped: &[u8],
    file: &str,
    key_id: [u8; 16],
) -> Value {
    let mut v = json!({
        "name": name, "kind": "file_key", "expect": if reason.is_some() { "fail" } else { "ok" },
        "description": description, "case_id": CASE_A, "case_key": hex(&case_key_of(CASE_A)),
        "file_id": file, "key_id": hex(&key_id), "wrapped": hex(wrapped),
    });
    if let Some(reason) = reason {
        v["reason"] = json!(reason);
    }
    v
}

fn case_key_vectors() -> Vec<Value> {
    let (_, v1) = wrapped_case_key("case-key-v1", CASE_A, 1);
    let (_, v2) = wrapped_case_key("case-key-v2", CASE_A, 2);
    let mut tag = v1.clone();
    let last = tag.len() - 1;
    tag[last] ^= 0x01;
    vec![
        case_vector(
            "case-key-v1",
            "case A's key wrapped under master key version 1",
            CASE_A,
            1,
        ),
        case_vector(
            "case-key-v2",
            "the same case key rewrapped under version 2 (rotation)",
            CASE_A,
            2,
        ),
        case_vector("case-key-b", "case B's key under version 1", CASE_B, 1),
        case_fail(
            "case-key-other-case",
            "case_id_mismatch",
            "case A's wrapped key presented as case B's",
            CASE_B,
            1,
            &v1,
        ),
        case_fail(
            "case-key-relabelled-version",
            "kek_version_mismatch",
            "a version 2 wrap labelled version 1",
            CASE_A,
            1,
            &v2,
        ),
        case_fail(
            "case-key-unknown-version",
            "unknown_kek_version",
            "a version the key file does not hold",
            CASE_A,
            3,
            &v1,
        ),
        case_fail(
            "case-key-tampered-tag",
            "tampered_tag",
            "bit flipped in the tag",
            CASE_A,
            1,
            &tag,
        ),
        case_fail(
            "case-key-truncated",
            "truncated",
            "last byte dropped",
            CASE_A,
            1,
            &v1[..v1.len() - 1],
        ),
    ]
}

fn file_key_vectors() -> Vec<Value> {
    let (aad, ok) = wrapped_file_key("file-key", CASE_A, CASE_A, FILE_ID);
    let mut positive = file_vector(
        "file-key",
        None,
        "a file key wrapped under case A's key",
        &ok,
        FILE_ID,
        KEY_ID,
    );
    positive["aad"] = json!(hex(&aad));
    positive["nonce"] = json!(hex(&nonce("file-key")));
    positive["file_key"] = json!(hex(&bytes32(0x00)));
    let (_, under_b) = wrapped_file_key("file-key-under-b", CASE_B, CASE_A, FILE_ID);
    let mut flipped = ok.clone();
    flipped[12] ^= 0x01;
    vec![
        positive,
        file_vector(
            "file-key-other-file",
            Some("file_id_mismatch"),
            "presented as another file's key",
            &ok,
            OTHER_FILE_ID,
            KEY_ID,
        ),
        file_vector(
            "file-key-other-key-id",
            Some("key_id_mismatch"),
            "presented with another key id",
            &ok,
            FILE_ID,
            [0xb0; 16],
        ),
        file_vector(
            "file-key-wrong-case-key",
            Some("wrong_case_key"),
            "wrapped under case B's key, opened with case A's",
            &under_b,
            FILE_ID,
            KEY_ID,
        ),
        file_vector(
            "file-key-tampered-ciphertext",
            Some("tampered_ciphertext"),
            "bit flipped in the wrapped key",
            &flipped,
            FILE_ID,
            KEY_ID,
        ),
    ]
}

fn key_file_vectors() -> Vec<Value> {
    let b64 = URL_SAFE_NO_PAD.encode(master_key(1));
    let ok = |name: &str, text: &str| json!({"name": name, "kind": "key_file", "expect": "ok", "text": text, "versions": [1, 2]});
    let fail = |name: &str, reason: &str, text: String| json!({"name": name, "kind": "key_file", "expect": "fail", "reason": reason, "text": text});
    let env_form = format!("1 {b64};2 {}", URL_SAFE_NO_PAD.encode(master_key(2)));
    vec![
        ok("key-file", &key_file()),
        ok("key-file-env-form", &env_form),
        fail("key-file-empty", "no_key", "# comments only\n".into()),
        fail("key-file-no-key", "bad_syntax", "1\n".into()),
        fail("key-file-version-zero", "bad_version", format!("0 {b64}\n")),
        fail(
            "key-file-not-base64url",
            "key_not_base64url",
            format!("1 +{}\n", &b64[1..]),
        ),
        fail(
            "key-file-short-key",
            "key_not_32_bytes",
            format!("1 {}\n", &b64[..40]),
        ),
        fail(
            "key-file-duplicate-version",
            "duplicate_version",
            format!("1 {b64}\n1 {b64}\n"),
        ),
    ]
}

/// The vector file's text (pretty JSON with a trailing newline).
fn generate_json() -> String {
    let mut vectors = case_key_vectors();
    vectors.extend(file_key_vectors());
    vectors.extend(key_file_vectors());
    let doc = json!({
        "format": "casegate key hierarchy v1",
        "spec": "docs/format.md",
        "notes": "hex strings; the case and file key vectors use master_key_file; nonces were chosen for these vectors only (writers draw them at random)",
        "master_key_file": key_file(),
        "vectors": vectors,
    });
    crate::crypto::committed::pretty(&doc)
}

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/keys-v1.json");

#[test]
fn vectors_file_is_what_the_generator_writes() {
    crate::crypto::committed::assert_matches(COMMITTED, &generate_json(), "crypto::key_vectors");
}

#[test]
fn the_implementation_unwraps_the_vectors_to_their_keys() {
    let keys = master::LocalMasterKeys::parse(&key_file()).unwrap();
    assert_eq!(*keys.serialize(), key_file(), "the key file is canonical");
    for case in [CASE_A, CASE_B] {
        let (_, wrapped) = wrapped_case_key("case-key-v1", case, 1);
        let wrapped = super::WrappedKey {
            kek_version: 1,
            bytes: wrapped,
        };
        let key = case_key::CaseKey::unwrap(&keys, &case_id(case), &wrapped).unwrap();
        assert_eq!(key.secret(), &case_key_of(case));
    }
    let case_key = case_key::CaseKey::unwrap(
        &keys,
        &case_id(CASE_A),
        &super::WrappedKey {
            kek_version: 2,
            bytes: wrapped_case_key("v2", CASE_A, 2).1,
        },
    )
    .unwrap();
    let (_, wrapped) = wrapped_file_key("file-key", CASE_A, CASE_A, FILE_ID);
    let file = crate::ids::FileId::parse(FILE_ID).unwrap();
    let key =
        file_key::FileKey::unwrap(&case_key, &case_id(CASE_A), &file, KEY_ID, &wrapped).unwrap();
    assert_eq!(key.secret(), &bytes32(0x00));
}
