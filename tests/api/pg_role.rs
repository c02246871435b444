//! docs/deploy.md's PostgreSQL set-up, done as an operator would: the SQL
//! of its section "1. PostgreSQL" — read from the doc itself, so the doc
//! and the test cannot drift apart — run as the superuser creates a login
//! role that is no superuser and a database it owns. A gateway whose
//! `database.url` logs in as that role then migrates the database on its
//! first start, starts again on it, creates a case, takes an upload's
//! lease and completes the upload, appends to the audit log and signs a
//! checkpoint that verifies offline. The append-only triggers refuse the
//! role's changes to the audit tables; and, as the doc warns, the role can
//! drop them, after which the signed checkpoint still names the changed
//! entry. The backup and restore of section 6 as the same role:
//! `pg_role_restore.rs`. Runs in the PostgreSQL pass of the suite.

use reqwest::Method;
use sqlx::{AnyPool, Connection};

use crate::audit_log::{export, files, verify};
use crate::common::{TestApp, spawn_app_on};
use crate::tus::{meta, pattern, sha256_hex};

const DEPLOY: &str = include_str!("../../docs/deploy.md");

/// One statement of the doc's SQL: as the doc writes it (for messages),
/// and as run, with the names and the password filled in.
struct Statement {
    doc: String,
    run: String,
}

/// The SQL block of deploy.md's role set-up, in two parts: what runs on
/// the server's maintenance database, then what runs after `\c casegate`
/// on the new database. `casegate` (the role's and the database's name)
/// becomes `name`, and the password `'…'` becomes `password`.
fn deploy_sql(name: &str, password: &str) -> [Vec<Statement>; 2] {
    let (_, section) = DEPLOY
        .split_once("one login role for the gateways")
        .expect("deploy.md sets up the gateways' role");
    let (_, block) = section.split_once("```sql\n").unwrap();
    let (block, _) = block.split_once("```").unwrap();
    let mut parts = [String::new(), String::new()];
    let mut part = 0;
    for line in block.lines() {
        let code = line.split_once("--").map_or(line, |(code, _)| code).trim();
        if code.starts_with("\\c") {
            assert_eq!(code, "\\c casegate", "the doc connects to its new database");
            part = 1;
            continue;
        }
        parts[part].push_str(code);
        parts[part].push('\n');
    }
    parts.map(|sql| {
        sql.split(';')
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .map(|doc| Statement {
                run: doc
                    .replace("casegate", name)
                    .replace("'…'", &format!("'{password}'")),
                doc,
            })
            .collect()
    })
}

async fn run_all(url: &str, statements: &[Statement]) {
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.run.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("deploy.md's `{}` fails: {e}", s.doc));
    }
    conn.close().await.unwrap();
}

/// The doc's role and its database, made by the doc's SQL as the
/// superuser; both are dropped with this (also when the test fails), the
/// database first: a role cannot be dropped while it owns one.
pub struct DocumentedRole {
    /// The superuser's URL (`CASEGATE_TEST_POSTGRES`).
    pub admin: String,
    /// The role's and its database's name.
    pub name: String,
    /// The database as the role reaches it: the gateways' `database.url`.
    pub url: String,
}

impl DocumentedRole {
    /// `None` without `CASEGATE_TEST_POSTGRES`.
    pub async fn create() -> Option<DocumentedRole> {
        let admin = std::env::var("CASEGATE_TEST_POSTGRES").ok()?;
        sqlx::any::install_default_drivers();
        // `cg_test_`: a database the suite's own clean-up recognises too.
        let name = format!(
            "cg_test_{}",
            casegate::hex::encode(&casegate::random::array::<8>())
        );
        let password = casegate::hex::encode(&casegate::random::array::<24>());
        let mut url = reqwest::Url::parse(&admin).unwrap();
        let mut role = DocumentedRole {
            admin,
            name,
            url: String::new(),
        };
        let [on_server, on_database] = deploy_sql(&role.name, &password);
        run_all(&role.admin, &on_server).await;
        url.set_path(&role.name);
        run_all(url.as_str(), &on_database).await;
        url.set_username(&role.name).unwrap();
        url.set_password(Some(&password)).unwrap();
        role.url = url.to_string();
        Some(role)
    }

    /// The role's database is lost (as the superuser, ending every
    /// connection to it).
    pub async fn drop_database(&self) {
        let mut conn = sqlx::AnyConnection::connect(&self.admin).await.unwrap();
        let sql = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

impl Drop for DocumentedRole {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::AnyConnection::connect(&admin).await.ok()?;
                for sql in [
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    format!("DROP ROLE IF EXISTS {name}"),
                ] {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                        .ok()?;
                }
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("test role {} or its database not dropped", self.name);
        }
    }
}

