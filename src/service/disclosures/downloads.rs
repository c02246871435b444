//! The row model of the accounting of disclosures: one row per download.
//! A download is a request from byte 0 together with the Range
//! continuations that followed it for the same grant, file and
//! representation (a continuation joins the latest such download); a
//! continuation with no download before it (a centre that asked for a
//! range first) is a download of its own, starting at its byte. This is
//! how `max_downloads` counts, so one row is one use of the grant.
//!
//! A download is `completed` when the bytes handed over, across its
//! requests, cover the whole representation (after a request whose
//! gateway died, a continuation from byte N counts the bytes up to N as
//! handed over: the centre had them); `cut` when not and one of its
//! requests broke off (the client went away, the grant was revoked, the
//! gateway stopped); `partial` when every request was sent in full but
//! they asked for less than the whole file; `in_progress` while one still
//! runs; `unrecorded` for requests made before the gateway kept outcomes.

use std::collections::HashMap;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::db::disclosures::{DownloadRequest, RequestOutcome};

/// How a download ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Cut,
    Partial,
    InProgress,
    Unrecorded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Cut => "cut",
            Status::Partial => "partial",
            Status::InProgress => "in_progress",
            Status::Unrecorded => "unrecorded",
        }
    }
}

/// One download: its first request and everything that continued it.
#[derive(Debug, Clone)]
pub struct Download {
    pub grant_id: String,
    pub centre_id: String,
    pub centre_name: Option<String>,
    pub centre_country: Option<String>,
    pub file_id: String,
    pub kind: String,
    /// The byte the download began at (0 unless it began with a range).
    pub starts_at_byte: i64,
    pub first_byte_at: Timestamp,
    /// When the last byte was handed over (or the latest progress of a
    /// running one); `None` if not recorded.
    pub last_byte_at: Option<Timestamp>,
    /// Bytes of the representation handed to the connection.
    pub bytes_served: i64,
    /// Length of the representation (plaintext size or sealed object).
    pub size: Option<i64>,
    /// Requests: the first and its continuations.
    pub requests: u32,
    pub status: Status,
    /// The sequence numbers of its audit entries (each request's start and
    /// end entries), ascending: where to check it in the log.
    pub audit_seqs: Vec<i64>,
    /// The delivered spans and whether any request broke off; folded into
    /// `status` by [`group`].
    spans: Vec<(i64, i64)>,
    any_cut: bool,
    any_running: bool,
    any_unrecorded: bool,
    /// Whether the latest request's record may fall short: settled from
    /// its last recorded progress, with no end entry (its gateway died).
    last_uncertain: bool,
}

impl Download {
    fn start(r: &DownloadRequest) -> Download {
        Download {
            grant_id: r.grant_id.clone(),
            centre_id: r.centre_id.clone(),
            centre_name: r.centre_name.clone(),
            centre_country: r.centre_country.clone(),
            file_id: r.file_id.clone(),
            kind: r.kind.clone(),
            starts_at_byte: r.range_start,
            first_byte_at: r.at,
            last_byte_at: None,
            bytes_served: 0,
            size: r.total,
            requests: 0,
            status: Status::Unrecorded,
            audit_seqs: Vec::new(),
            spans: Vec::new(),
            any_cut: false,
            any_running: false,
            any_unrecorded: false,
            last_uncertain: false,
        }
    }

    fn add(&mut self, r: &DownloadRequest) {
        self.requests += 1;
        self.implied_by(r.range_start);
        self.size = self.size.or(r.total);
        let (delivered, last) = match r.outcome {
            RequestOutcome::Ended {
                delivered,
                ended_at,
                cut,
            } => {
                self.any_cut |= cut;
                (delivered, Some(ended_at))
            }
            RequestOutcome::Running { delivered, last_at } => {
                self.any_running = true;
                (delivered, Some(last_at))
            }
            RequestOutcome::Unrecorded => {
                self.any_unrecorded = true;
                (0, None)
            }
        };
        self.bytes_served = self.bytes_served.saturating_add(delivered);
        self.spans
            .push((r.range_start, r.range_start.saturating_add(delivered)));
        self.last_uncertain =
            matches!(r.outcome, RequestOutcome::Ended { .. }) && r.end_seq.is_none();
        self.last_byte_at = self.last_byte_at.max(last);
        self.audit_seqs.extend(r.start_seq.iter().chain(&r.end_seq));
    }

    /// A continuation from byte `from` shows the centre held the bytes
    /// before it: where the record of the request it continues may fall
    /// short (its gateway died before recording the progress), those bytes
    /// count as served, so a crash never hides a disclosure. A request that
    /// ended normally was recorded exactly and is left as it is.
    fn implied_by(&mut self, from: i64) {
        if let Some(last) = self.spans.last_mut()
            && self.last_uncertain
            && last.0 < from
            && last.1 < from
        {
            self.bytes_served = self.bytes_served.saturating_add(from - last.1);
            last.1 = from;
        }
    }

    /// Whether the delivered spans cover `0..size`.
    fn covers_all(&self) -> bool {
        let Some(size) = self.size else {
            return false;
        };
        let mut spans = self.spans.clone();
        spans.sort_unstable();
        let mut reached = 0;
        for (start, end) in spans {
            if start > reached {
                break;
            }
            reached = reached.max(end);
        }
        reached >= size
    }

