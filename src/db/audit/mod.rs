//! The audit log in the database. [`append`] is the one place an entry is
//! written: inside the transaction of the action it records, together with
//! its leaf and the tree nodes it completes ([`tree`]), so none of them is
//! committed without the others. The leaf is exactly the entry's JSONL
//! export line ([`AuditEntry::to_json_line`]), built here from the values
//! the row stores. Every writer (services, uploads, key
//! rotation, bootstrap) goes through it, and an entry that cannot be
//! written is [`AuditUnavailable`]: the caller refuses the action (fail
//! closed).

pub mod checkpoints;
mod read;
pub mod tree;

pub use read::{AlertKey, AuditFilter, alerted, alerts, head, page, written_since};

use super::{Db, DbError, Tx};
use crate::audit::merkle::Hash;
use crate::audit::{AuditEntry, NewEntry, RequestContext};
use crate::clock::Timestamp;

/// The audit log cannot be written (disk full, database locked or
/// read-only, a damaged tree), so the action it would record is refused.
/// The cause is logged where it happens; callers answer vaguely.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written: {0}")]
pub struct AuditUnavailable(#[source] pub DbError);

/// Begins the transaction an action and its entry share.
pub async fn begin(db: &Db) -> Result<Tx<'static>, AuditUnavailable> {
    db.begin().await.map_err(|e| {
        tracing::error!(error = %e, "cannot begin an audited transaction; refusing the action");
        AuditUnavailable(e)
    })
}

