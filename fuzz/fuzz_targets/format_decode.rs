//! Object format v1 decoder on arbitrary bytes: header parsing, length
//! arithmetic, whole-object and single-chunk decryption, range plans. Must
//! never panic; a random input must never decrypt.
#![no_main]

use casegate::crypto::FileKey;
use casegate::crypto::format::{ChunkCipher, Layout, ObjectHeader, decrypt_object, plan_range};
use libfuzzer_sys::fuzz_target;

const CASE_ID: &str = "case_000102030405060708090a0b0c0d0e0f";
const FILE_ID: &str = "file_101112131415161718191a1b1c1d1e1f";

fuzz_target!(|data: &[u8]| {
    let key = FileKey::from_parts(std::array::from_fn(|i| 0xa0 + i as u8), std::array::from_fn(|i| i as u8));
    // Whole objects: anything the fuzzer finds that decrypts would be a
    // forgery under a key it does not know.
    if let Ok(plain) = decrypt_object(&key, CASE_ID, FILE_ID, data) {
        panic!("random input decrypted to {} bytes", plain.len());
    }
    let Ok(header) = ObjectHeader::decode(data) else { return };
    let layout = Layout::new(header.chunk_size);
    let object_len = u64::from_le_bytes(data.iter().copied().chain([0; 8]).take(8).collect::<Vec<_>>().try_into().unwrap_or([0; 8]));
    if let Ok(len) = layout.plaintext_len(object_len) {
        if len > 0 {
            let a = (object_len.rotate_left(7)) % len;
            let b = a + 1 + (object_len.rotate_left(13)) % (len - a);
            let plan = plan_range(&layout, len, a..b);
            assert!(plan.object_range.end <= object_len);
            assert!(plan.object_range.start < plan.object_range.end);
        }
    }
    // Single chunks with arbitrary index and flag.
    let with_key = ObjectHeader { key_id: *key.id(), ..header };
    if let Ok(cipher) = ChunkCipher::new(&key, with_key, CASE_ID, FILE_ID) {
        let mut body = data[32.min(data.len())..].to_vec();
        let index = u64::from(data.get(9).copied().unwrap_or(0));
        assert!(cipher.open_in_place(index, data.len() % 2 == 0, &mut body).is_err());
    }
});
