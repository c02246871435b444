//! The generator of tests/vectors/format-v1.json, test-only: positive
//! vectors with fixed keys and nonces, and negative vectors that a decoder
//! must reject, each with a stable `reason`. Deterministic (nonces derive
//! from vector names), and the test below proves the committed file is
//! exactly what it writes. Regenerate with
//!
//! ```text
//! CASEGATE_WRITE_VECTORS=1 cargo test --lib crypto::format::vectors
//! ```

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

fn fail_vector(
    (name, reason): (&str, &str),
    description: &str,
    object: &[u8],
    file_key: Option<[u8; 32]>,
) -> Value {
    json!({
        "name": name, "description": description, "expect": "fail", "reason": reason,
        "case_id": CASE_ID, "file_id": FILE_ID,
        "file_key": hex(&file_key.unwrap_or(*key().secret())), "key_id": hex(key().id()),
        "object": hex(object),
    })
}

fn ok_vectors(cs: u32) -> Vec<Value> {
    vec![
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
    ]
}

/// Offset of chunk `i` in an object with 16-byte chunks.
const fn chunk(i: usize) -> usize {
    HEADER_LEN + i * (16 + CHUNK_OVERHEAD)
}

/// Objects cut short or extended.
fn length_vectors(base: &[u8]) -> Vec<Value> {
    let mut extended = base.to_vec();
    extended.extend_from_slice(&base[chunk(2)..]);
    vec![
        fail_vector(
            ("truncated-at-chunk-boundary", "truncated_at_chunk_boundary"),
            "three-chunks cut after chunk 1: chunk 1 was sealed as not-last",
            &base[..chunk(2)],
            None,
        ),
        fail_vector(
            ("truncated-to-first-chunk", "truncated_at_chunk_boundary"),
            "three-chunks cut after chunk 0",
            &base[..chunk(1)],
            None,
        ),
        fail_vector(
            ("header-only", "no_chunks"),
            "every chunk dropped",
            &base[..HEADER_LEN],
            None,
        ),
        fail_vector(
            ("truncated-mid-chunk", "truncated_last_chunk"),
            "last chunk shortened by 5 bytes",
            &base[..base.len() - 5],
            None,
        ),
        fail_vector(
            ("last-chunk-repeated", "extended"),
            "the last chunk appended twice",
            &extended,
            None,
        ),
    ]
}

/// Chunks or whole objects in the wrong place.
fn placement_vectors(base: &[u8]) -> Vec<Value> {
    let mut swapped = base.to_vec();
    swapped[chunk(0)..chunk(1)].copy_from_slice(&base[chunk(1)..chunk(2)]);
    swapped[chunk(1)..chunk(2)].copy_from_slice(&base[chunk(0)..chunk(1)]);
    // Same key, same length, another file id: its chunk 0 dropped into ours.
    let (other, _) = seal("other-file", OTHER_FILE_ID, 16, &plaintext(40));
    let mut moved = base.to_vec();
    moved[chunk(0)..chunk(1)].copy_from_slice(&other[chunk(0)..chunk(1)]);
    vec![
        fail_vector(
            ("chunks-swapped", "reordered_chunks"),
            "chunks 0 and 1 exchanged",
            &swapped,
            None,
        ),
        fail_vector(
            ("chunk-from-other-file", "chunk_from_other_file"),
            "chunk 0 taken from another file's object (same key, same index)",
            &moved,
            None,
        ),
        fail_vector(
            ("object-of-other-file", "object_of_other_file"),
            "a whole object of another file presented as this one",
            &other,
            None,
        ),
    ]
}

/// Single bits flipped: (name, reason, byte offset, description).
const FLIPS: [(&str, &str, usize, &str); 6] = [
    (
        "flip-header-magic",
        "tampered_magic",
        0,
        "bit flipped in the magic",
    ),
    (
        "flip-header-reserved",
        "tampered_reserved",
        10,
        "bit flipped in a reserved header byte",
    ),
    (
        "flip-header-key-id",
        "tampered_key_id",
        20,
        "bit flipped in the key id",
    ),
    (
        "flip-nonce",
        "tampered_nonce",
        chunk(1) + 3,
        "bit flipped in chunk 1's nonce",
    ),
    (
        "flip-body",
        "tampered_ciphertext",
        chunk(1) + 12 + 5,
        "bit flipped in chunk 1's ciphertext",
    ),
    (
        "flip-tag",
        "tampered_tag",
        chunk(2) - 1,
        "bit flipped in chunk 1's tag",
    ),
];

