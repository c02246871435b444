//! AES-256-GCM with a random 96-bit nonce stored in front of the ciphertext:
//! `nonce (12) ‖ ciphertext ‖ tag (16)`. Used for wrapping keys and sealing
//! small metadata fields; bulk file data uses the object format instead.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::DecryptError;
use crate::random as rng;

pub const KEY_LEN: usize = 32;
pub const OVERHEAD: usize = NONCE_LEN + 16;

fn key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // AES-256-GCM accepts every 32-byte key; the length is fixed by the type.
    match UnboundKey::new(&AES_256_GCM, bytes) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("32-byte key is always valid for AES-256-GCM"),
    }
}

/// Seals `plaintext` under `key_bytes` with a fresh random nonce.
pub fn seal(key_bytes: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_with_nonce(key_bytes, rng::array::<NONCE_LEN>(), aad, plaintext)
}

/// Seals under a chosen nonce: only [`seal`] and the key test vectors.
pub(super) fn seal_with_nonce(
    key_bytes: &[u8; KEY_LEN],
    nonce_bytes: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = key(key_bytes)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| ())
        .unwrap_or_else(|()| unreachable!("input far below the AES-GCM length limit"));
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens what `seal` produced; any change to key, aad or bytes fails.
pub fn open(key_bytes: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if sealed.len() < OVERHEAD {
        return Err(DecryptError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
    let mut buf = body.to_vec();
    let plain_len = key(key_bytes)
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| DecryptError)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Associated data built from labelled parts, each followed by 0x00, so no
/// two different part lists encode to the same bytes (ids never hold 0x00).
pub fn aad(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let k = [7u8; 32];
        let sealed = seal(&k, b"ctx", b"hello");
        assert_eq!(open(&k, b"ctx", &sealed).unwrap(), b"hello");
        assert_eq!(open(&k, b"other", &sealed), Err(DecryptError));
        assert_eq!(open(&[8u8; 32], b"ctx", &sealed), Err(DecryptError));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(open(&k, b"ctx", &t), Err(DecryptError), "flip at {i}");
        }
        assert_eq!(open(&k, b"ctx", &sealed[..10]), Err(DecryptError));
        assert_ne!(seal(&k, b"ctx", b"hello"), sealed, "nonces are fresh");
    }
}
