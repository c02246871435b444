//! The key hierarchy end to end: master key rotation while serving (case
//! keys rewrapped, object data untouched), retiring versions, and
//! crypto-shredding — a copy of a deleted case's ciphertext taken before the
//! deletion cannot be decrypted with anything the gateway still holds.

use casegate::crypto::format::{Encryptor, decrypt_object};
use casegate::crypto::{FileKey, KeyEncryptionKey, Keyring, LocalMasterKeys, WrappedKey};
use casegate::ids::{CaseId, FileId};
use casegate::manifest::{FILE_META, FileMeta};
use casegate::rotation::{self, RotateStep};
use casegate::store::{FsStore, object_key};
use reqwest::Method;
use serde_json::Value;

use crate::common::{TestApp, spawn_app};

async fn wrapped_case_key(app: &TestApp, case_id: &str) -> Option<WrappedKey> {
    let row: (Option<Vec<u8>>, Option<i64>) =
        sqlx::query_as("SELECT wrapped_key, kek_version FROM cases WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&app.db().await)
            .await
            .unwrap();
    match row {
        (Some(bytes), Some(v)) => Some(WrappedKey {
            kek_version: v as u32,
            bytes,
        }),
        _ => None,
    }
}

fn master(app: &TestApp) -> LocalMasterKeys {
    LocalMasterKeys::load(&app.config.keys.master_key_file).unwrap()
}

fn keyring(keys: LocalMasterKeys) -> Keyring {
    Keyring::new(std::sync::Arc::new(keys))
}

/// Stores one encrypted file in a case the way the upload path does:
/// a fresh file key wrapped under the case key, sealed metadata, ciphertext
/// in the object store. Returns (file_id, object bytes).
async fn store_file(app: &TestApp, case: &str, plaintext: &[u8]) -> (String, Vec<u8>) {
    let case_id = CaseId::parse(case).unwrap();
    let case_key = keyring(master(app))
        .case_key(&case_id, &wrapped_case_key(app, case).await.unwrap())
        .unwrap();
    let file_id = FileId::generate();
    let file_key = FileKey::generate();
    let mut object = Vec::new();
    let mut enc = Encryptor::new(&file_key, case_id.as_str(), file_id.as_str()).unwrap();
    enc.update(plaintext, &mut object);
    enc.finish(&mut object).unwrap();
    let meta = FileMeta {
        filename: "pathology-report.pdf".into(),
        category: "pathology_report".into(),
        filetype: Some("application/pdf".into()),
        sha256: None,
        dicom: None,
        translation_of: None,
        language: None,
    };
    let sealed_meta = case_key.seal_field(
        &case_id,
        FILE_META,
        file_id.as_str(),
        &serde_json::to_vec(&meta).unwrap(),
    );
    let pool = app.db().await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO files (file_id, case_id, state, size, created_at, meta_sealed, key_id, wrapped_key)
         VALUES ($1, $2, 'complete', $3, '2026-11-25T00:00:00Z', $4, $5, $6)",
    )
    .bind(file_id.as_str())
    .bind(case)
    .bind(plaintext.len() as i64)
    .bind(&sealed_meta)
    .bind(file_key.id().as_slice())
    .bind(file_key.wrap(&case_key, &case_id, &file_id))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let store = FsStore::open(&app.config.fs_root()).unwrap();
    store
        .put(&object_key(&case_id, &file_id), &object)
        .await
        .unwrap();
    (file_id.to_string(), object)
}