/// Single bits flipped, a header field changed, the wrong key.
fn tamper_vectors(base: &[u8]) -> Vec<Value> {
    let mut out: Vec<Value> = FLIPS
        .into_iter()
        .map(|(name, reason, at, what)| {
            let mut t = base.to_vec();
            t[at] ^= 0x01;
            fail_vector((name, reason), what, &t, None)
        })
        .collect();
    let mut chunk_size_changed = base.to_vec();
    chunk_size_changed[12..16].copy_from_slice(&32u32.to_be_bytes());
    out.push(fail_vector(
        ("header-chunk-size-changed", "tampered_chunk_size"),
        "chunk size field changed from 16 to 32",
        &chunk_size_changed,
        None,
    ));
    let mut wrong = *key().secret();
    wrong[0] ^= 0x01;
    out.push(fail_vector(
        ("wrong-key", "wrong_file_key"),
        "the right key id with a different key",
        base,
        Some(wrong),
    ));
    out
}

/// The vector file's text (pretty JSON with a trailing newline).
fn generate_json() -> String {
    let (base, _) = seal("three-chunks", FILE_ID, 16, &plaintext(40));
    let mut vectors = ok_vectors(16);
    vectors.extend(length_vectors(&base));
    vectors.extend(placement_vectors(&base));
    vectors.extend(tamper_vectors(&base));
    let doc = json!({
        "format": "casegate object format v1",
        "spec": "docs/format.md",
        "notes": "hex strings; plaintext byte i is (7*i + 3) mod 256; nonces were chosen for these vectors only (writers draw them at random)",
        "vectors": vectors,
    });
    crate::crypto::committed::pretty(&doc)
}

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/format-v1.json");

#[test]
fn vectors_file_is_what_the_generator_writes() {
    crate::crypto::committed::assert_matches(
        COMMITTED,
        &generate_json(),
        "crypto::format::vectors",
    );
}

#[test]
fn positive_vectors_reencrypt_exactly_from_their_nonces() {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(COMMITTED).unwrap()).unwrap();
    let unhex = |v: &Value| crate::hex::decode(v.as_str().unwrap()).unwrap();
    for v in doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["expect"] == "ok")
    {
        let key = FileKey::from_parts(
            unhex(&v["key_id"]).try_into().unwrap(),
            unhex(&v["file_key"]).try_into().unwrap(),
        );
        let header = ObjectHeader {
            chunk_size: v["chunk_size"].as_u64().unwrap() as u32,
            key_id: *key.id(),
        };
        let (case_id, file_id) = (
            v["case_id"].as_str().unwrap(),
            v["file_id"].as_str().unwrap(),
        );
        let cipher = ChunkCipher::new(&key, header, case_id, file_id).unwrap();
        let plaintext = unhex(&v["plaintext"]);
        let nonces = v["nonces"].as_array().unwrap();
        let count = Layout::new(header.chunk_size).chunk_count(plaintext.len() as u64);
        assert_eq!(nonces.len() as u64, count, "{}", v["name"]);
        let mut object = header.encode().to_vec();
        let chunks: Vec<&[u8]> = if plaintext.is_empty() {
            vec![&[]]
        } else {
            plaintext.chunks(header.chunk_size as usize).collect()
        };
        for (i, (piece, nonce)) in chunks.iter().zip(nonces).enumerate() {
            let nonce: [u8; 12] = unhex(nonce).try_into().unwrap();
            cipher.seal_with_nonce(nonce, i as u64, i + 1 == chunks.len(), piece, &mut object);
        }
        assert_eq!(
            object,
            unhex(&v["object"]),
            "{}: re-encryption differs",
            v["name"]
        );
    }
}
