//! Object format v1 decoder on arbitrary bytes: header parsing, length
//! arithmetic, whole-object and single-chunk decryption, range plans. Must
//! never panic; a random input must never decrypt.
#![no_main]

use casegate::crypto::FileKey;
use casegate::crypto::format::{Decryptor, ObjectHeader, decrypt_object};
use libfuzzer_sys::fuzz_target;

const CASE_ID: &str = "case_000102030405060708090a0b0c0d0e0f";
const FILE_ID: &str = "file_101112131415161718191a1b1c1d1e1f";

fuzz_target!(|data: &[u8]| {
    // Not the key of tests/vectors/format-v1.json: the seeds are those
    // vectors' objects, real ones, which must not open under this key.
    let key = FileKey::from_parts(std::array::from_fn(|i| 0x5a ^ i as u8), std::array::from_fn(|i| 0xf0 - i as u8));
    // Whole objects: anything the fuzzer finds that decrypts would be a
    // forgery under a key it does not know.
    if let Ok(plain) = decrypt_object(&key, CASE_ID, FILE_ID, data) {
        panic!("random input decrypted to {} bytes", plain.len());
    }
    let Ok(header) = ObjectHeader::decode(data) else { return };
    // The header as stored, but carrying the key's id, so the decryptor is
    // built and every chunk is actually opened (and must fail).
    let mut stored = data[..32].to_vec();
    stored[16..32].copy_from_slice(key.id());
    let len = u64::from_le_bytes(data.iter().copied().chain([0; 8]).take(8).collect::<Vec<_>>().try_into().unwrap_or([0; 8]));
    let Ok(decryptor) = Decryptor::new(&key, &stored, CASE_ID, FILE_ID, len % (1 << 40)) else { return };
    assert_eq!(decryptor.header().chunk_size, header.chunk_size);
    let plain_len = decryptor.plaintext_len();
    if plain_len > 0 {
        // Range plans stay inside the object and cover whole chunks.
        let a = len.rotate_left(7) % plain_len;
        let b = a + 1 + len.rotate_left(13) % (plain_len - a);
        if let Ok(Some(plan)) = decryptor.plan(a..b) {
            assert!(plan.object_range.end <= decryptor.object_len());
            assert!(plan.object_range.start < plan.object_range.end);
            assert_eq!(plan.take, b - a);
        }
        // Single chunks with an arbitrary index.
        let mut body = data[32..].to_vec();
        let index = u64::from(data.get(9).copied().unwrap_or(0));
        assert!(decryptor.open_chunk(index, &mut body).is_err());
    }
});