async fn manifest(app: &TestApp, case: &str) -> Value {
    let resp = app
        .request(
            Method::GET,
            &format!("/api/v1/cases/{case}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn tree_digest(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_case_keys_while_serving_without_touching_objects() {
    let app = spawn_app().await;
    let mut cases = Vec::new();
    for i in 0..3 {
        cases.push(app.create_case(Some(&format!("ref-{i}"))).await.0);
    }
    let (file_id, _) = store_file(&app, &cases[0], b"scan bytes").await;
    let deleted = app.create_case(None).await.0;
    app.request(
        Method::DELETE,
        &format!("/api/v1/cases/{deleted}"),
        Some(&app.coordinator),
        None,
    )
    .await;
    let objects_before = tree_digest(&app.config.fs_root());

    let report = rotation::rotate(&app.config, RotateStep::Whole, "test")
        .await
        .unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(report.rewrapped, 3);
    for case in &cases {
        assert_eq!(wrapped_case_key(&app, case).await.unwrap().kek_version, 2);
    }
    assert_eq!(
        tree_digest(&app.config.fs_root()),
        objects_before,
        "object data is never rewritten"
    );

    // The running gateway picks up the new version: old cases still open,
    // file metadata still decrypts, new cases are wrapped under v2.
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(manifest(&app, case).await["reference"], format!("ref-{i}"));
    }
    assert_eq!(
        manifest(&app, &cases[0]).await["files"][0]["file_id"],
        file_id.as_str()
    );
    assert_eq!(
        manifest(&app, &cases[0]).await["files"][0]["filename"],
        "pathology-report.pdf"
    );
    let fresh = app.create_case(None).await.0;
    assert_eq!(wrapped_case_key(&app, &fresh).await.unwrap().kek_version, 2);

    // Resuming a finished rotation rewraps nothing.
    let again = rotation::rotate(&app.config, RotateStep::Resume, "test")
        .await
        .unwrap();
    assert_eq!((again.version, again.rewrapped), (2, 0));

    // Retiring: the current version never; an old one only once unused.
    assert!(rotation::retire(&app.config, 2, "test").await.is_err());
    let mut keys = master(&app);
    keys.add_version(); // v3 exists but nothing is rewrapped yet
    casegate::fsutil::replace_secret_file(
        &app.config.keys.master_key_file,
        keys.serialize().as_bytes(),
    )
    .unwrap();
    let refused = rotation::retire(&app.config, 2, "test").await.unwrap_err();
    assert!(refused.to_string().contains("still wraps"), "{refused}");
    rotation::rotate(&app.config, RotateStep::Activate, "test")
        .await
        .unwrap();
    rotation::retire(&app.config, 1, "test").await.unwrap();
    rotation::retire(&app.config, 2, "test").await.unwrap();
    assert_eq!(master(&app).versions(), vec![3]);
    assert_eq!(manifest(&app, &cases[1]).await["reference"], "ref-1");
    let status = rotation::status(&app.config).await.unwrap();
    assert_eq!((status.versions, status.active), (vec![(3, 4)], 3));

    let audit = app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "keys.rotate"));
    assert!(audit.iter().any(|e| e["action"] == "keys.retire"));
    app.stop().await;
}

