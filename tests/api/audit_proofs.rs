//! The audit routes' proofs and checkpoints through the real server:
//! inclusion and consistency proofs checked with an RFC 9162
//! implementation written here (not the gateway's tree code), malformed
//! and out-of-range parameters refused, checkpoints made in the
//! background and copied, and a signing key others can read refused.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::Value;

use crate::audit_log::make_entries;
use crate::common::{spawn_app, spawn_app_with};

// ---- An independent RFC 9162 §2.1 implementation (ring's SHA-256 only).

type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().try_into().unwrap()
}

fn leaf(line: &[u8]) -> H {
    sha(&[&[0], line])
}

fn node(l: &H, r: &H) -> H {
    sha(&[&[1], l, r])
}

/// MTH(D[n]) by its recursive definition (§2.1.1).
fn mth(leaves: &[H]) -> H {
    match leaves.len() {
        0 => sha(&[]),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// §2.1.3.2.
fn verify_inclusion(index: u64, size: u64, hash: H, proof: &[H], root: H) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, hash);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            r = node(p, &r);
            while f % 2 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == root
}

/// §2.1.4.2 (first < second).
fn verify_consistency(first: u64, second: u64, r1: H, r2: H, proof: &[H]) -> bool {
    let mut path = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, r1);
    }
    if path.is_empty() {
        return false;
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f % 2 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f % 2 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while f % 2 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == r1 && sr == r2 && s == 0
}

