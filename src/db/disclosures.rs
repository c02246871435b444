//! What was disclosed from a case, as the database records it: every
//! download request under the case's grants (grant, centre, file,
//! representation, span asked for, the audit entries that admitted and
//! ended it) with its outcome (bytes handed to the connection, when the
//! last of them was, sent in full or cut; written when its lease is
//! settled, `db::grants`), read in one snapshot together with the audit
//! log's head, so a report can say exactly which entries it reflects.
//! Also what went back to the patient: releases of files to the patient
//! and the patient's downloads of them, read from their audit entries
//! (`file.release`, `patient.download`; each is written with its action).

use sqlx::Row;

use super::grants::{GrantRow, LeaseKey};
use super::{Backend, Db, DbError, Tx};
use crate::clock::Timestamp;
use crate::ids::{CaseId, FileId};

/// Whether a case exists, and whether it was deleted (crypto-shredded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseState {
    Open,
    Deleted { at: Option<Timestamp> },
}

/// How a download request ended, as far as the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Settled: `delivered` bytes handed to the connection, the last at
    /// `ended_at`; `cut` unless the whole span asked for was sent.
    Ended {
        delivered: i64,
        ended_at: Timestamp,
        cut: bool,
    },
    /// Still sending: the bytes so far and the last recorded progress.
    Running { delivered: i64, last_at: Timestamp },
    /// Recorded before the gateway kept download outcomes.
    Unrecorded,
}

/// One download request (a download from byte 0, or a Range continuation).
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub event_id: i64,
    pub grant_id: String,
    pub centre_id: String,
    /// `None` only if the centre's row is missing (never deleted normally).
    pub centre_name: Option<String>,
    pub centre_country: Option<String>,
    pub file_id: String,
    /// `plaintext` or `sealed`.
    pub kind: String,
    /// When the request was admitted (its first byte followed at once).
    pub at: Timestamp,
    pub range_start: i64,
    /// The length of the representation served; `None` if recorded before
    /// the gateway kept it.
    pub total: Option<i64>,
    pub outcome: RequestOutcome,
    /// Sequence numbers of the audit entries that admitted the request and
    /// recorded its end, where they exist.
    pub start_seq: Option<i64>,
    pub end_seq: Option<i64>,
}

/// A consistent read: the audit log's head and the case's requests at the
/// same moment (every request is committed with its audit entry, so each
/// one here has its entry at or below `head`, and none above is missing).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub head: i64,
    /// `None`: no such case.
    pub case: Option<CaseState>,
    pub requests: Vec<DownloadRequest>,
    /// Releases to the patient and the patient's downloads, in order.
    pub to_patient: Vec<ToPatient>,
}

/// A file released to the patient, or a patient's download of one: its
/// allowing audit entry.
#[derive(Debug, Clone)]
pub struct ToPatient {
    pub seq: i64,
    pub at: Timestamp,
    /// `file.release` or `patient.download`.
    pub action: String,
    pub actor: String,
    pub file_id: String,
    /// The entry's reason (what was released or which bytes were served).
    pub detail: Option<String>,
}

const TO_PATIENT: &str = "
    SELECT seq, time, action, actor, file_id, reason FROM audit_log
    WHERE case_id = $1 AND outcome = 'allow' AND seq <= $2
      AND action IN ('file.release', 'patient.download') AND file_id IS NOT NULL
    ORDER BY seq";

/// The case's download requests, with a running one's last heartbeat.
fn requests_sql(backend: Backend) -> String {
    let running_at = backend.epoch_as_text("l.heartbeat_at");
    format!(
        "
    SELECT d.event_id, d.grant_id, d.centre_id, c.name, c.country, d.file_id, d.kind, d.at,
           d.range_start, d.total, d.delivered, d.ended_at, d.cut, d.start_seq, d.end_seq,
           l.delivered AS running_delivered,
           {running_at} AS running_at
    FROM download_events d
    LEFT JOIN centres c ON c.centre_id = d.centre_id
    LEFT JOIN download_leases l ON l.event_id = d.event_id
    WHERE d.case_id = $1
    ORDER BY d.event_id"
    )
}

fn outcome(r: &sqlx::any::AnyRow) -> Result<RequestOutcome, DbError> {
    let ended: (Option<i64>, Option<Timestamp>, Option<i64>) = (
        r.try_get("delivered")?,
        r.try_get("ended_at")?,
        r.try_get("cut")?,
    );
    let running: (Option<i64>, Option<Timestamp>) =
        (r.try_get("running_delivered")?, r.try_get("running_at")?);
    Ok(match (ended, running) {
        ((Some(delivered), Some(ended_at), Some(cut)), _) => RequestOutcome::Ended {
            delivered,
            ended_at,
            cut: cut != 0,
        },
        (_, (Some(delivered), Some(last_at))) => RequestOutcome::Running { delivered, last_at },
        _ => RequestOutcome::Unrecorded,
    })
}

