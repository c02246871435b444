//! The sealed download's `ETag` is the object digest of docs/format.md
//! (header, then each chunk's nonce and tag), recomputed here apart from
//! the gateway: whether the file arrived in one PATCH, in many of odd
//! sizes, or across a restart that lost the running hashes (completion
//! then re-reads the object), and for an empty file (its header and one
//! empty last chunk, completed when it is created). The grant lists the same value, and the same
//! plaintext uploaded twice has two different objects and validators.

use crate::common::spawn_app;
use crate::fetch_harness::{Centre, entry_for};
use crate::tus::{object_digest_hex, pattern, sha256_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealed_etag_is_the_object_digest_however_the_upload_ran() {
    let mut app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let once = pattern(300_000, 7);
    let pieces = pattern(300_001, 8);
    let restarted = pattern(200_000, 9);
    app.upload(&patient, "once.pdf", None, &once, once.len())
        .await;
    app.upload(&patient, "pieces.pdf", None, &pieces, 65_537)
        .await;
    app.upload(&patient, "again.pdf", None, &once, 99_999).await;
    let empty: Vec<u8> = Vec::new();
    app.upload(&patient, "empty.pdf", None, &empty, 1).await;
    let path = app
        .tus_create(
            &patient,
            restarted.len() as u64,
            &crate::tus::meta("restarted.pdf", None),
        )
        .await;
    let resp = app
        .tus_patch(&patient, &path, 0, restarted[..100_000].to_vec())
        .await;
    assert_eq!(resp.status(), 204);
    app.restart().await;
    let resp = app
        .tus_patch(&patient, &path, 100_000, restarted[100_000..].to_vec())
        .await;
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);

    let centre = Centre::with_grant(&app, &case, 5).await;
    let manifest = centre.manifest(&app).await;
    let mut etags = Vec::new();
    for data in [&once, &pieces, &restarted, &empty] {
        let entry = entry_for(&manifest, data);
        assert_eq!(entry["sha256"], sha256_hex(data));
        let (object, _) = centre
            .sealed(&app, entry["file_id"].as_str().unwrap())
            .await;
        assert_eq!(entry["sealed_etag"], object_digest_hex(&object));
        etags.push(entry["sealed_etag"].as_str().unwrap().to_owned());
    }
    let files = manifest["files"].as_array().unwrap();
    let twins: Vec<&str> = files
        .iter()
        .filter(|f| f["sha256"] == sha256_hex(&once))
        .map(|f| f["sealed_etag"].as_str().unwrap())
        .collect();
    assert_eq!(twins.len(), 2);
    assert_ne!(twins[0], twins[1], "one plaintext, two objects");
    app.stop().await;
}
