//! The provable audit log through the real server and the real binary: a
//! compliance officer exports the log with `casegate audit export`, gets
//! the verifier key with `casegate audit public-key`, and `casegate audit
//! verify` proves it offline — then names the entry an attacker with the
//! database changed, deleted, swapped or inserted, catches a truncation
//! with the previous checkpoint, and proves a case's entries on their own.
//! The routes' proofs, checked independently: `audit_proofs.rs`.

use std::path::{Path, PathBuf};
use std::process::Output;

use reqwest::Method;
use serde_json::Value;
use tokio::process::Command;

use crate::common::{TestApp, centre_cert_pem, spawn_app, x25519_public_b64};

const BIN: &str = env!("CARGO_BIN_EXE_casegate");

// ---- Helpers.

/// Some real traffic: cases, a centre, lists, a denial.
pub async fn make_entries(app: &TestApp) {
    for _ in 0..4 {
        app.create_case(None).await;
    }
    app.register_centre_from("Centre", &centre_cert_pem(), &x25519_public_b64())
        .await;
    app.request(Method::GET, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    app.request(Method::GET, "/api/v1/cases", Some(&app.compliance), None)
        .await;
}

pub struct Files {
    pub dir: PathBuf,
    ca: PathBuf,
    vkey: PathBuf,
}

async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CASEGATE_CONFIG")
        .env("CASEGATE_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The verifier key, as `casegate audit public-key` prints it on the
/// gateway's host (the key file the config names).
pub async fn files(app: &TestApp) -> Files {
    let dir = app.dir.path().join("compliance");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &app.ca_pem).unwrap();
    let master = app.config.keys.master_key_file.display().to_string();
    let out = run(
        &["audit", "public-key"],
        &[("CASEGATE_KEYS__MASTER_KEY_FILE", &master)],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let vkey = String::from_utf8(out.stdout).unwrap();
    assert!(vkey.starts_with("localhost/casegate-audit+"), "{vkey}");
    let path = dir.join("casegate-audit.vkey");
    std::fs::write(&path, vkey).unwrap();
    Files {
        dir,
        ca,
        vkey: path,
    }
}

pub async fn export(app: &TestApp, f: &Files, name: &str) -> PathBuf {
    export_with(app, f, name, &[]).await
}

async fn export_with(app: &TestApp, f: &Files, name: &str, extra: &[&str]) -> PathBuf {
    let out_file = f.dir.join(name);
    let server = format!("https://127.0.0.1:{}", app.addr.port());
    let mut args = vec![
        "audit",
        "export",
        "--server",
        &server,
        "--token",
        &app.compliance,
        "--ca",
        f.ca.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    out_file
}

fn with_suffix(p: &Path, suffix: &str) -> String {
    format!("{}{suffix}", p.display())
}

pub async fn verify(f: &Files, log: &Path, extra: &[&str]) -> (bool, String) {
    let checkpoint = with_suffix(log, ".checkpoint");
    let mut args = vec![
        "audit",
        "verify",
        "--log",
        log.to_str().unwrap(),
        "--checkpoint",
        &checkpoint,
        "--public-key",
        f.vkey.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args, &[]).await;
    (out.status.success(), text(&out))
}

async fn exec(db: &sqlx::AnyPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .unwrap();
}

// ---- Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_log_verifies_offline_and_each_tampering_is_named() {
    let app = spawn_app().await;
    make_entries(&app).await;
    let f = files(&app).await;
    let log = export(&app, &f, "audit.jsonl").await;
    let (ok, out) = verify(&f, &log, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("log verified: ")
            && out.contains(" entries, root ")
            && out.contains("signed by localhost/casegate-audit"),
        "{out}"
    );
    let db = app.db().await;
    app.lift_append_only_guards(&db).await;

    // A modified row.
    exec(
        &db,
        "UPDATE audit_log SET actor = 'someone_else' WHERE seq = 3",
    )
    .await;
    let (ok, out) = verify(&f, &export(&app, &f, "modified.jsonl").await, &[]).await;
    assert!(
        !ok && out.contains("entry 3 ") && out.contains("modified"),
        "{out}"
    );
    let original: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .nth(2)
            .unwrap(),
    )
    .unwrap();
    let actor = original["actor"].as_str().unwrap();
    exec(
        &db,
        &format!("UPDATE audit_log SET actor = '{actor}' WHERE seq = 3"),
    )
    .await;
    let (ok, out) = verify(&f, &export(&app, &f, "restored.jsonl").await, &[]).await;
    assert!(ok, "restored row verifies again: {out}");

    // Two rows swapped (their contents change places).
    exec(&db, "UPDATE audit_log SET seq = -1 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = -1;").await;
    let (ok, out) = verify(&f, &export(&app, &f, "swapped.jsonl").await, &[]).await;
    assert!(!ok && out.contains("entry 5 "), "{out}");
    exec(&db, "UPDATE audit_log SET seq = -1 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = -1;").await;

    // A deleted row.
    exec(&db, "DELETE FROM audit_log WHERE seq = 8").await;
    let (ok, out) = verify(&f, &export(&app, &f, "deleted.jsonl").await, &[]).await;
    assert!(!ok && out.contains("entry 8 is missing"), "{out}");

    // An inserted line in an export (a copy edited by hand).
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut inserted = lines.clone();
    inserted.insert(4, lines[3].replace("\"seq\":4", "\"seq\":5"));
    let edited = f.dir.join("inserted.jsonl");
    std::fs::write(&edited, inserted.join("\n") + "\n").unwrap();
    std::fs::copy(
        with_suffix(&log, ".checkpoint"),
        with_suffix(&edited, ".checkpoint"),
    )
    .unwrap();
    std::fs::copy(
        with_suffix(&log, ".leaves"),
        with_suffix(&edited, ".leaves"),
    )
    .unwrap();
    let (ok, out) = verify(&f, &edited, &[]).await;
    assert!(
        !ok && out.contains("entry 5 ") && out.contains("line 5"),
        "{out}"
    );

    // A row inserted in the database: entries and tree no longer agree,
    // and the gateway refuses to append (fail closed) rather than sign it.
    exec(&db, "UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= 10; UPDATE audit_log SET seq = seq - 999999 WHERE seq >= 1000000;").await;
    exec(&db, "INSERT INTO audit_log (seq, time, actor, role, action, outcome) VALUES (10, '2026-01-01T00:00:00Z', 'op_x', 'coordinator', 'case.list', 'allow')").await;
    let resp = app
        .request(Method::GET, "/api/v1/cases", Some(&app.coordinator), None)
        .await;
    assert_eq!(resp.status(), 503);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "audit_unavailable");
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["audit_log"], "unavailable", "{ready}");
    app.stop().await;
}
/// The tree's size and the largest size signed, read from the database.
async fn tree_and_signed(db: &sqlx::AnyPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(pos) + 1, 0) FROM audit_tree),
                (SELECT COALESCE(MAX(tree_size), 0) FROM audit_checkpoints)",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// Someone with only the database appends a made-up entry (the next
