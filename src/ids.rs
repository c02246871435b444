//! Opaque identifiers. Each is parsed once at the boundary, so inner code
//! never re-validates strings, and one kind of id is never passed as another.

use std::fmt;

use crate::crypto::rng;

const ID_BYTES: usize = 16;

macro_rules! opaque_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, random_hex()))
            }

            /// Accepts exactly the shape `generate` produces.
            pub fn parse(s: &str) -> Option<Self> {
                let hex = s.strip_prefix($prefix)?;
                let ok = hex.len() == ID_BYTES * 2
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| $name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

opaque_id!(CaseId, "case_");
opaque_id!(FileId, "file_");
opaque_id!(CentreId, "ctr_");
opaque_id!(GrantId, "grant_");
opaque_id!(UploadId, "up_");
opaque_id!(OperatorTokenId, "op_");

fn random_hex() -> String {
    rng::array::<ID_BYTES>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject() {
        let id = CaseId::generate();
        assert_eq!(CaseId::parse(id.as_str()), Some(id.clone()));
        assert!(CaseId::parse("case_../../etc").is_none());
        assert!(CaseId::parse(&id.as_str().replace("case_", "ctr_")).is_none());
        assert!(CaseId::parse(&id.as_str().to_uppercase()).is_none());
        assert_ne!(CaseId::generate(), CaseId::generate());
    }
}
