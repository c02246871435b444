//! File keys sealed to a reviewing centre (`Casegate-Sealed-Key`): HPKE
//! (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM, to the centre's X25519 public key.
//!
//! - `info` = `"casegate sealed file key v1" ‖ 0x00 ‖ grant_id ‖ 0x00 ‖
//!   case_id ‖ 0x00 ‖ file_id` (UTF-8)
//! - `aad` = the object's 32-byte format v1 header
//! - encoding: base64url without padding of `enc (32) ‖ ciphertext (48)`

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{OsRng, TryRngCore};
use zeroize::Zeroizing;

use super::DecryptError;

const LABEL: &[u8] = b"casegate sealed file key v1";
pub const ENC_LEN: usize = 32;

/// The HPKE `info` binding a sealed key to one grant, case and file.
pub fn info(grant_id: &str, case_id: &str, file_id: &str) -> Vec<u8> {
    let mut out = LABEL.to_vec();
    for part in [grant_id, case_id, file_id] {
        out.push(0);
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// A fresh X25519 key pair for a centre: (secret, public), 32 bytes each.
pub fn generate_keypair() -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let (sk, pk) = X25519HkdfSha256::gen_keypair(&mut OsRng.unwrap_err());
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&sk.to_bytes());
    let mut public = [0u8; 32];
    public.copy_from_slice(&pk.to_bytes());
    (secret, public)
}

/// The public key of an X25519 secret key.
pub fn public_key(secret: &[u8; 32]) -> Result<[u8; 32], DecryptError> {
    let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret)
        .map_err(|_| DecryptError)?;
    let mut public = [0u8; 32];
    public.copy_from_slice(&X25519HkdfSha256::sk_to_pk(&sk).to_bytes());
    Ok(public)
}

fn seal_with<R: rand_core::CryptoRng + rand_core::RngCore>(
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    key: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, DecryptError> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| DecryptError)?;
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        key,
        aad,
        rng,
    )
    .map_err(|_| DecryptError)?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Seals `key` to `recipient`; returns `enc ‖ ciphertext`.
pub fn seal(
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    key: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    seal_with(recipient, info, aad, key, &mut OsRng.unwrap_err())
}

/// Opens `enc ‖ ciphertext` with the recipient's secret key.
pub fn open(
    secret: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    if sealed.len() < ENC_LEN {
        return Err(DecryptError);
    }
    let (enc, ct) = sealed.split_at(ENC_LEN);
    let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret)
        .map_err(|_| DecryptError)?;
    let enc =
        <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| DecryptError)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        ct,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| DecryptError)
}

/// The header value: base64url without padding.
pub fn encode(sealed: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sealed)
}

pub fn decode(header: &str) -> Result<Vec<u8>, DecryptError> {
    URL_SAFE_NO_PAD
        .decode(header.trim())
        .map_err(|_| DecryptError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Returns fixed bytes: the KAT's ephemeral key material.
    struct FixedRng(Vec<u8>);

    impl rand_core::RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            unimplemented!()
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            let n = dst.len();
            dst.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
        }
    }
    impl rand_core::CryptoRng for FixedRng {}

    /// CFRG HPKE test vector (RFC 9180 final vectors, test-vectors.json
    /// 5f503c5): mode 0, KEM 0x0020, KDF 0x0001, AEAD 0x0002.
    const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
    const IKM_E: &str = "2cd7c601cefb3d42a62b04b7a9041494c06c7843818e0ce28a8f704ae7ab20f9";
    const IKM_R: &str = "dac33b0e9db1b59dbbea58d59a14e7b5896e9bdf98fad6891e99d1686492b9ee";
    const SK_RM: &str = "497b4502664cfea5d5af0b39934dac72242a74f8480451e1aee7d6a53320333d";
    const PK_RM: &str = "430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c";
    const ENC: &str = "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256";
    const AAD_0: &str = "436f756e742d30";
    const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    const CT_0: &str = "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a";

    #[test]
    fn cfrg_vector_x25519_hkdf_sha256_aes256gcm() {
        let (sk, pk) = X25519HkdfSha256::derive_keypair(&unhex(IKM_R));
        assert_eq!(sk.to_bytes().to_vec(), unhex(SK_RM));
        assert_eq!(pk.to_bytes().to_vec(), unhex(PK_RM));
        let recipient: [u8; 32] = unhex(PK_RM).try_into().unwrap();
        assert_eq!(
            public_key(&unhex(SK_RM).try_into().unwrap()).unwrap(),
            recipient
        );

        // Sender side, with the vector's ephemeral key material.
        let sealed = seal_with(
            &recipient,
            &unhex(INFO),
            &unhex(AAD_0),
            &unhex(PT),
            &mut FixedRng(unhex(IKM_E)),
        )
        .unwrap();
        assert_eq!(sealed, [unhex(ENC), unhex(CT_0)].concat());

        // Recipient side.
        let secret: [u8; 32] = unhex(SK_RM).try_into().unwrap();
        let opened = open(&secret, &unhex(INFO), &unhex(AAD_0), &sealed).unwrap();
        assert_eq!(*opened, unhex(PT));
    }

    #[test]
    fn bound_to_grant_case_file_and_header() {
        let (secret, public) = generate_keypair();
        let dek = [7u8; 32];
        let header = [1u8; 32];
        let i = info("grant_a", "case_b", "file_c");
        let sealed = seal(&public, &i, &header, &dek).unwrap();
        assert_eq!(sealed.len(), 32 + 32 + 16);
        assert_eq!(*open(&secret, &i, &header, &sealed).unwrap(), dek);
        assert!(
            open(
                &secret,
                &info("grant_x", "case_b", "file_c"),
                &header,
                &sealed
            )
            .is_err()
        );
        assert!(
            open(
                &secret,
                &info("grant_a", "case_b", "file_d"),
                &header,
                &sealed
            )
            .is_err()
        );
        assert!(open(&secret, &i, &[2u8; 32], &sealed).is_err());
        let (other, _) = generate_keypair();
        assert!(open(&other, &i, &header, &sealed).is_err());
        assert_eq!(decode(&encode(&sealed)).unwrap(), sealed);
        assert_eq!(info("g", "c", "f"), b"casegate sealed file key v1\0g\0c\0f");
    }
}