fn request(r: &sqlx::any::AnyRow) -> Result<DownloadRequest, DbError> {
    Ok(DownloadRequest {
        event_id: r.try_get("event_id")?,
        grant_id: r.try_get("grant_id")?,
        centre_id: r.try_get("centre_id")?,
        centre_name: r.try_get("name")?,
        centre_country: r.try_get("country")?,
        file_id: r.try_get("file_id")?,
        kind: r.try_get("kind")?,
        at: r.try_get("at")?,
        range_start: r.try_get("range_start")?,
        total: r.try_get("total")?,
        outcome: outcome(r)?,
        start_seq: r.try_get("start_seq")?,
        end_seq: r.try_get("end_seq")?,
    })
}

/// The case's state and download requests, with the audit log's head, in
/// one read transaction.
pub async fn read(db: &Db, case_id: &CaseId) -> Result<Snapshot, DbError> {
    let mut tx = db.begin_read().await?;
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
        .fetch_one(&mut *tx)
        .await?;
    let case = sqlx::query("SELECT state, deleted_at FROM cases WHERE case_id = $1")
        .bind(case_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| -> Result<CaseState, DbError> {
            let state: String = r.try_get("state")?;
            Ok(match state.as_str() {
                "open" => CaseState::Open,
                _ => CaseState::Deleted {
                    at: r.try_get("deleted_at")?,
                },
            })
        })
        .transpose()?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(requests_sql(db.backend())))
        .bind(case_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    let requests = rows.iter().map(request).collect::<Result<_, _>>()?;
    let to_patient = sqlx::query(TO_PATIENT)
        .bind(case_id.as_str())
        .bind(head)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(ToPatient {
                seq: r.try_get("seq")?,
                at: r.try_get("time")?,
                action: r.try_get("action")?,
                actor: r.try_get("actor")?,
                file_id: r.try_get("file_id")?,
                detail: r.try_get("reason")?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    tx.commit().await?;
    Ok(Snapshot {
        head,
        case,
        requests,
        to_patient,
    })
}

/// One download request, started under `lease`.
pub struct DownloadEvent<'a> {
    pub grant: &'a GrantRow,
    pub file_id: &'a FileId,
    pub lease: LeaseKey,
    pub at: Timestamp,
    pub kind: &'a str,
    pub range_start: i64,
    /// The bytes asked for (the span's length).
    pub bytes: i64,
    /// The length of the representation served.
    pub total: i64,
}

/// Records a download request and links its lease to it, so the lease's
/// outcome lands on it when settled. Returns the request's id.
pub async fn record_download(tx: &mut Tx<'_>, e: &DownloadEvent<'_>) -> Result<i64, DbError> {
    let event: i64 = sqlx::query_scalar(
        "INSERT INTO download_events (grant_id, case_id, file_id, centre_id, at, kind, range_start, bytes, total)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING event_id",
    )
    .bind(e.grant.grant_id.as_str())
    .bind(e.grant.case_id.as_str())
    .bind(e.file_id.as_str())
    .bind(e.grant.centre_id.as_str())
    .bind(e.at)
    .bind(e.kind)
    .bind(e.range_start)
    .bind(e.bytes)
    .bind(e.total)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE download_leases SET event_id = $1 WHERE lease_id = $2 AND token = $3")
        .bind(event)
        .bind(e.lease.id)
        .bind(e.lease.token)
        .execute(&mut **tx)
        .await?;
    Ok(event)
}

/// Names the audit entry that admitted a download request.
pub async fn set_start_entry(tx: &mut Tx<'_>, event: i64, seq: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE download_events SET start_seq = $1 WHERE event_id = $2")
        .bind(seq)
        .bind(event)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Names the audit entry that recorded the end (or cut) of the request a
/// lease belongs to; before the lease is settled.
pub async fn set_end_entry(tx: &mut Tx<'_>, lease: LeaseKey, seq: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE download_events SET end_seq = $1
         WHERE event_id = (SELECT event_id FROM download_leases
                           WHERE lease_id = $2 AND token = $3)",
    )
    .bind(seq)
    .bind(lease.id)
    .bind(lease.token)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