fn hashes(v: &Value) -> Vec<H> {
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            casegate::hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}
#[tokio::test]
async fn proofs_verify_with_an_independent_rfc9162_implementation() {
    let app = spawn_app().await;
    make_entries(&app).await;
    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit/checkpoint",
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let note = resp.text().await.unwrap();
    let mut lines = note.lines();
    assert_eq!(lines.next(), Some("localhost/casegate-audit"));
    let size: u64 = lines.next().unwrap().parse().unwrap();
    let root: H = STANDARD
        .decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert!(
        note.contains("\n\n\u{2014} localhost/casegate-audit "),
        "{note}"
    );
    // The leaves are exactly the export's lines.
    let entries: Vec<String> = app
        .request(Method::GET, "/api/v1/audit", Some(&app.compliance), None)
        .await
        .text()
        .await
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let leaves: Vec<H> = entries.iter().map(|l| leaf(l.as_bytes())).collect();
    assert!(leaves.len() as u64 >= size);
    assert_eq!(
        mth(&leaves[..size as usize]),
        root,
        "checkpoint root over the export's lines"
    );
    for index in [0, 1, size / 2, size - 1] {
        let v = app
            .get_json(
                &format!("/api/v1/audit/proof?leaf_index={index}&tree_size={size}"),
                &app.compliance,
            )
            .await;
        assert_eq!(
            (v["leaf_index"].as_u64(), v["tree_size"].as_u64()),
            (Some(index), Some(size))
        );
        let proof = hashes(&v);
        assert!(
            verify_inclusion(index, size, leaves[index as usize], &proof, root),
            "{index}"
        );
        assert!(!verify_inclusion(
            index,
            size,
            leaf(b"forged"),
            &proof,
            root
        ));
    }
    for first in [1, 2, 3, size / 2, size - 1] {
        let v = app
            .get_json(
                &format!("/api/v1/audit/proof?first={first}&second={size}"),
                &app.compliance,
            )
            .await;
        assert_eq!(
            (v["first"].as_u64(), v["second"].as_u64()),
            (Some(first), Some(size))
        );
        let r1 = mth(&leaves[..first as usize]);
        assert!(
            verify_consistency(first, size, r1, root, &hashes(&v)),
            "{first}"
        );
        assert!(!verify_consistency(
            first,
            size,
            leaf(b"other"),
            root,
            &hashes(&v)
        ));
    }
    for bad in [
        format!("leaf_index={size}&tree_size={size}"),
        "leaf_index=0&tree_size=0".into(),
        "leaf_index=0&tree_size=99999999".into(),
        "first=0&second=2".into(),
        "first=3&second=2".into(),
        "first=-1&second=2".into(),
        "leaf_index=abc&tree_size=2".into(),
        "leaf_index=1&second=2".into(),
        "leaf_index=0&tree_size=2&first=1&second=2".into(),
        "leaf_index=99999999999999999999999&tree_size=2".into(),
        "".into(),
        "bogus=1".into(),
    ] {
        let resp = app
            .request(
                Method::GET,
                &format!("/api/v1/audit/proof?{bad}"),
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
        let problem: Value = resp.json().await.unwrap();
        assert!(problem["code"].is_string(), "{bad}");
    }
    for bad in [
        "proofs=1",
        "proofs=1&tree_size=0",
        "proofs=1&tree_size=x",
        "proofs=1&tree_size=2&format=csv",
        "proofs=2&tree_size=2",
        "tree_size=2",
    ] {
        let resp = app
            .request(
                Method::GET,
                &format!("/api/v1/audit?{bad}"),
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    // Only compliance reads proofs.
    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit/proof?first=1&second=2",
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 403);
    app.stop().await;
}
#[tokio::test]
async fn checkpoints_are_made_in_the_background_and_copied() {
    let copies = tempfile::tempdir().unwrap();
    let copy_dir = copies.path().join("checkpoints");
    let dir = copy_dir.display().to_string();
    let app = spawn_app_with(|c| {
        c.audit.checkpoint_interval_secs = 1;
        c.audit.checkpoint_copy = Some(dir);
    })
    .await;
    make_entries(&app).await;
    let db = app.db().await;
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    let mut signed = 0i64;
    for _ in 0..100 {
        signed = sqlx::query_scalar("SELECT COALESCE(MAX(tree_size), 0) FROM audit_checkpoints")
            .fetch_one(&db)
            .await
            .unwrap();
        if signed >= head {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        signed >= head,
        "no background checkpoint covers {head} entries"
    );
    let note: String =
        sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE tree_size = $1")
            .bind(signed)
            .fetch_one(&db)
            .await
            .unwrap();
    // The copy is written after the checkpoint is stored: wait for it.
    let copy_path = copy_dir.join(format!("{signed}.checkpoint"));
    for _ in 0..100 {
        if copy_path.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let copy = std::fs::read_to_string(&copy_path).unwrap();
    assert_eq!(copy, note);
    let alerts = app.get_json("/api/v1/audit/alerts", &app.compliance).await;
    assert_eq!(alerts["counts"], serde_json::json!({}), "{alerts}");
    app.stop().await;
}
/// A monitor polling the checkpoint does not have one signed and copied
/// per poll (each poll is itself an entry, so the tree always grows): with
/// nothing but polls since, the last checkpoint is served; after a real
/// action, the next poll gets a new one that covers it.
#[tokio::test]
async fn polling_the_checkpoint_signs_no_checkpoint_per_poll() {
    let copies = tempfile::tempdir().unwrap();
    let copy_dir = copies.path().join("checkpoints");
    let dir = copy_dir.display().to_string();
    let app = spawn_app_with(|c| {
        c.audit.checkpoint_interval_secs = 3600;
        c.audit.checkpoint_copy = Some(dir);
    })
    .await;
    make_entries(&app).await;
    let poll = || async {
        let resp = app
            .request(
                Method::GET,
                "/api/v1/audit/checkpoint",
                Some(&app.compliance),
                None,
            )
            .await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    };
    let first = poll().await;
    for _ in 0..20 {
        assert_eq!(poll().await, first);
    }
    let copies_now = std::fs::read_dir(&copy_dir).unwrap().count();
    let db = app.db().await;
    let signed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints")
        .fetch_one(&db)
        .await
        .unwrap();
    app.create_case(None).await;
    let after = poll().await;
    assert_ne!(after, first, "a real action since: a new checkpoint");
    let size: u64 = after.lines().nth(1).unwrap().parse().unwrap();
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(size as i64, head, "it covers the poll's own entry");
    let signed_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(signed_after, signed + 1);
    assert_eq!(
        std::fs::read_dir(&copy_dir).unwrap().count(),
        copies_now + 1
    );
    app.stop().await;
}
/// Copy storage that hangs (every `<size>.checkpoint` a FIFO nobody
/// writes: the copy blocks reading it back) neither holds a request nor the
/// shutdown: the copy gives up, an alert is written, the checkpoint served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_checkpoint_copy_holds_neither_requests_nor_shutdown() {
    let copies = tempfile::tempdir().unwrap();
    let copy_dir = copies.path().join("checkpoints");
    std::fs::create_dir(&copy_dir).unwrap();
    let fifos: Vec<PathBuf> = (1..400)
        .map(|n| copy_dir.join(format!("{n}.checkpoint")))
        .collect();
    let made = std::process::Command::new("mkfifo")
        .args(&fifos)
        .status()
        .unwrap();
    assert!(made.success());
    let dir = copy_dir.display().to_string();
    let app = spawn_app_with(|c| {
        c.audit.checkpoint_interval_secs = 3600;
        c.audit.checkpoint_copy = Some(dir);
    })
    .await;
    let guard = std::time::Duration::from_secs(120); // a hang, not a speed
    let resp = tokio::time::timeout(
        guard,
        app.request(
            Method::GET,
            "/api/v1/audit/checkpoint",
            Some(&app.compliance),
            None,
        ),
    )
    .await
    .expect("the checkpoint route hangs on a stuck copy");
    assert_eq!(resp.status(), 200);
    let alerts = app.get_json("/api/v1/audit/alerts", &app.compliance).await;
    assert!(
        alerts["counts"]["alert.checkpoint_copy"]
            .as_i64()
            .unwrap_or(0)
            >= 1
            && alerts.to_string().contains("did not finish within"),
        "{alerts}"
    );
    tokio::time::timeout(guard, app.stop())
        .await
        .expect("shutdown hangs on a stuck copy");
    // Let the copies' abandoned threads finish: a writer that opens and
    // closes each FIFO ends the blocked reads.
    for fifo in &fifos {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000) // O_NONBLOCK: fails at once where nobody reads
            .open(fifo);
    }
}
#[tokio::test]
async fn a_checkpoint_copy_that_fails_is_an_alert_and_the_checkpoint_still_served() {
    let copies = tempfile::tempdir().unwrap();
    let not_a_dir = copies.path().join("occupied");
    std::fs::write(&not_a_dir, "a file where the copies should go").unwrap();
    let target = not_a_dir.display().to_string();
    let app = spawn_app_with(|c| c.audit.checkpoint_copy = Some(target)).await;
    make_entries(&app).await;
    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit/checkpoint",
            Some(&app.compliance),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let alerts = app.get_json("/api/v1/audit/alerts", &app.compliance).await;
    assert!(
        alerts["counts"]["alert.checkpoint_copy"].as_i64().unwrap() >= 1,
        "{alerts}"
    );
    let latest = &alerts["recent"][0];
    assert_eq!(latest["action"], "alert.checkpoint_copy");
    assert_eq!(latest["outcome"], "error");
    assert_eq!(latest["actor"], "system:checkpoints");
    assert!(
        latest["reason"].as_str().unwrap().contains("not copied"),
        "{latest}"
    );
    let resp = app
        .request(
            Method::GET,
            "/api/v1/audit/alerts",
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 403);
    app.stop().await;
}

async fn checkpoint(app: &crate::common::TestApp) -> reqwest::Response {
    app.request(
        Method::GET,
        "/api/v1/audit/checkpoint",
        Some(&app.compliance),
        None,
    )
    .await
}

#[tokio::test]
async fn the_gateway_signs_no_checkpoint_over_a_rewritten_or_cut_history() {
    let app = spawn_app().await;
    make_entries(&app).await;
    assert_eq!(checkpoint(&app).await.status(), 200);
    let db = app.db().await;
    // The tree rewritten in place (as it would be, recomputed, to hide
    // a changed entry).
    app.lift_append_only_guards(&db).await;
    sqlx::query("UPDATE audit_tree SET hash = $1")
        .bind(vec![0u8; 32])
        .execute(&db)
        .await
        .unwrap();
    let resp = checkpoint(&app).await;
    assert_eq!(resp.status(), 503);
    let alerts = app.get_json("/api/v1/audit/alerts", &app.compliance).await;
    assert!(
        alerts["counts"]["alert.history_rewritten"]
            .as_i64()
            .unwrap()
            >= 1,
        "{alerts}"
    );
    let reason = alerts["recent"][0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("does not extend the checkpoint"),
        "{reason}"
    );
    // The stored checkpoints' roots edited to match the rewritten tree: the
    // rows no longer match what the key signed, so still nothing is signed.
    let sizes: Vec<i64> = sqlx::query_scalar("SELECT tree_size FROM audit_checkpoints")
        .fetch_all(&db)
        .await
        .unwrap();
    for size in sizes {
        let zeroed =
            casegate::audit::merkle::root(size as u64, &mut |_| Ok::<_, ()>([0u8; 32])).unwrap();
        sqlx::query("UPDATE audit_checkpoints SET root = $1 WHERE tree_size = $2")
            .bind(zeroed.to_vec())
            .bind(size)
            .execute(&db)
            .await
            .unwrap();
    }
    assert_eq!(checkpoint(&app).await.status(), 503);
    app.stop().await;

    // Entries and tree cut back, the checkpoints left in place.
    let app = spawn_app().await;
    make_entries(&app).await;
    assert_eq!(checkpoint(&app).await.status(), 200);
    let db = app.db().await;
    let keep = 3u64;
    let nodes = casegate::audit::merkle::stored_nodes(keep);
    app.lift_append_only_guards(&db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DELETE FROM audit_log WHERE seq > {keep}; DELETE FROM audit_tree WHERE pos >= {nodes};"
    )))
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(checkpoint(&app).await.status(), 503);
    let alerts = app.get_json("/api/v1/audit/alerts", &app.compliance).await;
    assert!(
        alerts["counts"]["alert.history_rewritten"]
            .as_i64()
            .unwrap()
            >= 1,
        "{alerts}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_readable_signing_key_or_an_s3_copy_refuses_start() {
    let app = spawn_app().await;
    let config = app.config.clone();
    let dir = app.stop().await;
    let key = dir.path().join("data/audit-signing.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = casegate::Application::build(config.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("audit-signing.key") && refused.contains("chmod 600"),
        "{refused}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut s3 = config;
    s3.audit.checkpoint_copy = Some("s3://bucket/prefix".into());
    let refused = casegate::Application::build(s3)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("audit.checkpoint_copy") && refused.contains("storage.s3"),
        "an s3:// copy needs storage.s3's endpoint and keys: {refused}"
    );
}
