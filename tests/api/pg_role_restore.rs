//! docs/deploy.md's backup and restore (section 6) for the role of its
//! section 1, as written: `pg_dump` and `pg_restore --no-owner` log in as
//! the gateways' role, only `createdb --owner` runs as the superuser. The
//! restored tables are the role's, so a gateway logged in as it starts on
//! them, serves what the backup held, and its log extends the checkpoint
//! signed before the backup. (`restore.rs` does the same as a superuser,
//! with a grant's download.) Runs in the PostgreSQL pass of the suite.

use crate::audit_log::{export, files, verify};
use crate::common::spawn_app_on;
use crate::pg_role::{DocumentedRole, scalar_i64};
use crate::restore::run;
use crate::tus::{pattern, sha256_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_restore_runs_as_the_role() {
    let Some(role) = DocumentedRole::create().await else {
        return;
    };
    let mut app = spawn_app_on(role.url.clone()).await;
    let (_case, patient) = app.create_case(None).await;
    let data = pattern(120_000, 12);
    app.upload(&patient, "ct-report.pdf", None, &data, 60_000)
        .await;
    let f = files(&app).await;
    let before = export(&app, &f, "before.jsonl").await;
    let dump = f.dir.join("casegate.dump");
    let dump = dump.to_str().unwrap();
    run(
        "pg_dump",
        &["--format=custom", "--no-owner", "--file", dump, &role.url],
    );

    role.drop_database().await;
    let (admin, name) = (role.admin.as_str(), role.name.as_str());
    run(
        "createdb",
        &["--maintenance-db", admin, "--owner", name, name],
    );
    run(
        "pg_restore",
        &["--no-owner", "--exit-on-error", "--dbname", &role.url, dump],
    );
    app.restart().await;

    let db = app.db().await;
    let foreign = scalar_i64(
        &db,
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> current_user",
    )
    .await;
    assert_eq!(foreign, 0, "the role owns every restored table");
    let manifest = app.patient_manifest(&patient).await;
    assert_eq!(manifest["files"][0]["sha256"], sha256_hex(&data).as_str());
    let after = export(&app, &f, "after.jsonl").await;
    let previous = format!("{}.checkpoint", before.display());
    let (ok, out) = verify(&f, &after, &["--previous-checkpoint", &previous]).await;
    assert!(ok, "{out}");
    db.close().await;
    app.stop().await;
    drop(role);
}
