//! Object format v1 against the committed vectors in tests/vectors/: every
//! positive vector decrypts to its plaintext; every negative vector fails,
//! with the error its `reason` names.
//! Plus a robustness pass: mutated objects never panic the decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casegate::crypto::FileKey;
use casegate::crypto::format::{FormatError, Layout, ObjectHeader, decrypt_object};
use serde_json::Value;

fn unhex(s: &str) -> Vec<u8> {
    casegate::hex::decode(s).unwrap()
}

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/format-v1.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn key_of(v: &Value) -> FileKey {
    FileKey::from_parts(
        unhex(v["key_id"].as_str().unwrap()).try_into().unwrap(),
        unhex(v["file_key"].as_str().unwrap()).try_into().unwrap(),
    )
}

fn decrypt(v: &Value) -> Result<Vec<u8>, FormatError> {
    decrypt_object(
        &key_of(v),
        v["case_id"].as_str().unwrap(),
        v["file_id"].as_str().unwrap(),
        &unhex(v["object"].as_str().unwrap()),
    )
}

#[test]
fn positive_vectors_decrypt() {
    // Re-encryption from the listed nonces, and that the file is exactly
    // what the generator writes, are checked inside the crate
    // (crypto::format::vectors): choosing nonces is not public API.
    let all = vectors();
    let ok: Vec<&Value> = all.iter().filter(|v| v["expect"] == "ok").collect();
    assert!(ok.len() >= 5);
    for v in ok {
        let name = v["name"].as_str().unwrap();
        let plaintext = unhex(v["plaintext"].as_str().unwrap());
        assert_eq!(decrypt(v).unwrap(), plaintext, "{name}");
        let chunk_size = v["chunk_size"].as_u64().unwrap() as u32;
        let object = unhex(v["object"].as_str().unwrap());
        assert_eq!(
            ObjectHeader::decode(&object).unwrap().chunk_size,
            chunk_size,
            "{name}"
        );
        assert_eq!(
            v["nonces"].as_array().unwrap().len() as u64,
            Layout::new(chunk_size).chunk_count(plaintext.len() as u64),
            "{name}"
        );
    }
}

/// The error a decoder reports for each negative vector's `reason`.
fn expected_error(reason: &str) -> fn(&FormatError) -> bool {
    match reason {
        // A changed chunk size makes the length impossible for it.
        "no_chunks" | "extended" | "tampered_chunk_size" => |e| *e == FormatError::Length,
        "tampered_magic" => |e| *e == FormatError::BadMagic,
        "tampered_reserved" => |e| *e == FormatError::BadHeader,
        "tampered_key_id" => |e| *e == FormatError::WrongKey,
        "truncated_at_chunk_boundary"
        | "truncated_last_chunk"
        | "reordered_chunks"
        | "chunk_from_other_file"
        | "object_of_other_file"
        | "tampered_nonce"
        | "tampered_ciphertext"
        | "tampered_tag"
        | "wrong_file_key" => |e| matches!(e, FormatError::Chunk(_)),
        other => panic!("negative vector with unknown reason {other:?}"),
    }
}

#[test]
fn negative_vectors_fail_for_their_reason() {
    let all = vectors();
    let fail: Vec<&Value> = all.iter().filter(|v| v["expect"] == "fail").collect();
    let names: Vec<&str> = fail.iter().map(|v| v["name"].as_str().unwrap()).collect();
    for required in [
        "truncated-at-chunk-boundary",
        "chunks-swapped",
        "chunk-from-other-file",
        "flip-header-magic",
        "flip-nonce",
        "flip-body",
        "flip-tag",
        "wrong-key",
    ] {
        assert!(
            names.contains(&required),
            "missing negative vector {required}"
        );
    }
    for v in fail {
        let reason = v["reason"]
            .as_str()
            .expect("every negative vector has a reason");
        let err = decrypt(v).expect_err(v["name"].as_str().unwrap());
        assert!(
            expected_error(reason)(&err),
            "{}: {reason} but the decoder said {err:?}",
            v["name"]
        );
    }
}

/// Deterministic xorshift, so failures reproduce.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_objects_never_panic_and_never_decrypt() {
    let all = vectors();
    let base = all.iter().find(|v| v["name"] == "three-chunks").unwrap();
    let object = unhex(base["object"].as_str().unwrap());
    let key = key_of(base);
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..20_000 {
        let mut m = object.clone();
        match xorshift(&mut rng) % 4 {
            0 => {
                let i = (xorshift(&mut rng) as usize) % m.len();
                m[i] ^= 1 << (xorshift(&mut rng) % 8);
            }
            1 => m.truncate((xorshift(&mut rng) as usize) % m.len()),
            2 => {
                let extra = (xorshift(&mut rng) % 64) as usize;
                m.extend((0..extra).map(|_| xorshift(&mut rng) as u8));
            }
            _ => {
                let len = (xorshift(&mut rng) % 200) as usize;
                m = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
            }
        }
        if m == object {
            continue;
        }
        assert!(
            decrypt_object(
                &key,
                base["case_id"].as_str().unwrap(),
                base["file_id"].as_str().unwrap(),
                &m
            )
            .is_err()
        );
    }
}
