//! Object format v1 against the committed vectors in tests/vectors/: every
//! positive vector decrypts to its plaintext and re-encrypts (with its
//! listed nonces) to exactly its object; every negative vector fails.
//! Plus a robustness pass: mutated objects never panic the decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casegate::crypto::FileKey;
use casegate::crypto::format::{ChunkCipher, FormatError, Layout, ObjectHeader, decrypt_object};
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
fn positive_vectors_decrypt_and_reencrypt_exactly() {
    let all = vectors();
    let ok: Vec<&Value> = all.iter().filter(|v| v["expect"] == "ok").collect();
    assert!(ok.len() >= 5);
    for v in ok {
        let name = v["name"].as_str().unwrap();
        let plaintext = unhex(v["plaintext"].as_str().unwrap());
        assert_eq!(decrypt(v).unwrap(), plaintext, "{name}");

        let key = key_of(v);
        let chunk_size = v["chunk_size"].as_u64().unwrap() as u32;
        let header = ObjectHeader {
            chunk_size,
            key_id: *key.id(),
        };
        let cipher = ChunkCipher::new(
            &key,
            header,
            v["case_id"].as_str().unwrap(),
            v["file_id"].as_str().unwrap(),
        )
        .unwrap();
        let nonces: Vec<[u8; 12]> = v["nonces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| unhex(n.as_str().unwrap()).try_into().unwrap())
            .collect();
        let layout = Layout::new(chunk_size);
        assert_eq!(
            nonces.len() as u64,
            layout.chunk_count(plaintext.len() as u64),
            "{name}"
        );
        let mut object = header.encode().to_vec();
        let chunks: Vec<&[u8]> = if plaintext.is_empty() {
            vec![&[]]
        } else {
            plaintext.chunks(chunk_size as usize).collect()
        };
        for (i, (chunk, nonce)) in chunks.iter().zip(&nonces).enumerate() {
            cipher.seal_with_nonce(*nonce, i as u64, i + 1 == chunks.len(), chunk, &mut object);
        }
        assert_eq!(
            object,
            unhex(v["object"].as_str().unwrap()),
            "{name}: re-encryption differs"
        );
    }
}

#[test]
fn negative_vectors_fail() {
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
        assert!(decrypt(v).is_err(), "{} must fail", v["name"]);
    }
}

#[test]
fn vectors_file_is_what_the_generator_writes() {
    // Same inputs, same nonces → same file; a silent format change would
    // show up here as well as in the vectors above.
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/format-v1.json"
    ))
    .unwrap();
    assert!(
        casegate::crypto::format::vectors::generate_json() == committed,
        "regenerate with: cargo run --example format_vectors > tests/vectors/format-v1.json"
    );
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
