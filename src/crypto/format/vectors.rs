//! Test vectors for object format v1 (tests/vectors/format-v1.json):
//! positive vectors with fixed keys and nonces, and negative vectors that
//! a decoder must reject. Deterministic: nonces derive from vector names, so
//! regenerating reproduces the committed file byte for byte.
//!
//! ```text
//! cargo run --example format_vectors > tests/vectors/format-v1.json
//! ```
// Fixed, valid inputs: a failure here is a bug in this generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::{CHUNK_OVERHEAD, ChunkCipher, HEADER_LEN, Layout, ObjectHeader};
use crate::crypto::FileKey;
use crate::hex::encode as hex;

const CASE_ID: &str = "case_000102030405060708090a0b0c0d0e0f";
const FILE_ID: &str = "file_101112131415161718191a1b1c1d1e1f";
const OTHER_FILE_ID: &str = "file_202122232425262728292a2b2c2d2e2f";

fn key() -> FileKey {
    FileKey::from_parts(
        std::array::from_fn(|i| 0xa0 + i as u8),
        std::array::from_fn(|i| i as u8),
    )
}

fn nonce(name: &str, index: u64) -> [u8; 12] {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("casegate vector nonce {name} {index}").as_bytes(),
    );
    let mut n = [0u8; 12];
    n.copy_from_slice(&d.as_ref()[..12]);
    n
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// Encrypts with chosen nonces; returns (object, nonces).
fn seal(name: &str, file_id: &str, chunk_size: u32, plain: &[u8]) -> (Vec<u8>, Vec<[u8; 12]>) {
    let key = key();
    let header = ObjectHeader {
        chunk_size,
        key_id: *key.id(),
    };
    // Cannot fail: the vectors' chunk sizes are fixed valid constants and
    // the key is the vectors' own; this generator runs only to write
    // tests/vectors, never on anyone's input.
    let cipher = ChunkCipher::new(&key, header, CASE_ID, file_id).unwrap();
    let layout = Layout::new(chunk_size);
    let count = layout.chunk_count(plain.len() as u64);
    let mut out = header.encode().to_vec();
    let mut nonces = Vec::new();
    for i in 0..count {
        let start = (i * u64::from(chunk_size)) as usize;
        let end = (start + chunk_size as usize).min(plain.len());
        let n = nonce(name, i);
        cipher.seal_with_nonce(n, i, i + 1 == count, &plain[start..end], &mut out);
        nonces.push(n);
    }
    (out, nonces)
}

fn ok_vector(name: &str, description: &str, chunk_size: u32, len: usize) -> Value {
    let plain = plaintext(len);
    let (object, nonces) = seal(name, FILE_ID, chunk_size, &plain);
    json!({
        "name": name, "description": description, "expect": "ok",
        "case_id": CASE_ID, "file_id": FILE_ID, "file_key": hex(key().secret()), "key_id": hex(key().id()),
        "chunk_size": chunk_size, "plaintext": hex(&plain),
        "nonces": nonces.iter().map(|n| hex(n)).collect::<Vec<_>>(), "object": hex(&object),
    })
}

fn fail_vector(name: &str, description: &str, object: &[u8], file_key: Option<[u8; 32]>) -> Value {
    json!({
        "name": name, "description": description, "expect": "fail",
        "case_id": CASE_ID, "file_id": FILE_ID,
        "file_key": hex(&file_key.unwrap_or(*key().secret())), "key_id": hex(key().id()),
        "object": hex(object),
    })
}

