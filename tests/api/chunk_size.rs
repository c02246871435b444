//! Downloads read the chunk size from the stored object, not from the
//! writer's default: a file whose object was written with 16 KiB chunks is
//! served whole, by a Range across chunk boundaries and sealed (with the
//! listed `sealed_size`), and `casegate fetch` decrypts it. A stored object
//! whose header names another key, or disagrees with the file's record,
//! is refused before a use is counted.

use casegate::crypto::format::{DEFAULT_CHUNK_SIZE, Encryptor, Layout, ObjectHeader};
use casegate::crypto::{FileKey, Keyring, LocalMasterKeys, WrappedKey};
use casegate::ids::{CaseId, FileId};
use casegate::store::object_key;

use crate::common::TestApp;
use crate::common::spawn_app;
use crate::fetch_harness::Centre;
use crate::tus::{pattern, sha256_hex};

const SMALL_CHUNK: u32 = 16 * 1024;

/// The file key of `file_id`, reached as the gateway reaches it: master
/// key → case key → file key.
async fn file_key(app: &TestApp, case: &CaseId, file_id: &FileId) -> FileKey {
    let pool = app.db().await;
    let (case_wrapped, version): (Vec<u8>, i64) =
        sqlx::query_as("SELECT wrapped_key, kek_version FROM cases WHERE case_id = $1")
            .bind(case.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
    let (key_id, file_wrapped): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT key_id, wrapped_key FROM files WHERE file_id = $1")
            .bind(file_id.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
    let master = LocalMasterKeys::load(&app.config.keys.master_key_file).unwrap();
    let keyring = Keyring::new(std::sync::Arc::new(master));
    let wrapped = WrappedKey {
        kek_version: version as u32,
        bytes: case_wrapped,
    };
    let case_key = keyring.case_key(case, &wrapped).unwrap();
    keyring
        .file_key(
            &case_key,
            case,
            file_id,
            key_id.try_into().unwrap(),
            &file_wrapped,
        )
        .unwrap()
}

/// `plain` encrypted for `file_id` under `key` with `header`.
fn encrypt(
    key: &FileKey,
    header: ObjectHeader,
    case: &CaseId,
    file_id: &FileId,
    plain: &[u8],
) -> Vec<u8> {
    let mut enc = Encryptor::with_header(key, header, case.as_str(), file_id.as_str()).unwrap();
    let mut object = Vec::new();
    enc.update(plain, &mut object);
    enc.finish(&mut object).unwrap();
    object
}

/// Replaces the stored object of `file_id` (fs store) and, when given, the
/// chunk size and object SHA-256 its record holds.
async fn replace_object(
    app: &TestApp,
    case: &CaseId,
    file_id: &FileId,
    object: &[u8],
    chunk_size: Option<u32>,
) {
    let path = app.config.fs_root().join(object_key(case, file_id));
    std::fs::write(&path, object).unwrap();
    if let Some(chunk_size) = chunk_size {
        let done =
            sqlx::query("UPDATE files SET chunk_size = $1, object_sha256 = $2 WHERE file_id = $3")
                .bind(i64::from(chunk_size))
                .bind(sha256_hex(object))
                .bind(file_id.as_str())
                .execute(&app.db().await)
                .await
                .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
}

/// One uploaded file of a fresh case: (case, file id, plaintext).
async fn uploaded(app: &TestApp, len: usize, seed: u64) -> (CaseId, FileId, Vec<u8>) {
    let (case, patient) = app.create_case(None).await;
    let data = pattern(len, seed);
    app.upload(&patient, "scan.bin", Some("other"), &data, 40_000)
        .await;
    let m = app.patient_manifest(&patient).await;
    let file_id = m["files"][0]["file_id"].as_str().unwrap();
    (
        CaseId::parse(&case).unwrap(),
        FileId::parse(file_id).unwrap(),
        data,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_with_its_own_chunk_size_downloads_in_every_form() {
    let app = spawn_app().await;
    let (case, file_id, data) = uploaded(&app, 100_000, 91).await;
    let key = file_key(&app, &case, &file_id).await;
    let header = ObjectHeader {
        chunk_size: SMALL_CHUNK,
        key_id: *key.id(),
    };
    let object = encrypt(&key, header, &case, &file_id, &data);
    let sealed_len = object.len() as u64;
    assert_eq!(sealed_len, Layout::new(SMALL_CHUNK).object_len(100_000));
    assert_ne!(
        sealed_len,
        Layout::new(DEFAULT_CHUNK_SIZE).object_len(100_000),
        "the test needs lengths that tell the chunk sizes apart"
    );
    replace_object(&app, &case, &file_id, &object, Some(SMALL_CHUNK)).await;

    let centre = Centre::with_grant(&app, case.as_str(), 5).await;
    let listed = centre.manifest(&app).await;
    let entry = &listed["files"][0];
    assert_eq!(entry["file_id"], file_id.as_str());
    assert_eq!(entry["size"], 100_000);
    assert_eq!(entry["sealed_size"], sealed_len);

    let url = format!(
        "https://127.0.0.1:{}/api/v1/grant/files/{file_id}",
        app.centre_addr.port()
    );
    let get = |path: String| centre.client.get(path).bearer_auth(&centre.token);

    // Plaintext, whole.
    let resp = get(url.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "100000");
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());

    // Plaintext, a Range over three 16 KiB chunk boundaries.
    let resp = get(url.clone())
        .header("Range", "bytes=16380-49160")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 16380-49160/100000");
    assert!(resp.bytes().await.unwrap().as_ref() == &data[16380..=49160]);

    // Sealed: the object as stored, its length the listed one.
    let resp = get(format!("{url}/sealed")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        sealed_len.to_string().as_str()
    );
    assert_eq!(
        resp.headers()["etag"],
        format!("\"{}\"", sha256_hex(&object)).as_str()
    );
    assert!(resp.bytes().await.unwrap().as_ref() == object.as_slice());
    // A sealed range reaching the end: Content-Range names the same length.
    let resp = get(format!("{url}/sealed"))
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes {}-{}/{sealed_len}", sealed_len - 100, sealed_len - 1).as_str()
    );

    // fetch opens the sealed key (bound to this header) and decrypts.
    let out = app.dir.path().join("received");
    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    assert!(std::fs::read(out.join("other/scan.bin")).unwrap() == data);
    app.stop().await;
}

#[tokio::test]
async fn a_stored_header_that_does_not_fit_the_file_is_refused_and_costs_nothing() {
    let app = spawn_app().await;
    let (case, file_id, data) = uploaded(&app, 50_000, 92).await;
    let centre = Centre::with_grant(&app, case.as_str(), 1).await;
    let url = format!(
        "https://127.0.0.1:{}/api/v1/grant/files/{file_id}",
        app.centre_addr.port()
    );
    let key = file_key(&app, &case, &file_id).await;
    let original = std::fs::read(app.config.fs_root().join(object_key(&case, &file_id))).unwrap();

    // Another key's object in its place; then the right key at a chunk size
    // the record does not hold.
    let stranger = FileKey::generate();
    let foreign = ObjectHeader::new(*stranger.id());
    let small = ObjectHeader {
        chunk_size: SMALL_CHUNK,
        key_id: *key.id(),
    };
    for object in [
        encrypt(&stranger, foreign, &case, &file_id, &data),
        encrypt(&key, small, &case, &file_id, &data),
    ] {
        replace_object(&app, &case, &file_id, &object, None).await;
        for path in [url.clone(), format!("{url}/sealed")] {
            let resp = centre
                .client
                .get(path)
                .bearer_auth(&centre.token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 500);
        }
    }
    assert_eq!(
        centre.downloads(&app).await[file_id.as_str()],
        0,
        "a refused download is not a use"
    );

    // The original back: the grant's one download is still there.
    replace_object(&app, &case, &file_id, &original, None).await;
    let resp = centre
        .client
        .get(url)
        .bearer_auth(&centre.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
    app.stop().await;
}
