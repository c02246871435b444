//! What a download costs: which representation is served ([`Kind`]) and
//! how its bytes are charged to the file's budget ([`Budget`]).

/// Which representation of a file is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Decrypted on the fly.
    Plaintext,
    /// The stored object, with its file key sealed to the centre.
    Sealed,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Plaintext => "plaintext",
            Kind::Sealed => "sealed",
        }
    }

    /// The audit action of a download of this kind.
    pub fn action(&self) -> &'static str {
        match self {
            Kind::Plaintext => "download.plaintext",
            Kind::Sealed => "download.sealed",
        }
    }
}

/// How the bytes of a download are charged to a file's budget of
/// `max_downloads × size`: plaintext bytes as they are; bytes of the sealed
/// object scaled to the plaintext size (rounded down, at least 1), so a
/// whole sealed download costs exactly one plaintext download and the two
/// representations can be mixed.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub kind: Kind,
    /// Plaintext size of the file.
    pub size: u64,
    /// Length of the representation served (plaintext size or object length).
    pub total: u64,
}

impl Budget {
    pub fn charge(&self, bytes: u64) -> i64 {
        let units = match self.kind {
            Kind::Plaintext => bytes,
            Kind::Sealed if bytes == 0 || self.total == 0 => 0,
            Kind::Sealed => {
                let scaled = u128::from(bytes) * u128::from(self.size) / u128::from(self.total);
                u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
            }
        };
        i64::try_from(units).unwrap_or(i64::MAX)
    }
}