/// sequence number, a grant nobody made) and the gateway restarts: the
/// entry is refused, never added to the tree and signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_inserted_in_the_database_is_refused_after_a_restart() {
    let mut app = spawn_app().await;
    make_entries(&app).await;
    let f = files(&app).await;
    let log = export(&app, &f, "before.jsonl").await;
    let (ok, out) = verify(&f, &log, &[]).await;
    assert!(ok, "{out}");
    let db = app.db().await;
    let (nodes, signed) = tree_and_signed(&db).await;
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    exec(&db, &format!(
        "INSERT INTO audit_log (seq, time, actor, role, action, outcome, grant_id)
         VALUES ({}, '2026-01-01T00:00:00Z', 'op_x', 'coordinator', 'grant.create', 'allow', 'grant_forged')",
        head + 1
    ))
    .await;
    db.close().await;

    for round in 0..2 {
        app.restart().await;
        let resp = app
            .request(Method::GET, "/api/v1/cases", Some(&app.coordinator), None)
            .await;
        assert_eq!(resp.status(), 503, "round {round}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "audit_unavailable");
        let resp = app
            .request(
                Method::GET,
                "/api/v1/audit/checkpoint",
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 503, "round {round}: no checkpoint is served");
        let ready = app.request(Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.status(), 503);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["checks"]["audit_log"], "unavailable", "{ready}");
    }
    let url = app.config.database.url.clone();
    let _dir = app.stop().await;
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    let (nodes_after, signed_after) = tree_and_signed(&db).await;
    assert_eq!(nodes_after, nodes, "the forged entry did not join the tree");
    assert!(
        signed >= 1 && signed_after <= head,
        "no checkpoint covers the forged entry {}: {signed_after}",
        head + 1
    );
}
/// An operator hands over a whole export with lines deleted and, beside
/// it, the proofs of an unfiltered `?proofs=1` download (every entry left
/// proven): the whole-log check ignores the stray file and fails; subset
/// mode must be asked for and never claims the log is verified. Export
/// never replaces a file beside its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_proofs_file_never_turns_a_whole_log_check_into_a_subset_check() {
    let app = spawn_app().await;
    make_entries(&app).await;
    let f = files(&app).await;
    let log = export(&app, &f, "audit.jsonl").await;
    let checkpoint = std::fs::read_to_string(with_suffix(&log, ".checkpoint")).unwrap();
    let size: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
    let resp = app
        .request(
            Method::GET,
            &format!("/api/v1/audit?format=jsonl&proofs=1&tree_size={size}"),
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let proven: Vec<Value> = resp
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(proven.len() as u64, size);
    let (mut lines, mut proofs) = (String::new(), String::new());
    for (i, entry) in proven.iter().enumerate() {
        if (4..7).contains(&i) {
            continue; // entries 5-7 deleted
        }
        lines.push_str(entry["line"].as_str().unwrap());
        lines.push('\n');
        let mut proof = entry.clone();
        proof.as_object_mut().unwrap().remove("line");
        proofs.push_str(&proof.to_string());
        proofs.push('\n');
    }
    let cut = f.dir.join("cut.jsonl");
    std::fs::write(&cut, &lines).unwrap();
    std::fs::write(with_suffix(&cut, ".checkpoint"), &checkpoint).unwrap();
    std::fs::write(with_suffix(&cut, ".proofs"), &proofs).unwrap();

    let (ok, out) = verify(&f, &cut, &[]).await;
    assert!(
        !ok && out.contains("entry 5 is missing")
            && out.contains("NOT verified")
            && !out.contains("log verified"),
        "{out}"
    );
    let cut_proofs = with_suffix(&cut, ".proofs");
    let (ok, out) = verify(&f, &cut, &["--proofs", &cut_proofs]).await;
    assert!(
        ok && out.starts_with(&format!(
            "subset verified: {} entries each proven in the signed log of {size}",
            size - 3
        )) && out.contains("completeness NOT proven")
            && !out.contains("log verified"),
        "{out}"
    );
    let previous = with_suffix(&log, ".checkpoint");
    let (ok, out) = verify(
        &f,
        &cut,
        &["--proofs", &cut_proofs, "--previous-checkpoint", &previous],
    )
    .await;
    // Without the consistency proof a filtered export cannot be checked
    // against an earlier checkpoint.
    assert!(
        !ok && out.contains("needs its consistency proof") && !out.contains("verified"),
        "{out}"
    );

    // A stale FILE.proofs beside a new export's name: refused, kept as is.
    let fresh = f.dir.join("fresh.jsonl");
    std::fs::write(with_suffix(&fresh, ".proofs"), "stale\n").unwrap();
    let server = format!("https://127.0.0.1:{}", app.addr.port());
    let out = run(
        &[
            "audit",
            "export",
            "--server",
            &server,
            "--token",
            &app.compliance,
            "--ca",
            f.ca.to_str().unwrap(),
            "--out",
            fresh.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        !out.status.success() && text(&out).contains("fresh.jsonl.proofs exists"),
        "{}",
        text(&out)
    );
    assert!(!fresh.exists());
    assert_eq!(
        std::fs::read_to_string(with_suffix(&fresh, ".proofs")).unwrap(),
        "stale\n"
    );
    app.stop().await;
}

/// Lines moved within an exported file (no row touched): the first moved
/// entry is named, with and without the leaves file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_lines_in_an_export_are_named() {
    let app = spawn_app().await;
    make_entries(&app).await;
    let f = files(&app).await;
    let log = export(&app, &f, "audit.jsonl").await;
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.swap(5, 6); // entries 6 and 7
    let moved = f.dir.join("moved.jsonl");
    std::fs::write(&moved, lines.join("\n") + "\n").unwrap();
    std::fs::copy(
        with_suffix(&log, ".checkpoint"),
        with_suffix(&moved, ".checkpoint"),
    )
    .unwrap();
    let (ok, out) = verify(&f, &moved, &[]).await;
    assert!(
        !ok && out.contains("entry 6 is missing (line 6 holds entry 7 instead)"),
        "{out}"
    );
    std::fs::copy(with_suffix(&log, ".leaves"), with_suffix(&moved, ".leaves")).unwrap();
    let (ok, out) = verify(&f, &moved, &[]).await;
    assert!(!ok && out.contains("entry 6 "), "{out}");
    // A line moved far: the last entry put first.
    let mut far: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let last = far.pop().unwrap();
    far.insert(0, last);
    std::fs::write(&moved, far.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&f, &moved, &[]).await;
    assert!(
        !ok && out.contains("entry 1 is missing (line 1 holds entry"),
        "{out}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_export_proves_each_entry_on_its_own() {
    let app = spawn_app().await;
    let (case, _) = app.create_case(None).await;
    make_entries(&app).await;
    for _ in 0..3 {
        app.request(
            Method::GET,
            &format!("/api/v1/cases/{case}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    }
    let f = files(&app).await;
    let log = export_with(&app, &f, "case.jsonl", &["--case-id", &case]).await;
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 4, "case.create and three reads");
    assert!(lines.iter().all(|l| l.contains(&case)));
    assert!(!Path::new(&with_suffix(&log, ".leaves")).exists());
    let proofs = with_suffix(&log, ".proofs");
    let (ok, out) = verify(&f, &log, &["--proofs", &proofs]).await;
    assert!(
        ok && out.starts_with("subset verified: 4 entries each proven in the signed log of ")
            && out.contains("completeness NOT proven")
            && !out.contains("log verified"),
        "{out}"
    );
    // Without --proofs the file is checked as a whole log, which it is not.
    let (ok, out) = verify(&f, &log, &[]).await;
    assert!(
        !ok && out.contains("NOT verified") && !out.contains("log verified"),
        "{out}"
    );
    // An entry edited in the file: its proof no longer leads to the root.
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"allow\"", "\"deny\"");
    let copy = f.dir.join("case-edited.jsonl");
    std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
    for suffix in [".checkpoint", ".proofs"] {
        std::fs::copy(with_suffix(&log, suffix), with_suffix(&copy, suffix)).unwrap();
    }
    let copy_proofs = with_suffix(&copy, ".proofs");
    let (ok, out) = verify(&f, &copy, &["--proofs", &copy_proofs]).await;
    let seq: Value = serde_json::from_str(&lines[2]).unwrap();
    let named = format!("entry {} (line 3) is not in the signed log", seq["seq"]);
    assert!(!ok && out.contains(&named), "{out}");
    // Changed in the database: the gateway's own export proves it no more.
    let db = app.db().await;
    app.lift_append_only_guards(&db).await;
    exec(
        &db,
        &format!(
            "UPDATE audit_log SET reason = 'x' WHERE seq = {}",
            seq["seq"]
        ),
    )
    .await;
    let again = export_with(&app, &f, "case-again.jsonl", &["--case-id", &case]).await;
    let again_proofs = with_suffix(&again, ".proofs");
    let (ok, out) = verify(&f, &again, &["--proofs", &again_proofs]).await;
    assert!(!ok && out.contains(&named), "{out}");
    app.stop().await;
}
/// A case's history checked against a checkpoint kept from an earlier
/// audit: the filtered export saves the consistency proof, and `verify`
/// checks it with the two signed checkpoints; a forged proof, or a
/// "previous" checkpoint newer than the export's, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_export_proves_it_extends_a_previous_checkpoint() {
    let app = spawn_app().await;
    let (case, _) = app.create_case(None).await;
    make_entries(&app).await;
    let f = files(&app).await;
    let first = export_with(&app, &f, "first.jsonl", &["--case-id", &case]).await;
    let previous = with_suffix(&first, ".checkpoint");
    let previous_size = std::fs::read_to_string(&previous)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        app.request(
            Method::GET,
            &format!("/api/v1/cases/{case}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    }
    let extra = [
        "--case-id",
        case.as_str(),
        "--previous-checkpoint",
        previous.as_str(),
    ];
    let log = export_with(&app, &f, "case.jsonl", &extra).await;
    let proofs = with_suffix(&log, ".proofs");
    let (ok, out) = verify(
        &f,
        &log,
        &["--proofs", &proofs, "--previous-checkpoint", &previous],
    )
    .await;
    assert!(
        ok && out.starts_with("subset verified: 4 entries each proven in the signed log of ")
            && out.contains(&format!(
                "extends the previous checkpoint of {previous_size} entries"
            )),
        "{out}"
    );

    // A forged consistency proof.
    let consistency = with_suffix(&log, ".consistency");
    let mut proof: Value =
        serde_json::from_str(&std::fs::read_to_string(&consistency).unwrap()).unwrap();
    let hash = proof["hashes"][0].as_str().unwrap().to_owned();
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    proof["hashes"][0] = Value::String(format!("{flipped}{}", &hash[1..]));
    let forged = f.dir.join("forged.consistency");
    std::fs::write(&forged, proof.to_string()).unwrap();
    let forged = forged.display().to_string();
    let args = [
        "--proofs",
        &proofs,
        "--previous-checkpoint",
        &previous,
        "--consistency",
        &forged,
    ];
    let (ok, out) = verify(&f, &log, &args).await;
    assert!(
        !ok && out.contains(&format!(
            "does not extend the previous checkpoint of {previous_size}"
        )),
        "{out}"
    );
    // The roles swapped: the "previous" checkpoint is the newer one.
    let newer = with_suffix(&log, ".checkpoint");
    let first_proofs = with_suffix(&first, ".proofs");
    let args = [
        "--proofs",
        &first_proofs,
        "--previous-checkpoint",
        &newer,
        "--consistency",
        &consistency,
    ];
    let (ok, out) = verify(&f, &first, &args).await;
    assert!(!ok && out.contains("truncated or rolled back"), "{out}");
    // The whole log is checked against a previous checkpoint by verify.
    let server = format!("https://127.0.0.1:{}", app.addr.port());
    let whole = f.dir.join("whole.jsonl");
    let out = run(
        &[
            "audit",
            "export",
            "--server",
            &server,
            "--token",
            &app.compliance,
            "--ca",
            f.ca.to_str().unwrap(),
            "--out",
            whole.to_str().unwrap(),
            "--previous-checkpoint",
            &previous,
        ],
        &[],
    )
    .await;
    assert!(!out.status.success() && text(&out).contains("is for a filtered export"));
    assert!(!whole.exists());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_is_caught_with_the_previous_checkpoint() {
    let app = spawn_app().await;
    make_entries(&app).await;
    let f = files(&app).await;
    let before = export(&app, &f, "before.jsonl").await;
    let previous = with_suffix(&before, ".checkpoint");
    let size: u64 = std::fs::read_to_string(&previous)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // Someone with the database cuts the last five entries and everything
    // that signed them; the gateway goes on and signs the shorter log.
    let keep = size - 5;
    let nodes = casegate::audit::merkle::stored_nodes(keep);
    let db = app.db().await;
    app.lift_append_only_guards(&db).await;
    exec(
        &db,
        &format!(
            "DELETE FROM audit_log WHERE seq > {keep};
         DELETE FROM audit_tree WHERE pos >= {nodes};
         DELETE FROM audit_checkpoints WHERE tree_size > {keep};"
        ),
    )
    .await;
    let after = export(&app, &f, "after.jsonl").await;
    let (ok, out) = verify(&f, &after, &[]).await;
    assert!(ok, "alone, the cut log is consistent: {out}");
    let (ok, out) = verify(&f, &after, &["--previous-checkpoint", &previous]).await;
    assert!(!ok && out.contains("previous checkpoint"), "{out}");
    // The untouched export still extends its own earlier checkpoint.
    let (ok, out) = verify(&f, &before, &["--previous-checkpoint", &previous]).await;
    assert!(ok, "{out}");
    app.stop().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_100000_entries_verifies() {
    use casegate::audit::AuditEntry;
    use casegate::audit::merkle::{CompactTree, leaf_hash};
    use casegate::audit::note::{Checkpoint, NoteSigner};
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let signer = NoteSigner::new("bench.example/casegate-audit", key).unwrap();
    let log = dir.path().join("big.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    let mut tree = CompactTree::new();
    let n = 100_000u64;
    for seq in 1..=n {
        let line = AuditEntry {
            action: "download.sealed".into(),
            actor: format!("centre_{}", seq % 17),
            case_id: Some(format!("case_{}", seq % 101)),
            outcome: "allow".into(),
            role: "centre".into(),
            seq: seq as i64,
            time: "2026-11-29T10:00:00Z".into(),
            ..Default::default()
        }
        .to_json_line();
        tree.push(leaf_hash(line.as_bytes()));
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    let cp = Checkpoint {
        origin: signer.name().into(),
        size: n,
        root: tree.root(),
    };
    std::fs::write(with_suffix(&log, ".checkpoint"), signer.sign(&cp.text())).unwrap();
    let vkey = dir.path().join("vkey");
    std::fs::write(&vkey, signer.verifier_key()).unwrap();
    let f = Files {
        dir: dir.path().into(),
        ca: PathBuf::new(),
        vkey,
    };
    let (ok, out) = verify(&f, &log, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("log verified: 100000 entries, root "),
        "{out}"
    );
}
