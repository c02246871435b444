//! Opaque identifiers. Each is parsed once at the boundary, so inner code
//! never re-validates strings, and one kind of id is never passed as another.

use std::fmt;

use crate::{hex, random};

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
                let digits = s.strip_prefix($prefix)?;
                hex::is_lower(digits, ID_BYTES).then(|| $name(s.to_owned()))
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

        /// Deserializes only the shape `generate` produces, so a path
        /// segment or JSON field is checked where it enters.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s)
                    .ok_or_else(|| serde::de::Error::custom(concat!("not a ", stringify!($name))))
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
    hex::encode(&random::array::<ID_BYTES>())
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

    #[test]
    fn deserializes_only_valid_ids() {
        let id = CaseId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CaseId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<CaseId>("\"case_x\"").is_err());
        assert!(serde_json::from_str::<FileId>(&json).is_err());
    }
}