pub async fn scalar_i64(db: &AnyPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// Runs `sql` on `db`; the error's message if it is refused.
async fn refusal(db: &AnyPool, sql: String) -> Option<String> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(db)
        .await
        .err()
        .map(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_role_runs_a_gateway_without_superuser_rights() {
    let Some(role) = DocumentedRole::create().await else {
        return;
    };
    let mut app = spawn_app_on(role.url.clone()).await;
    let db = app.db().await;
    the_role_is_no_superuser_and_owns_the_schema(&db, &role.name).await;
    uploads_with_a_lease(&app, &db).await;
    app.restart().await;
    an_operator_token_is_minted_as_the_role(&app).await;
    the_audit_log_is_appended_signed_and_guarded(&app, &db).await;

    db.close().await;
    app.stop().await;
    drop(role);
}

/// What the doc's SQL made, seen from the gateway's own login: the role
/// has no privilege beyond its database, and the first start migrated it.
async fn the_role_is_no_superuser_and_owns_the_schema(db: &AnyPool, name: &str) {
    let (user, superuser, createdb, createrole): (String, bool, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolcreatedb, rolcreaterole
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(user, name, "the gateway logs in as the doc's role");
    assert!(
        !superuser && !createdb && !createrole,
        "no privilege beyond its database"
    );
    let (db_owner, schema_owner, public_may): (String, String, bool) = sqlx::query_as(
        "SELECT (SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()),
                (SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'),
                has_schema_privilege('public', 'public', 'CREATE')
                    OR has_schema_privilege('public', 'public', 'USAGE')",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!((db_owner.as_str(), schema_owner.as_str()), (name, name));
    assert!(!public_may, "other roles may not use the gateway's schema");

    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    let applied = scalar_i64(db, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await;
    assert_eq!(
        applied, migrations,
        "every migration applied on the first start"
    );
    let foreign = scalar_i64(
        db,
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> current_user",
    )
    .await;
    assert_eq!(foreign, 0, "the role created every table itself");
}

/// A case, and an upload whose PATCHes each take the upload's lease (a
/// row the role writes and locks), answered 423 while another replica
/// holds it.
async fn uploads_with_a_lease(app: &TestApp, db: &AnyPool) {
    let (_case, patient) = app.create_case(Some("second opinion, Dr. Rossi")).await;
    let data = pattern(150_000, 11);
    let path = app
        .tus_create(
            &patient,
            150_000,
            &meta("biopsy.pdf", Some("pathology_report")),
        )
        .await;
    let lease = format!("upload:{}", path.rsplit('/').next().unwrap());
    let resp = app
        .tus_patch(&patient, &path, 0, data[..70_000].to_vec())
        .await;
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);

    sqlx::query(
        "INSERT INTO leases (name, holder, expires_at)
         VALUES ($1, 'replica-b', CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + 60000)",
    )
    .bind(&lease)
    .execute(db)
    .await
    .unwrap();
    let resp = app
        .tus_patch(&patient, &path, 70_000, data[70_000..].to_vec())
        .await;
    assert_eq!(
        resp.status(),
        423,
        "another replica holds the upload's lease"
    );
    sqlx::query("DELETE FROM leases WHERE name = $1")
        .bind(&lease)
        .execute(db)
        .await
        .unwrap();
    let resp = app
        .tus_patch(&patient, &path, 70_000, data[70_000..].to_vec())
        .await;
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);

    let manifest = app.patient_manifest(&patient).await;
    let file = &manifest["files"][0];
    assert_eq!(file["state"], "complete", "{manifest}");
    assert_eq!(file["sha256"], sha256_hex(&data).as_str(), "{manifest}");
}

/// `casegate admin token create` on the gateway's host, with the same
/// `database.url`: it writes the token and its audit entry as the role.
async fn an_operator_token_is_minted_as_the_role(app: &TestApp) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_casegate"))
        .args(["admin", "token", "create", "--role", "coordinator"])
        .current_dir(app.dir.path())
        .env_remove("CASEGATE_CONFIG")
        .env("CASEGATE_DATABASE__URL", &app.config.database.url)
        .env("CASEGATE_SERVER__DATA_DIR", app.data_dir())
        .env("CASEGATE_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let token = String::from_utf8(out.stdout).unwrap();
    let resp = app
        .request(Method::GET, "/api/v1/cases", Some(token.trim()), None)
        .await;
    assert_eq!(resp.status(), 200, "the minted token works");
}

/// The log holds the work above, exports with a signed checkpoint that
/// verifies offline; the role cannot change the audit tables while the
/// triggers stand, and can drop them (deploy.md says so), but not without
/// the checkpoint showing it.
async fn the_audit_log_is_appended_signed_and_guarded(app: &TestApp, db: &AnyPool) {
    let actions: Vec<String> = app
        .audit()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "case.create",
        "upload.create",
        "upload.complete",
        "token.create",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    let f = files(app).await;
    let log = export(app, &f, "audit.jsonl").await;
    let (ok, out) = verify(&f, &log, &[]).await;
    assert!(ok, "{out}");
    assert!(scalar_i64(db, "SELECT COUNT(*) FROM audit_checkpoints").await >= 1);

    for (table, column) in [
        ("audit_log", "actor"),
        ("audit_tree", "pos"),
        ("audit_checkpoints", "note"),
    ] {
        for sql in [
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let refused = refusal(db, sql.clone()).await;
            assert!(
                refused
                    .as_deref()
                    .is_some_and(|e| e.contains("append-only")),
                "{sql}: {refused:?}"
            );
        }
    }

    // The triggers belong to the role: it can drop one and change a row.
    let sql = "DROP TRIGGER audit_log_no_update ON audit_log".to_owned();
    assert_eq!(refusal(db, sql).await, None);
    let sql = "UPDATE audit_log SET actor = 'someone_else' WHERE seq = 2".to_owned();
    assert_eq!(refusal(db, sql).await, None);
    let (ok, out) = verify(&f, &export(app, &f, "changed.jsonl").await, &[]).await;
    assert!(
        !ok && out.contains("entry 2 ") && out.contains("modified"),
        "{out}"
    );
}