/// Appends one entry inside `tx` and returns its sequence number. The
/// caller commits it together with the action.
pub async fn append(
    db: &Db,
    tx: &mut Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, AuditUnavailable> {
    insert(db, tx, ctx, time, entry).await.map_err(|e| {
        tracing::error!(error = %e, action = entry.action, "audit append failed; refusing the action");
        AuditUnavailable(e)
    })
}

/// Appends the entry to `tx` and commits both.
pub async fn commit(
    db: &Db,
    mut tx: Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, AuditUnavailable> {
    let seq = append(db, &mut tx, ctx, time, entry).await?;
    tx.commit().await.map_err(|e| {
        tracing::error!(error = %e, action = entry.action, "commit of an audited action failed");
        AuditUnavailable(e.into())
    })?;
    Ok(seq)
}

/// Records an entry on its own transaction (denials, reads).
pub async fn record(
    db: &Db,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, AuditUnavailable> {
    let tx = begin(db).await?;
    commit(db, tx, ctx, time, entry).await
}

/// The entry with every NUL character replaced by U+FFFD: PostgreSQL's
/// text cannot hold NUL, and an entry must be stored (and hash) alike on
/// either engine, whatever a stranger put in a header or a token.
fn storable(mut row: AuditEntry) -> AuditEntry {
    fn clean(s: &mut String) {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{fffd}");
        }
    }
    for s in [
        &mut row.action,
        &mut row.actor,
        &mut row.outcome,
        &mut row.role,
    ] {
        clean(s);
    }
    let optional = [
        &mut row.case_id,
        &mut row.centre_id,
        &mut row.client_addr,
        &mut row.client_cert_sha256,
        &mut row.file_id,
        &mut row.grant_id,
        &mut row.reason,
        &mut row.request_id,
    ];
    for s in optional.into_iter().flatten() {
        clean(s);
    }
    row
}

/// Inserts the entry with the next sequence number and its tree nodes.
/// The transaction holds SQLite's write lock (`BEGIN IMMEDIATE`), so the
/// sequence read here is gapless and cannot race.
async fn insert(
    db: &Db,
    tx: &mut Tx<'_>,
    ctx: &RequestContext,
    time: Timestamp,
    entry: &NewEntry,
) -> Result<i64, DbError> {
    // One query for the next sequence number and where the tree ends.
    let (seq, nodes_held, last_node): (i64, i64, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log),
                (SELECT COALESCE(MAX(pos) + 1, 0) FROM audit_tree),
                (SELECT hash FROM audit_tree ORDER BY pos DESC LIMIT 1)",
    )
    .fetch_one(&mut **tx)
    .await?;
    let end = tree::TreeEnd {
        nodes_held: nodes_held as u64,
        last_node: last_node
            .map(Hash::try_from)
            .transpose()
            .map_err(|_| DbError::Corrupt("audit_tree (a hash is not 32 bytes)"))?,
    };
    let row = storable(AuditEntry {
        action: entry.action.to_owned(),
        actor: ctx.actor.clone(),
        case_id: entry.case_id.clone(),
        centre_id: entry.centre_id.clone().or_else(|| ctx.centre_id.clone()),
        client_addr: ctx.client_addr.clone(),
        client_cert_sha256: ctx.client_cert_sha256.clone(),
        file_id: entry.file_id.clone(),
        grant_id: entry.grant_id.clone().or_else(|| ctx.grant_id.clone()),
        outcome: entry.outcome.as_str().to_owned(),
        reason: entry.reason.clone(),
        request_id: ctx.request_id.clone(),
        role: ctx.role.clone(),
        seq,
        time: time.to_string(),
    });
    sqlx::query(
        "INSERT INTO audit_log (seq, time, actor, role, action, case_id, file_id, centre_id, grant_id,
             outcome, reason, client_addr, client_cert_sha256, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(row.seq)
    .bind(&row.time)
    .bind(&row.actor)
    .bind(&row.role)
    .bind(&row.action)
    .bind(&row.case_id)
    .bind(&row.file_id)
    .bind(&row.centre_id)
    .bind(&row.grant_id)
    .bind(&row.outcome)
    .bind(&row.reason)
    .bind(&row.client_addr)
    .bind(&row.client_cert_sha256)
    .bind(&row.request_id)
    .execute(&mut **tx)
    .await?;
    let line = row.to_json_line();
    tree::append_leaf(tx, db.tree_edge(), (seq - 1) as u64, end, line.as_bytes()).await?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;
    use crate::audit::merkle::{self, leaf_hash};

    async fn exec(db: &Db, sql: &'static str) {
        sqlx::raw_sql(sql).execute(db.pool()).await.unwrap();
    }

    /// Drops the guards that keep the tree append-only and its legacy mark
    /// written once, as someone with the database could.
    async fn lift_tree_guards(db: &Db) {
        let sql = match db.backend() {
            crate::db::Backend::Sqlite => {
                "DROP TRIGGER audit_tree_no_delete; DROP TRIGGER audit_tree_legacy_no_update;"
            }
            crate::db::Backend::Postgres => {
                "ALTER TABLE audit_tree DISABLE TRIGGER USER;
                 ALTER TABLE audit_tree_legacy DISABLE TRIGGER USER;"
            }
        };
        sqlx::raw_sql(sql).execute(db.pool()).await.unwrap();
    }

    /// The leaf stored at append time is the hash of exactly the line the
    /// export reads back later, whatever the entry's text holds; and a
    /// tree that catches up from the rows alone gets the same nodes.
    #[tokio::test]
    async fn stored_leaves_hash_the_exported_lines_and_catch_up_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&crate::db::test_url(dir.path()).await)
            .await
            .unwrap();
        let hostile =
            "quote \" backslash \\ nul \u{0} ctl \u{1f} del \u{7f} é \u{2028} 😀 </script>";
        let ctx = RequestContext {
            actor: hostile.into(),
            role: "coordinator".into(),
            client_addr: Some("::1".into()),
            ..Default::default()
        };
        for i in 0..37 {
            let entry = NewEntry::new("case.read", Outcome::Deny).reason(format!("{hostile} {i}"));
            record(&db, &ctx, Timestamp::now_utc(), &entry)
                .await
                .unwrap();
        }
        let rows = page(&db, &AuditFilter::default(), 0, 100).await.unwrap();
        let stored = tree::leaves(&db, 0, 100).await.unwrap();
        assert_eq!((rows.len(), stored.len()), (37, 37));
        // NUL, which PostgreSQL's text cannot hold, is stored as U+FFFD
        // on either engine; the rest as sent.
        let kept = hostile.replace('\0', "\u{fffd}");
        assert_eq!(rows[0].actor, kept);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some(format!("{kept} 0").as_str())
        );
        for (row, leaf) in rows.iter().zip(&stored) {
            assert_eq!(
                leaf_hash(row.to_json_line().as_bytes()),
                *leaf,
                "entry {}",
                row.seq
            );
        }
        let root = tree::root(&db, 37).await.unwrap();
        let mut compact = merkle::CompactTree::new();
        for row in &rows {
            compact.push(leaf_hash(row.to_json_line().as_bytes()));
        }
        assert_eq!(compact.root(), root);

        // Entries above the legacy mark (0 here: the log was empty when the
        // tree came) are never added from their rows alone.
        lift_tree_guards(&db).await;
        exec(&db, "DELETE FROM audit_tree;").await;
        assert_eq!(tree::catch_up(&db).await.unwrap(), 0);
        assert_eq!(tree::disagreement(&db).await.unwrap(), Some((37, 0)));

        // The same rows written before the tree existed: it is rebuilt from
        // them, up to the mark and no further.
        exec(&db, "UPDATE audit_tree_legacy SET last_seq = 36;").await;
        assert_eq!(tree::catch_up(&db).await.unwrap(), 36);
        assert_eq!(tree::disagreement(&db).await.unwrap(), Some((37, 36)));
        exec(&db, "UPDATE audit_tree_legacy SET last_seq = 37;").await;
        assert_eq!(tree::catch_up(&db).await.unwrap(), 1);
        assert_eq!(tree::root(&db, 37).await.unwrap(), root);
        assert_eq!(tree::catch_up(&db).await.unwrap(), 0);
        assert_eq!(tree::disagreement(&db).await.unwrap(), None);
    }

    /// The edge this process keeps is trusted only while the table ends
    /// where it left it: after an append that rolled back, and after
    /// appends by another process (another handle on the same file), the
    /// tree still has the root of exactly the entries committed.
    #[tokio::test]
    async fn appends_after_a_rollback_or_another_writer_keep_the_tree_right() {
        let dir = tempfile::tempdir().unwrap();
        // On PostgreSQL: two gateway replicas appending to one log.
        let url = crate::db::test_url(dir.path()).await;
        let (db, other) = (Db::open(&url).await.unwrap(), Db::open(&url).await.unwrap());
        let ctx = RequestContext::default();
        let entry = |i: usize| NewEntry::new("case.read", Outcome::Allow).reason(format!("{i}"));
        let mut written = 0;
        for round in 0..12 {
            record(&db, &ctx, Timestamp::now_utc(), &entry(written))
                .await
                .unwrap();
            written += 1;
            let mut tx = begin(&db).await.unwrap();
            append(&db, &mut tx, &ctx, Timestamp::now_utc(), &entry(999))
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            for _ in 0..round % 3 {
                record(&other, &ctx, Timestamp::now_utc(), &entry(written))
                    .await
                    .unwrap();
                written += 1;
            }
        }
        let rows = page(&db, &AuditFilter::default(), 0, 100).await.unwrap();
        assert_eq!(rows.len(), written);
        let mut compact = merkle::CompactTree::new();
        for row in &rows {
            compact.push(leaf_hash(row.to_json_line().as_bytes()));
        }
        assert_eq!(
            tree::root(&db, written as u64).await.unwrap(),
            compact.root()
        );
        assert_eq!(tree::disagreement(&db).await.unwrap(), None);
    }

    /// Readiness reads entries and tree in one statement: appends
    /// committing meanwhile on other connections never make them look apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_and_tree_agree_while_appends_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("a.db").display()))
            .await
            .unwrap();
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                let ctx = RequestContext::default();
                for _ in 0..300 {
                    let entry = NewEntry::new("case.read", Outcome::Allow);
                    record(&db, &ctx, Timestamp::now_utc(), &entry)
                        .await
                        .unwrap();
                }
            })
        };
        let mut checks = 0;
        while !writer.is_finished() {
            assert_eq!(tree::disagreement(&db).await.unwrap(), None);
            checks += 1;
        }
        writer.await.unwrap();
        assert!(checks > 0);
        assert_eq!(tree::disagreement(&db).await.unwrap(), None);
    }

    /// Alerts are read from their partial index, not by scanning the log.
    #[tokio::test]
    async fn alerts_are_read_from_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("a.db").display()))
            .await
            .unwrap();
        for sql in [read::RECENT_ALERTS, read::ALERT_COUNTS, read::ALERTED] {
            let mut query =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..9 {
                query = query.bind(Option::<String>::None);
            }
            let plan: Vec<(i64, i64, i64, String)> = query.fetch_all(db.pool()).await.unwrap();
            let details: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
            assert!(
                details.iter().any(|d| d.contains("INDEX audit_log_alerts")),
                "{details:?}"
            );
        }
    }
}