/// Several gateways, each with its own copy of the key file, share one
/// database: `--stage` adds a version they do not wrap under yet, so a
/// gateway whose copy lacks it keeps working; `--activate` makes every
/// gateway wrap under it. A gateway activated before its copy arrived
/// refuses to create cases (503) rather than wrap under an old version,
/// and recovers as soon as the copy is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_rotation_across_gateways_with_their_own_key_files() {
    let app = spawn_app().await;
    let before = app.create_case(Some("before")).await.0;
    // The operator's copy of the key file, where rotation runs.
    let operator_keys = app.dir.path().join("operator-master.key");
    std::fs::copy(&app.config.keys.master_key_file, &operator_keys).unwrap();
    let mut operator = app.config.clone();
    operator.keys.master_key_file = operator_keys.clone();

    let staged = rotation::rotate(&operator, RotateStep::Stage, "test")
        .await
        .unwrap();
    assert_eq!((staged.version, staged.rewrapped), (2, 0));
    let status = rotation::status(&operator).await.unwrap();
    assert_eq!((status.versions, status.active), (vec![(1, 1), (2, 0)], 1));
    // The gateway's own copy lacks v2: it keeps wrapping under v1.
    let during = app.create_case(None).await.0;
    assert_eq!(
        wrapped_case_key(&app, &during).await.unwrap().kek_version,
        1
    );
    let err = rotation::rotate(&operator, RotateStep::Stage, "test").await;
    assert!(err.is_ok(), "staging twice adds another version");
    let status = rotation::status(&operator).await.unwrap();
    assert_eq!(status.active, 1);

    // Activated before the gateway's copy has v3: it refuses new cases.
    let active = rotation::rotate(&operator, RotateStep::Activate, "test")
        .await
        .unwrap();
    assert_eq!((active.version, active.rewrapped), (3, 2));
    let resp = app
        .request(
            Method::POST,
            "/api/v1/cases",
            Some(&app.coordinator),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(resp.status(), 503);
    // The copy arrives; the gateway reloads it and goes on under v3.
    std::fs::copy(&operator_keys, &app.config.keys.master_key_file).unwrap();
    let after = app.create_case(None).await.0;
    assert_eq!(wrapped_case_key(&app, &after).await.unwrap().kek_version, 3);
    assert_eq!(manifest(&app, &before).await["reference"], "before");
    let refused = rotation::rotate(&operator, RotateStep::Activate, "test")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("no staged"), "{refused}");
    assert!(rotation::retire(&operator, 3, "test").await.is_err());
    rotation::retire(&operator, 1, "test").await.unwrap();

    let actions: Vec<String> = app
        .audit()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for action in ["keys.stage", "keys.activate", "keys.rotate", "keys.retire"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn shredded_ciphertext_cannot_be_decrypted_with_anything_left() {
    let app = spawn_app().await;
    let case = app.create_case(Some("to shred")).await.0;
    let keep = app.create_case(Some("to keep")).await.0;
    let plaintext = b"PATHOLOGY: adenocarcinoma, HER2 3+ -- marker 51c0ffee".repeat(3000);
    let (file_id, object) = store_file(&app, &case, &plaintext).await;
    store_file(&app, &keep, b"another patient's file").await;

    // Before deletion, the chain master → case → file key decrypts the copy.
    let case_id = CaseId::parse(&case).unwrap();
    let fid = FileId::parse(&file_id).unwrap();
    let case_key = keyring(master(&app))
        .case_key(&case_id, &wrapped_case_key(&app, &case).await.unwrap())
        .unwrap();
    let (key_id, wrapped): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT key_id, wrapped_key FROM files WHERE file_id = $1")
            .bind(&file_id)
            .fetch_one(&app.db().await)
            .await
            .unwrap();
    let file_key = keyring(master(&app))
        .file_key(
            &case_key,
            &case_id,
            &fid,
            key_id.clone().try_into().unwrap(),
            &wrapped,
        )
        .unwrap();
    assert_eq!(
        decrypt_object(&file_key, &case, &file_id, &object).unwrap(),
        plaintext
    );
    drop((case_key, file_key));

    let resp = app
        .request(
            Method::DELETE,
            &format!("/api/v1/cases/{case}"),
            Some(&app.coordinator),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert!(
        !app.config
            .fs_root()
            .join(object_key(&case_id, &fid))
            .exists(),
        "objects deleted"
    );
    assert!(
        wrapped_case_key(&app, &case).await.is_none(),
        "case key destroyed"
    );

    // Everything the gateway still holds: every master key version, every
    // wrapped case key, every wrapped file key. None opens the copy.
    let keys = master(&app);
    let current_version = keys.current_version();
    let keys = keyring(keys);
    let pool = app.db().await;
    let case_rows: Vec<(String, Option<Vec<u8>>, Option<i64>)> =
        sqlx::query_as("SELECT case_id, wrapped_key, kek_version FROM cases")
            .fetch_all(&pool)
            .await
            .unwrap();
    let file_rows: Vec<(String, String, Option<Vec<u8>>, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT file_id, case_id, key_id, wrapped_key FROM files")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        file_rows.iter().all(|(_, c, _, _)| c != &case),
        "the shredded case's file keys are gone"
    );
    let mut case_keys = Vec::new();
    for (owner, bytes, version) in &case_rows {
        let (Some(bytes), Some(version)) = (bytes, version) else {
            continue;
        };
        let wrapped = WrappedKey {
            kek_version: *version as u32,
            bytes: bytes.clone(),
        };
        for as_case in [owner.as_str(), case.as_str()] {
            if let Ok(k) = keys.case_key(&CaseId::parse(as_case).unwrap(), &wrapped) {
                case_keys.push((as_case.to_owned(), k));
            }
        }
    }
    assert!(
        case_keys.iter().all(|(c, _)| c != &case),
        "no master key version unwraps anything as the shredded case"
    );
    for (_, case_key) in &case_keys {
        for (other_file, owner, key_id, wrapped) in &file_rows {
            let (Some(key_id), Some(wrapped)) = (key_id, wrapped) else {
                continue;
            };
            for (as_case, as_file) in [
                (owner.as_str(), other_file.as_str()),
                (case.as_str(), file_id.as_str()),
            ] {
                let Ok(k) = keys.file_key(
                    case_key,
                    &CaseId::parse(as_case).unwrap(),
                    &FileId::parse(as_file).unwrap(),
                    key_id.clone().try_into().unwrap(),
                    wrapped,
                ) else {
                    continue;
                };
                assert!(decrypt_object(&k, &case, &file_id, &object).is_err());
            }
        }
    }
    assert_eq!(current_version, 1);
    // The audit trail of the shredded case stays.
    let audit = app.audit().await;
    assert!(
        audit
            .iter()
            .filter(|e| e["case_id"] == case.as_str())
            .count()
            >= 2
    );
    app.stop().await;
}