    fn settle_status(&mut self) {
        self.status = if self.any_running {
            Status::InProgress
        } else if self.any_unrecorded || self.size.is_none() {
            Status::Unrecorded
        } else if self.covers_all() {
            Status::Completed
        } else if self.any_cut {
            Status::Cut
        } else {
            Status::Partial
        };
    }
}

/// Folds download requests (in the order they were recorded) into
/// downloads, in the order they began.
pub fn group(requests: &[DownloadRequest]) -> Vec<Download> {
    let mut downloads: Vec<Download> = Vec::new();
    let mut latest: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for r in requests {
        let key = (r.grant_id.as_str(), r.file_id.as_str(), r.kind.as_str());
        let index = match latest.get(&key) {
            Some(&i) if r.range_start != 0 => i,
            _ => {
                downloads.push(Download::start(r));
                latest.insert(key, downloads.len() - 1);
                downloads.len() - 1
            }
        };
        downloads[index].add(r);
    }
    for d in &mut downloads {
        d.settle_status();
        d.audit_seqs.sort_unstable();
    }
    downloads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Timestamp {
        Timestamp::parse("2026-11-29T10:00:00Z")
            .unwrap()
            .plus_secs(s)
    }

    fn req(id: i64, file: &str, start: i64, outcome: RequestOutcome) -> DownloadRequest {
        DownloadRequest {
            event_id: id,
            grant_id: "grant_a".into(),
            centre_id: "centre_a".into(),
            centre_name: Some("A".into()),
            centre_country: Some("DE".into()),
            file_id: file.into(),
            kind: "plaintext".into(),
            at: at(id as u64),
            range_start: start,
            total: Some(100),
            outcome,
            start_seq: Some(id * 10),
            end_seq: matches!(outcome, RequestOutcome::Ended { .. }).then_some(id * 10 + 1),
        }
    }

    fn ended(delivered: i64, end: u64, cut: bool) -> RequestOutcome {
        RequestOutcome::Ended {
            delivered,
            ended_at: at(end),
            cut,
        }
    }

    #[test]
    fn a_cut_download_continued_to_the_end_is_one_completed_row() {
        let rows = group(&[
            req(1, "f1", 0, ended(40, 5, true)),
            req(2, "f2", 0, ended(100, 6, false)),
            req(3, "f1", 40, ended(60, 9, false)),
        ]);
        assert_eq!(rows.len(), 2);
        let f1 = &rows[0];
        assert_eq!((f1.file_id.as_str(), f1.requests), ("f1", 2));
        assert_eq!((f1.bytes_served, f1.status), (100, Status::Completed));
        assert_eq!((f1.first_byte_at, f1.last_byte_at), (at(1), Some(at(9))));
        assert_eq!(f1.audit_seqs, [10, 11, 30, 31]);
        assert_eq!(rows[1].status, Status::Completed);
    }

    #[test]
    fn statuses() {
        let rows = group(&[
            req(1, "cut", 0, ended(40, 5, true)),
            req(2, "partial", 0, ended(10, 6, false)),
            req(
                3,
                "running",
                0,
                RequestOutcome::Running {
                    delivered: 7,
                    last_at: at(8),
                },
            ),
            req(4, "old", 0, RequestOutcome::Unrecorded),
            // A gap: 0..10 and 20..100 do not cover 10..20.
            req(5, "gap", 0, ended(10, 6, true)),
            req(6, "gap", 20, ended(80, 7, false)),
        ]);
        let status: Vec<_> = rows
            .iter()
            .map(|r| (r.file_id.as_str(), r.status))
            .collect();
        assert_eq!(
            status,
            [
                ("cut", Status::Cut),
                ("partial", Status::Partial),
                ("running", Status::InProgress),
                ("old", Status::Unrecorded),
                ("gap", Status::Cut),
            ]
        );
        assert_eq!(rows[3].last_byte_at, None);
    }

    /// The gateway died mid-download before recording progress (0 bytes
    /// recorded); the continuation from byte 40 shows 0..40 arrived.
    #[test]
    fn a_continuation_implies_what_came_before_it() {
        let died = DownloadRequest {
            end_seq: None,
            ..req(1, "f", 0, ended(0, 1, true))
        };
        let rows = group(&[died, req(2, "f", 40, ended(60, 5, false))]);
        assert_eq!(
            (rows[0].bytes_served, rows[0].status),
            (100, Status::Completed)
        );
        assert_eq!(rows[0].audit_seqs, [10, 20, 21]);
        // Recorded exactly (it has its end entry): nothing is implied.
        let rows = group(&[
            req(1, "f", 0, ended(10, 1, true)),
            req(2, "f", 40, ended(60, 5, false)),
        ]);
        assert_eq!((rows[0].bytes_served, rows[0].status), (70, Status::Cut));
    }

    #[test]
    fn a_new_start_opens_a_new_row_and_a_range_first_is_its_own() {
        let rows = group(&[
            req(1, "f", 50, ended(50, 2, false)),
            req(2, "f", 0, ended(100, 3, false)),
            req(3, "f", 0, ended(30, 4, true)),
            req(4, "f", 30, ended(70, 5, false)),
        ]);
        let shape: Vec<_> = rows
            .iter()
            .map(|r| (r.starts_at_byte, r.requests, r.status))
            .collect();
        assert_eq!(
            shape,
            [
                (50, 1, Status::Partial),
                (0, 1, Status::Completed),
                (0, 2, Status::Completed),
            ]
        );
    }
}
