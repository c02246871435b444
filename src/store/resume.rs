//! The resume token: where an object being written can be picked up again.
//! A backend produces one at each durable point ([`super::ObjectWriter::sync`]);
//! the caller stores it as-is, in the same transaction as the upload offset,
//! and hands it back to reopen the writer. Its text is the backend's own
//! business — the database keeps it without knowing its shape.
//!
//! The text is the JSON of [`WriteProgress`], byte for byte what rows
//! written before this type existed hold, so those uploads still resume.

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::s3::MultipartProgress;

/// An opaque, storable position in an object being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeToken(String);

impl ResumeToken {
    /// A new object: nothing durable yet.
    pub fn start() -> ResumeToken {
        WriteProgress::default().token()
    }

    /// A token as it was stored.
    pub fn from_stored(text: String) -> ResumeToken {
        ResumeToken(text)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Object bytes the backend recorded as durable (diagnostics and the
    /// conformance suite; callers track offsets themselves).
    pub fn durable_len(&self) -> Result<u64, StoreError> {
        Ok(WriteProgress::from_token(self)?.sealed_len)
    }
}

/// What a token holds: the object bytes durably written and, for the S3
/// backend, the multipart state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WriteProgress {
    /// Object bytes durably written.
    pub sealed_len: u64,
    /// The S3 backend's multipart state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartProgress>,
}

impl WriteProgress {
    pub(crate) fn token(&self) -> ResumeToken {
        // Cannot fail: integers, strings and a list of strings, no maps.
        ResumeToken(serde_json::to_string(self).unwrap_or_else(|_| "{}".into()))
    }

    pub(crate) fn from_token(token: &ResumeToken) -> Result<WriteProgress, StoreError> {
        serde_json::from_str(&token.0).map_err(|_| StoreError::BadResumeToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_the_stored_text() {
        assert_eq!(ResumeToken::start().as_str(), r#"{"sealed_len":0}"#);
        let fs_row = ResumeToken::from_stored(r#"{"sealed_len":1048576}"#.into());
        assert_eq!(fs_row.durable_len().unwrap(), 1_048_576);
        assert_eq!(WriteProgress::from_token(&fs_row).unwrap().token(), fs_row);
        let s3_row = ResumeToken::from_stored(
            r#"{"sealed_len":9437189,"multipart":{"upload_id":"u-1","part_size":8388608,"parts":["\"e1\""],"staging_generation":3,"staging_len":1048581}}"#
                .into(),
        );
        let progress = WriteProgress::from_token(&s3_row).unwrap();
        let multipart = progress.multipart.as_ref().unwrap();
        assert_eq!(multipart.upload_id.as_deref(), Some("u-1"));
        assert_eq!(multipart.staging_generation, 3);
        assert_eq!(progress.token(), s3_row, "written back byte for byte");
        assert!(matches!(
            ResumeToken::from_stored("garbage".into()).durable_len(),
            Err(StoreError::BadResumeToken)
        ));
    }
}