/// The vector file's text (pretty JSON with a trailing newline).
pub fn generate_json() -> String {
    let cs = 16u32;
    let sealed = cs as usize + CHUNK_OVERHEAD;
    let mut vectors = vec![
        ok_vector("empty", "empty file: one empty last chunk", cs, 0),
        ok_vector("one-byte", "one byte", cs, 1),
        ok_vector(
            "one-full-chunk",
            "exactly one chunk: it is the last chunk, no empty chunk follows",
            cs,
            16,
        ),
        ok_vector(
            "three-chunks",
            "two full chunks and a partial last chunk",
            cs,
            40,
        ),
        ok_vector(
            "two-full-chunks",
            "a length that is a multiple of the chunk size",
            cs,
            32,
        ),
        ok_vector(
            "default-chunk-size",
            "the 64 KiB chunk size writers use: one full chunk and a partial one",
            65536,
            65536 + 1000,
        ),
    ];
    let (base, _) = seal("three-chunks", FILE_ID, cs, &plaintext(40));
    let chunk = |i: usize| HEADER_LEN + i * sealed;

    let mut v = base[..chunk(2)].to_vec();
    vectors.push(fail_vector(
        "truncated-at-chunk-boundary",
        "three-chunks cut after chunk 1: chunk 1 was sealed as not-last",
        &v,
        None,
    ));
    v = base[..chunk(1)].to_vec();
    vectors.push(fail_vector(
        "truncated-to-first-chunk",
        "three-chunks cut after chunk 0",
        &v,
        None,
    ));
    v = base[..HEADER_LEN].to_vec();
    vectors.push(fail_vector("header-only", "every chunk dropped", &v, None));
    v = base[..base.len() - 5].to_vec();
    vectors.push(fail_vector(
        "truncated-mid-chunk",
        "last chunk shortened by 5 bytes",
        &v,
        None,
    ));
    let mut extended = base.clone();
    extended.extend_from_slice(&base[chunk(2)..]);
    vectors.push(fail_vector(
        "last-chunk-repeated",
        "the last chunk appended twice",
        &extended,
        None,
    ));

    let mut swapped = base.clone();
    swapped[chunk(0)..chunk(1)].copy_from_slice(&base[chunk(1)..chunk(2)]);
    swapped[chunk(1)..chunk(2)].copy_from_slice(&base[chunk(0)..chunk(1)]);
    vectors.push(fail_vector(
        "chunks-swapped",
        "chunks 0 and 1 exchanged",
        &swapped,
        None,
    ));

    // Same key, same length, another file id: its chunk 0 dropped into ours.
    let (other, _) = seal("other-file", OTHER_FILE_ID, cs, &plaintext(40));
    let mut moved = base.clone();
    moved[chunk(0)..chunk(1)].copy_from_slice(&other[chunk(0)..chunk(1)]);
    vectors.push(fail_vector(
        "chunk-from-other-file",
        "chunk 0 taken from another file's object (same key, same index)",
        &moved,
        None,
    ));
    vectors.push(fail_vector(
        "object-of-other-file",
        "a whole object of another file presented as this one",
        &other,
        None,
    ));

    for (name, at, what) in [
        ("flip-header-magic", 0, "bit flipped in the magic"),
        (
            "flip-header-reserved",
            10,
            "bit flipped in a reserved header byte",
        ),
        ("flip-header-key-id", 20, "bit flipped in the key id"),
        ("flip-nonce", chunk(1) + 3, "bit flipped in chunk 1's nonce"),
        (
            "flip-body",
            chunk(1) + 12 + 5,
            "bit flipped in chunk 1's ciphertext",
        ),
        (
            "flip-tag",
            chunk(1) + sealed - 1,
            "bit flipped in chunk 1's tag",
        ),
    ] {
        let mut t = base.clone();
        t[at] ^= 0x01;
        vectors.push(fail_vector(name, what, &t, None));
    }
    let mut chunk_size_changed = base.clone();
    chunk_size_changed[12..16].copy_from_slice(&32u32.to_be_bytes());
    vectors.push(fail_vector(
        "header-chunk-size-changed",
        "chunk size field changed from 16 to 32",
        &chunk_size_changed,
        None,
    ));
    let mut wrong = *key().secret();
    wrong[0] ^= 0x01;
    vectors.push(fail_vector(
        "wrong-key",
        "the right key id with a different key",
        &base,
        Some(wrong),
    ));

    let doc = json!({
        "format": "casegate object format v1",
        "spec": "docs/format.md",
        "notes": "hex strings; plaintext byte i is (7*i + 3) mod 256; nonces were chosen for these vectors only (writers draw them at random)",
        "vectors": vectors,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}
