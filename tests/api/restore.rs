//! The backup and restore docs/deploy.md gives operators, done as they
//! would do it on PostgreSQL: `pg_dump` while the gateway serves (key files
//! and object store kept apart), the database lost, `pg_restore` into a new
//! one and the gateway started on it. What the backup held is served again
//! (a grant issued before it downloads its file, decrypted to the bytes
//! uploaded), what came after it is gone from the database, and the audit
//! log verifies offline and extends a checkpoint signed before the backup.

use std::process::Command;

use serde_json::json;

use crate::audit_log::{export, files, verify};
use crate::common::{postgres_database, spawn_app};
use crate::grants::{grant, register_centre};
use crate::tus::pattern;

/// Debian's client tools: the newest version's directory, else PATH.
fn pg_tool(name: &str) -> String {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
    });
    dirs.pop()
        .map_or_else(|| name.to_owned(), |p| p.display().to_string())
}

/// Runs one of PostgreSQL's client tools, which must succeed.
pub fn run(tool: &str, args: &[&str]) {
    let out = Command::new(pg_tool(tool)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_database_restored_from_pg_dump_serves_and_verifies() {
    let mut app = spawn_app().await;
    if !app.on_postgres() {
        return;
    }
    let (case, patient) = app.create_case(None).await;
    let kept = pattern(300_000, 61);
    app.upload(
        &patient,
        "ct-report.pdf",
        Some("imaging_report"),
        &kept,
        100_000,
    )
    .await;
    let centre = register_centre(&app, "Centre de relecture").await;
    let (_, token) = grant(
        &app,
        &case,
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 5 }),
    )
    .await;
    let f = files(&app).await;
    let before = export(&app, &f, "before.jsonl").await;

    // The nightly backup, taken while the gateway serves.
    let dump = f.dir.join("casegate.dump");
    let lost_url = app.config.database.url.clone();
    run(
        "pg_dump",
        &[
            "--format=custom",
            "--no-owner",
            "--file",
            dump.to_str().unwrap(),
            &lost_url,
        ],
    );
    // Work after the backup, which the restore will not have.
    app.upload(&patient, "later.pdf", None, &pattern(50_000, 62), 50_000)
        .await;

    // The database is lost; a new one is restored from the dump.
    let admin = std::env::var("CASEGATE_TEST_POSTGRES").unwrap();
    let (_, lost) = lost_url.rsplit_once('/').unwrap();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {lost} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let restored = postgres_database().await.unwrap();
    run(
        "pg_restore",
        &[
            "--no-owner",
            "--exit-on-error",
            "--dbname",
            &restored,
            dump.to_str().unwrap(),
        ],
    );
    app.config.database.url = restored;
    app.restart().await;

    // What the backup held is served: the grant works, the bytes decrypt.
    let mut centre = centre;
    centre.base = format!("https://127.0.0.1:{}", app.centre_addr.port());
    let (listing, file_id) = centre.grant_listing(&token).await;
    assert_eq!(listing["files"].as_array().unwrap().len(), 1, "{listing}");
    let resp = centre
        .get(&format!("/api/v1/grant/files/{file_id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), kept.as_slice());
    // What came after it is not in the database: the patient sees one file.
    let manifest = app.patient_manifest(&patient).await;
    assert_eq!(manifest["files"].as_array().unwrap().len(), 1, "{manifest}");

    // The restored log verifies, and extends the checkpoint signed before
    // the backup.
    let after = export(&app, &f, "after.jsonl").await;
    let previous = format!("{}.checkpoint", before.display());
    let (ok, out) = verify(&f, &after, &["--previous-checkpoint", &previous]).await;
    assert!(ok, "{out}");
}
