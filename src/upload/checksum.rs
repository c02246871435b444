//! tus checksum extension: `Upload-Checksum: <algorithm> <base64 digest>`
//! over the bytes of one PATCH. sha1 and sha256 (ring).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;

pub const ALGORITHMS: &str = "sha1,sha256";

/// Why an `Upload-Checksum` header is refused (the client's error, 400;
/// the text is the response's detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("Upload-Checksum must be `<algorithm> <base64>`")]
    Malformed,
    #[error("unsupported checksum algorithm {0:?}; use {ALGORITHMS}")]
    UnsupportedAlgorithm(String),
    #[error("Upload-Checksum digest is not base64")]
    NotBase64,
    #[error("Upload-Checksum digest has the wrong length")]
    WrongLength,
}

pub struct ExpectedChecksum {
    ctx: digest::Context,
    expected: Vec<u8>,
}

impl ExpectedChecksum {
    /// Parses the header; an unknown algorithm or a malformed digest is the
    /// client's error (400).
    pub fn parse(header: &str) -> Result<ExpectedChecksum, ChecksumError> {
        let (algorithm, encoded) = header
            .trim()
            .split_once(' ')
            .ok_or(ChecksumError::Malformed)?;
        let alg = match algorithm.to_ascii_lowercase().as_str() {
            "sha1" => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            "sha256" => &digest::SHA256,
            other => return Err(ChecksumError::UnsupportedAlgorithm(other.to_owned())),
        };
        let expected = STANDARD
            .decode(encoded.trim())
            .map_err(|_| ChecksumError::NotBase64)?;
        if expected.len() != alg.output_len() {
            return Err(ChecksumError::WrongLength);
        }
        Ok(ExpectedChecksum {
            ctx: digest::Context::new(alg),
            expected,
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
    }

    pub fn matches(self) -> bool {
        let got = self.ctx.finish();
        bool::from(subtle::ConstantTimeEq::ct_eq(
            got.as_ref(),
            self.expected.as_slice(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_sha1_and_sha256() {
        // sha1("abc") and sha256("abc")
        let mut c = ExpectedChecksum::parse("sha1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0=").unwrap();
        c.update(b"abc");
        assert!(c.matches());
        let mut c =
            ExpectedChecksum::parse("sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=").unwrap();
        c.update(b"ab");
        c.update(b"c");
        assert!(c.matches());
        let mut c =
            ExpectedChecksum::parse("sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=").unwrap();
        c.update(b"abd");
        assert!(!c.matches());
        for bad in ["md5 AAAA", "sha256", "sha256 !!!", "sha1 AAAA"] {
            assert!(ExpectedChecksum::parse(bad).is_err(), "{bad}");
        }
    }
}
