//! The audit trail: every allowed or denied action on a case, centre, grant,
//! file or token becomes one entry, written before the response is sent. If
//! the entry cannot be written the action is refused (fail closed).
//!
//! Entries hold ids only, never names, filenames or case references. The
//! field order of [`AuditEntry`] is alphabetical so its compact JSON is also
//! its RFC 8785 canonical form: the Merkle layer hashes exactly that line.
//!
//! - [`merkle`]: the RFC 6962 / 9162 tree over those lines (pure);
//! - [`note`]: checkpoints (size and root) as C2SP signed notes;
//! - [`signing_key`]: the Ed25519 checkpoint key file;
//! - [`checkpoint_copy`]: checkpoints written to an external directory;
//! - [`checkpoint_copy_s3`]: or to an S3 bucket, never overwritten, under
//!   Object Lock retention where the store has it;
//! - [`verify`]: offline verification of an exported log.

pub mod checkpoint_copy;
pub mod checkpoint_copy_s3;
pub mod merkle;
pub mod note;
pub mod signing_key;
pub mod verify;

use serde::Serialize;

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Deny,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "allow" => Some(Outcome::Allow),
            "deny" => Some(Outcome::Deny),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// One audit entry. Fields are declared in alphabetical order (see module doc).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub action: String,
    pub actor: String,
    pub case_id: Option<String>,
    pub centre_id: Option<String>,
    pub client_addr: Option<String>,
    pub client_cert_sha256: Option<String>,
    pub file_id: Option<String>,
    pub grant_id: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub role: String,
    pub seq: i64,
    pub time: String,
}

/// What a request contributes to each of its entries.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub actor: String,
    pub role: String,
    pub client_addr: Option<String>,
    pub client_cert_sha256: Option<String>,
    pub request_id: Option<String>,
    /// For a centre's request (its pinned certificate matched): the centre
    /// and the grant, recorded on every entry of the request that does not
    /// name them itself, so the log's filters find all of a centre's
    /// actions (its replies included).
    pub centre_id: Option<String>,
    pub grant_id: Option<String>,
}

/// An entry about to be written; `seq` and `time` are assigned on insert.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub action: &'static str,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub case_id: Option<String>,
    pub file_id: Option<String>,
    pub centre_id: Option<String>,
    pub grant_id: Option<String>,
}

impl NewEntry {
    pub fn new(action: &'static str, outcome: Outcome) -> NewEntry {
        NewEntry {
            action,
            outcome,
            reason: None,
            case_id: None,
            file_id: None,
            centre_id: None,
            grant_id: None,
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn case(mut self, id: impl ToString) -> Self {
        self.case_id = Some(id.to_string());
        self
    }

    pub fn centre(mut self, id: impl ToString) -> Self {
        self.centre_id = Some(id.to_string());
        self
    }

    pub fn file(mut self, id: impl ToString) -> Self {
        self.file_id = Some(id.to_string());
        self
    }

    pub fn grant(mut self, id: impl ToString) -> Self {
        self.grant_id = Some(id.to_string());
        self
    }
}

impl AuditEntry {
    /// The entry as one line of the JSONL export (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub const CSV_HEADER: &'static str = "seq,time,actor,role,action,outcome,reason,case_id,file_id,centre_id,grant_id,client_addr,client_cert_sha256,request_id";

    pub fn to_csv_line(&self) -> String {
        let fields: [&str; 14] = [
            &self.seq.to_string(),
            &self.time,
            &self.actor,
            &self.role,
            &self.action,
            &self.outcome,
            self.reason.as_deref().unwrap_or(""),
            self.case_id.as_deref().unwrap_or(""),
            self.file_id.as_deref().unwrap_or(""),
            self.centre_id.as_deref().unwrap_or(""),
            self.grant_id.as_deref().unwrap_or(""),
            self.client_addr.as_deref().unwrap_or(""),
            self.client_cert_sha256.as_deref().unwrap_or(""),
            self.request_id.as_deref().unwrap_or(""),
        ];
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// RFC 4180 quoting, plus a leading `'` on values a spreadsheet would run as
/// a formula (CSV injection).
pub fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_sorted_compact() {
        let e = AuditEntry {
            action: "case.create".into(),
            actor: "op_1".into(),
            outcome: "allow".into(),
            role: "coordinator".into(),
            seq: 3,
            time: "2026-11-25T00:00:00Z".into(),
            ..Default::default()
        };
        assert_eq!(
            e.to_json_line(),
            "{\"action\":\"case.create\",\"actor\":\"op_1\",\"case_id\":null,\"centre_id\":null,\"client_addr\":null,\"client_cert_sha256\":null,\"file_id\":null,\"grant_id\":null,\"outcome\":\"allow\",\"reason\":null,\"request_id\":null,\"role\":\"coordinator\",\"seq\":3,\"time\":\"2026-11-25T00:00:00Z\"}"
        );
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
