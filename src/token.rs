//! Bearer tokens: 256-bit random secrets shown once, stored only as their
//! SHA-256, never printed by `Debug`.
//!
//! A token is `<kind prefix><base64url of 32 random bytes>`. The prefix says
//! which table to look in (and lets secret scanners recognise a leaked one);
//! it carries no authority by itself.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::random as rng;

const SECRET_BYTES: usize = 32;
const ENCODED_LEN: usize = 43;

/// What a token authorises; each kind lives in its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Coordinator or compliance staff.
    Operator,
    /// A patient's upload link for one case.
    Upload,
    /// A reviewing centre's download grant.
    Grant,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Operator => "cgo_",
            TokenKind::Upload => "cgu_",
            TokenKind::Grant => "cgg_",
        }
    }
}

/// A token secret. Zeroized on drop; `Debug` never shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn generate(kind: TokenKind) -> SecretToken {
        let mut bytes = [0u8; SECRET_BYTES];
        rng::fill(&mut bytes);
        let token = format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes));
        bytes.zeroize();
        SecretToken(token)
    }

    /// Parses what a client sent. Anything not shaped like a token we issue
    /// is rejected before it reaches the database.
    pub fn parse(s: &str) -> Option<(TokenKind, SecretToken)> {
        let kind = [TokenKind::Operator, TokenKind::Upload, TokenKind::Grant]
            .into_iter()
            .find(|k| s.starts_with(k.prefix()))?;
        let body = &s[kind.prefix().len()..];
        let decoded = URL_SAFE_NO_PAD.decode(body).ok()?;
        (body.len() == ENCODED_LEN && decoded.len() == SECRET_BYTES)
            .then(|| (kind, SecretToken(s.to_owned())))
    }

    /// The secret itself, for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        TokenHash(out)
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// SHA-256 of a token: what the database stores and is searched by.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison, for checking a stored hash after lookup.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        other.len() == 32 && bool::from(self.0.ct_eq(other))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_hash() {
        let t = SecretToken::generate(TokenKind::Upload);
        assert!(t.expose().starts_with("cgu_"));
        let (kind, parsed) = SecretToken::parse(t.expose()).unwrap();
        assert_eq!(kind, TokenKind::Upload);
        assert!(parsed.hash().ct_eq(t.hash().as_bytes()));
        assert!(!format!("{t:?}").contains(&t.expose()[4..]));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "cgo_",
            "cgx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "cgo_AAAA",
            "cgo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "cgo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        ] {
            assert!(SecretToken::parse(bad).is_none(), "{bad}");
        }
    }
}
