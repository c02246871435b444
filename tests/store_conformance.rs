//! One conformance suite for every `ObjectStore` backend: whole objects,
//! ranges, deletes, and the append/sync/reopen contract uploads rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use casegate::store::{FsStore, ObjectStore, ObjectWriter, ResumeToken, S3Store, StoreError};

/// Keys unique to this run, so a shared Garage bucket never mixes runs.
fn k(key: &str) -> String {
    format!("{key}-{}", casegate::ids::CaseId::generate())
}

async fn whole_objects(store: &ObjectStore) {
    let c1 = k("cases/c1");
    let c2 = k("cases/c2");
    let (f1, f2, nope, c2f1) = (
        format!("{c1}/f1"),
        format!("{c1}/f2"),
        format!("{c1}/nope"),
        format!("{c2}/f1"),
    );
    store.put(&f1, b"hello world").await.unwrap();
    assert_eq!(store.len(&f1).await.unwrap(), 11);
    assert_eq!(store.get_range(&f1, 0..5).await.unwrap(), b"hello");
    assert_eq!(store.get_range(&f1, 6..100).await.unwrap(), b"world");
    store.put(&f1, b"replaced").await.unwrap();
    assert_eq!(store.get_range(&f1, 0..100).await.unwrap(), b"replaced");
    assert!(matches!(
        store.get_range(&nope, 0..1).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.put("../escape", b"x").await,
        Err(StoreError::BadKey)
    ));
    store.put(&f2, b"x").await.unwrap();
    store.put(&c2f1, b"y").await.unwrap();
    store.delete(&f2).await.unwrap();
    store.delete(&f2).await.unwrap();
    assert!(matches!(store.len(&f2).await, Err(StoreError::NotFound)));
    store.delete_prefix(&format!("{c1}/")).await.unwrap();
    assert!(matches!(store.len(&f1).await, Err(StoreError::NotFound)));
    assert_eq!(
        store.len(&c2f1).await.unwrap(),
        1,
        "other prefixes untouched"
    );
    store.delete_prefix(&format!("{c1}/")).await.unwrap();
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn append_sync_reopen(store: &ObjectStore) {
    let key = &k("cases/c3/upload");
    let expected_len = 20 * 1024 * 1024;
    let first = pattern(3 * 1024 * 1024 + 17, 1);
    let mut writer = store
        .open_writer(key, &ResumeToken::start(), expected_len)
        .await
        .unwrap();
    writer.write(&first).await.unwrap();
    let progress = writer.sync().await.unwrap();
    assert_eq!(progress.durable_len().unwrap(), first.len() as u64);
    // Written but never synced: lost on reopen, never interleaved.
    writer.write(&pattern(5 * 1024 * 1024, 9)).await.unwrap();
    drop(writer);

    let mut writer = store
        .open_writer(key, &progress, expected_len)
        .await
        .unwrap();
    let second = pattern(9 * 1024 * 1024 + 5, 2);
    writer.write(&second).await.unwrap();
    let progress = writer.sync().await.unwrap();
    drop(writer);
    let mut writer = store
        .open_writer(key, &progress, expected_len)
        .await
        .unwrap();
    let third = pattern(1000, 3);
    writer.write(&third).await.unwrap();
    writer.sync().await.unwrap();
    writer.complete().await.unwrap();

    let whole: Vec<u8> = [first, second, third].concat();
    assert_eq!(store.len(key).await.unwrap(), whole.len() as u64);
    assert_eq!(
        store.get_range(key, 0..whole.len() as u64).await.unwrap(),
        whole
    );
    let mid = 3 * 1024 * 1024..3 * 1024 * 1024 + 100;
    assert_eq!(
        store
            .get_range(key, mid.start as u64..mid.end as u64)
            .await
            .unwrap(),
        &whole[mid]
    );
    store.delete(key).await.unwrap();
}

/// A writer dropped mid-write (a request that failed) leaves nothing that
/// shows up after the next writer reopens at the durable point.
async fn dropped_writer_leaves_nothing(store: &ObjectStore) {
    let key = &k("cases/c5/upload");
    let expected_len = 8 * 1024 * 1024;
    let mut writer = store
        .open_writer(key, &ResumeToken::start(), expected_len)
        .await
        .unwrap();
    let durable = pattern(100_000, 4);
    writer.write(&durable).await.unwrap();
    let progress = writer.sync().await.unwrap();
    drop(writer);
    for round in 0..10u8 {
        let mut writer = store
            .open_writer(key, &progress, expected_len)
            .await
            .unwrap();
        writer
            .write(&pattern(1536 * 1024, 100 + round))
            .await
            .unwrap();
        drop(writer);
    }
    let mut writer = store
        .open_writer(key, &progress, expected_len)
        .await
        .unwrap();
    let last = pattern(1536 * 1024 + 3, 7);
    writer.write(&last).await.unwrap();
    writer.sync().await.unwrap();
    writer.complete().await.unwrap();
    let whole: Vec<u8> = [durable, last].concat();
    assert_eq!(store.len(key).await.unwrap(), whole.len() as u64);
    assert!(
        store.get_range(key, 0..whole.len() as u64).await.unwrap() == whole,
        "object holds bytes of a dropped writer"
    );
    store.delete(key).await.unwrap();
}

/// A completion whose end was never recorded (the gateway killed after the
/// store finished and before the database said so) is completed again from
/// the same recorded progress, and the object stays whole. Once with a
/// tail smaller than a part (staged), once ending on a part boundary.
/// Writers dropped with whole parts sent on (S3 parts in flight, an fs
/// batch being written): the next writer of the object waits for it, sends
/// its own part under the same number, and the object holds only the last
/// writer's bytes. (That a late part would otherwise replace the new one
/// needs a store slow enough to reorder them; this checks the outcome.)
async fn dropped_writers_with_parts_in_flight(store: &ObjectStore) {
    let key = &k("cases/c9/upload");
    let mib = 1024 * 1024;
    let expected_len = 64 * mib as u64;
    let mut writer = store
        .open_writer(key, &ResumeToken::start(), expected_len)
        .await
        .unwrap();
    let durable = pattern(100_000, 9);
    writer.write(&durable).await.unwrap();
    let progress = writer.sync().await.unwrap();
    drop(writer);
    for round in 0..4u8 {
        let mut writer = store
            .open_writer(key, &progress, expected_len)
            .await
            .unwrap();
        // One part in flight, then two (an S3 writer sends two at once).
        let len = if round % 2 == 0 { 9 * mib } else { 17 * mib };
        writer.write(&pattern(len, 50 + round)).await.unwrap();
        drop(writer);
    }
    let mut writer = store
        .open_writer(key, &progress, expected_len)
        .await
        .unwrap();
    let last = pattern(17 * mib + 3, 77);
    writer.write(&last).await.unwrap();
    writer.sync().await.unwrap();
    writer.complete().await.unwrap();
    let whole: Vec<u8> = [durable, last].concat();
    assert_eq!(store.len(key).await.unwrap(), whole.len() as u64);
    assert!(
        store.get_range(key, 0..whole.len() as u64).await.unwrap() == whole,
        "object holds bytes of a dropped writer"
    );
    store.delete(key).await.unwrap();
}

async fn completing_twice_keeps_the_object(store: &ObjectStore) {
    for (name, len) in [("tail", 9 * 1024 * 1024 + 11), ("parts", 8 * 1024 * 1024)] {
        let key = &k(&format!("cases/c6/{name}"));
        let bytes = pattern(len, 5);
        let mut writer = store
            .open_writer(key, &ResumeToken::start(), len as u64)
            .await
            .unwrap();
        writer.write(&bytes).await.unwrap();
        let recorded = writer.sync().await.unwrap();
        drop(writer);
        store
            .complete_write(key, &recorded, len as u64)
            .await
            .unwrap();
        store
            .complete_write(key, &recorded, len as u64)
            .await
            .unwrap_or_else(|e| panic!("{name}: second completion: {e}"));
        assert_eq!(store.len(key).await.unwrap(), len as u64, "{name}");
        assert!(
            store.get_range(key, 0..len as u64).await.unwrap() == bytes,
            "{name}: object changed by the second completion"
        );
        store.delete(key).await.unwrap();
    }
}

async fn abort_discards(store: &ObjectStore) {
    let key = &k("cases/c4/upload");
    let mut writer = store
        .open_writer(key, &ResumeToken::start(), 1 << 20)
        .await
        .unwrap();
    writer.write(&pattern(300_000, 4)).await.unwrap();
    let progress = writer.sync().await.unwrap();
    drop(writer);
    store.abort_write(key, &progress).await.unwrap();
    assert!(matches!(store.len(key).await, Err(StoreError::NotFound)));
}

/// Appends `bytes` the way the upload pipeline does: into the writer's own
/// buffer, a sealed chunk's worth at a time, then `appended`.
async fn lend(writer: &mut ObjectWriter, bytes: &[u8]) -> Result<(), StoreError> {
    for piece in bytes.chunks(64 * 1024 + 28) {
        let out = writer.buffer(piece.len()).await?;
        out.extend_from_slice(piece);
        writer.appended().await?;
    }
    Ok(())
}

/// The lent-buffer path (what production uses) across part boundaries,
/// durable points in the middle of a part and on a part boundary, and a
/// reopen: the object is exactly the bytes lent, in order.
async fn lent_buffers(store: &ObjectStore) {
    let key = &k("cases/c7/upload");
    let part = 8 * 1024 * 1024;
    let pieces = [
        pattern(part + 3, 11),
        pattern(part - 3, 12),
        pattern(2 * part + 100_000, 13),
        pattern(777, 14),
    ];
    let total: usize = pieces.iter().map(Vec::len).sum();
    let mut token = ResumeToken::start();
    for (i, piece) in pieces.iter().enumerate() {
        let mut writer = store.open_writer(key, &token, total as u64).await.unwrap();
        lend(&mut writer, piece).await.unwrap();
        token = writer.sync().await.unwrap();
        let durable: usize = pieces[..=i].iter().map(Vec::len).sum();
        assert_eq!(token.durable_len().unwrap(), durable as u64, "after {i}");
        if i == pieces.len() - 1 {
            writer.complete().await.unwrap();
        }
    }
    let whole = pieces.concat();
    assert_eq!(store.len(key).await.unwrap(), whole.len() as u64);
    assert!(
        store.get_range(key, 0..whole.len() as u64).await.unwrap() == whole,
        "object differs from the bytes lent"
    );
    store.delete(key).await.unwrap();
}

/// An open writer with `durable` bytes synced; returns it, its key, the
/// recorded token and the bytes.
async fn durable_start(
    store: &ObjectStore,
    name: &str,
) -> (String, ObjectWriter, ResumeToken, Vec<u8>) {
    let key = k(&format!("cases/c8/{name}"));
    let durable = pattern(1024 * 1024 + 5, 21);
    let mut writer = store
        .open_writer(&key, &ResumeToken::start(), 64 * 1024 * 1024)
        .await
        .unwrap();
    lend(&mut writer, &durable).await.unwrap();
    let token = writer.sync().await.unwrap();
    (key, writer, token, durable)
}

/// Lends bytes to a writer whose store is failing until a call fails
/// (`appended`, or at the latest the `sync` that must not claim them).
async fn lend_until_failure(writer: &mut ObjectWriter) {
    let failed = match lend(writer, &pattern(18 * 1024 * 1024, 22)).await {
        Err(_) => true,
        Ok(()) => writer.sync().await.is_err(),
    };
    assert!(failed, "a failing store's writer claimed durability");
}

/// After the failure (the store works again): the writer refuses to go on
/// (fail closed), and a writer reopened at the last durable point
/// completes an object holding exactly the durable bytes and what follows.
async fn after_failure(
    store: &ObjectStore,
    key: &str,
    mut failed: ObjectWriter,
    token: &ResumeToken,
    durable: Vec<u8>,
) {
    assert!(
        failed.write(&pattern(9 * 1024 * 1024, 23)).await.is_err(),
        "a failed writer took more bytes"
    );
    assert!(
        failed.sync().await.is_err(),
        "a failed writer made a durable point"
    );
    drop(failed);
    let rest = pattern(9 * 1024 * 1024 + 1, 24);
    let total = (durable.len() + rest.len()) as u64;
    let mut writer = store.open_writer(key, token, total).await.unwrap();
    lend(&mut writer, &rest).await.unwrap();
    writer.sync().await.unwrap();
    writer.complete().await.unwrap();
    let whole = [durable, rest].concat();
    assert_eq!(store.len(key).await.unwrap(), total);
    assert!(
        store.get_range(key, 0..total).await.unwrap() == whole,
        "object holds bytes of the failed writer"
    );
    store.delete(key).await.unwrap();
}

/// Two writers opened from the same durable point — a replica whose
/// lease lapsed with a request still on its way, and the one that took
/// the upload over: the old one's staging object landing after the new
/// one recorded its own must not replace it (S3 stores the bytes after
/// the last part in a staging object).
async fn a_late_writer_leaves_the_recorded_staging_alone(store: &ObjectStore) {
    let key = &k("cases/c10/upload");
    let total = 64 * 1024 * 1024;
    let durable = pattern(100_000, 31);
    let mut writer = store
        .open_writer(key, &ResumeToken::start(), total)
        .await
        .unwrap();
    writer.write(&durable).await.unwrap();
    let start = writer.sync().await.unwrap();
    drop(writer);
    let mut old = store.open_writer(key, &start, total).await.unwrap();
    let mut new = store.open_writer(key, &start, total).await.unwrap();
    let taken_over = pattern(200_000, 32);
    new.write(&taken_over).await.unwrap();
    let recorded = new.sync().await.unwrap();
    drop(new);
    old.write(&pattern(200_000, 33)).await.unwrap();
    old.sync().await.unwrap();
    drop(old);
    let whole = [durable, taken_over].concat();
    store
        .complete_write(key, &recorded, whole.len() as u64)
        .await
        .unwrap();
    assert!(
        store.get_range(key, 0..whole.len() as u64).await.unwrap() == whole,
        "the late writer's staging object replaced the recorded one"
    );
    store.delete(key).await.unwrap();
}

async fn conformance(store: ObjectStore) {
    store.check().await.unwrap();
    whole_objects(&store).await;
    append_sync_reopen(&store).await;
    dropped_writer_leaves_nothing(&store).await;
    dropped_writers_with_parts_in_flight(&store).await;
    completing_twice_keeps_the_object(&store).await;
    abort_discards(&store).await;
    lent_buffers(&store).await;
}

#[tokio::test]
async fn fs_backend() {
    let dir = tempfile::tempdir().unwrap();
    conformance(ObjectStore::Fs(
        FsStore::open(&dir.path().join("objects")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn s3_backend_on_s3s_fs() {
    let s3 = support::s3s_fs().await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    a_late_writer_leaves_the_recorded_staging_alone(&store).await;
    staging_objects_of_earlier_writers_are_swept(&store, &s3.config).await;
    conformance(store).await;
}

#[tokio::test]
async fn s3_backend_on_garage() {
    let Some(s3) = support::garage() else { return };
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    a_late_writer_leaves_the_recorded_staging_alone(&store).await;
    staging_objects_of_earlier_writers_are_swept(&store, &s3.config).await;
    conformance(store).await;
}

/// A failing `appended` on fs: the disk fills up under the writer.
#[tokio::test]
async fn fs_writer_fails_closed_when_the_disk_fills() {
    let Some(disk) = support::tmpfs::Tmpfs::mount("16m") else {
        return;
    };
    let store = ObjectStore::Fs(FsStore::open(&disk.path.join("objects")).unwrap());
    let (key, mut writer, token, durable) = durable_start(&store, "full").await;
    let filler = disk.path.join("filler");
    support::tmpfs::fill(&filler);
    lend_until_failure(&mut writer).await;
    std::fs::remove_file(&filler).unwrap();
    after_failure(&store, &key, writer, &token, durable).await;
}

/// A failing `appended` on S3: the store goes away while parts go up.
#[tokio::test]
async fn s3_writer_fails_closed_when_the_store_goes_away() {
    let mut s3 = support::s3s_fs().await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    let (key, mut writer, token, durable) = durable_start(&store, "outage").await;
    s3.stop().await;
    lend_until_failure(&mut writer).await;
    s3.start().await;
    after_failure(&store, &key, writer, &token, durable).await;
}

/// A store that stops answering part uploads (a hung disk behind it):
/// each attempt gives up after `storage.s3.request_timeout_secs`, the
/// writer fails closed after its retries instead of holding the upload
/// forever, and its abandoned parts end once the store answers again.
#[tokio::test]
async fn s3_writer_gives_up_on_parts_the_store_never_answers() {
    let mut s3 = support::s3s_fs().await;
    // Short, but long enough for s3s-fs to take a 9 MiB part on a busy
    // machine once it answers again.
    s3.config.request_timeout_secs = 3;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    let (key, mut writer, token, durable) = durable_start(&store, "stalled").await;
    s3.stall_parts(true);
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        lend_until_failure(&mut writer),
    )
    .await
    .expect("the writer waits forever for a part the store never answers");
    s3.stall_parts(false);
    after_failure(&store, &key, writer, &token, durable).await;
}

/// One durable point per writer, as with a tus client's PATCHes: the
/// staging objects earlier writers recorded are swept when the next one
/// opens, not kept until the upload completes — and never the recorded
/// one, not even by a writer opened from an older record.
async fn staging_objects_of_earlier_writers_are_swept(
    store: &ObjectStore,
    config: &casegate::config::S3Config,
) {
    let key = &k("cases/c11/upload");
    let total = 64 * 1024 * 1024;
    let mut tokens = vec![ResumeToken::start()];
    let mut written = Vec::new();
    for round in 0..6u8 {
        let last = tokens.last().unwrap();
        let mut writer = store.open_writer(key, last, total).await.unwrap();
        let bytes = pattern(50_000, 40 + round);
        writer.write(&bytes).await.unwrap();
        written.extend_from_slice(&bytes);
        tokens.push(writer.sync().await.unwrap());
        drop(writer);
    }
    // A writer opened from the record before the last (its staging object
    // is still there; its sweep must spare the newer generation).
    let before_last = &tokens[tokens.len() - 2];
    drop(store.open_writer(key, before_last, total).await.unwrap());
    let prefix = format!("staging/{key}/");
    let mut left = Vec::new();
    // The sweeps run beside the writers: give them a moment.
    for _ in 0..50 {
        left = objects(config, &prefix).await;
        if left.len() <= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left.len() <= 2, "staging objects left behind: {left:?}");
    let recorded = tokens.last().unwrap();
    store
        .complete_write(key, recorded, written.len() as u64)
        .await
        .expect("the recorded staging object was swept");
    assert!(
        store.get_range(key, 0..written.len() as u64).await.unwrap() == written,
        "the object is not what the writers recorded"
    );
    assert_eq!(objects(config, &prefix).await, Vec::<String>::new());
    store.delete(key).await.unwrap();
}

/// A client of the store's own, for looking behind the gateway.
fn bucket(config: &casegate::config::S3Config) -> Box<s3::Bucket> {
    let credentials = s3::creds::Credentials::new(
        Some(&config.access_key),
        Some(config.secret_key.expose()),
        None,
        None,
        None,
    )
    .unwrap();
    let region = s3::Region::Custom {
        region: config.region.clone(),
        endpoint: config.endpoint.clone(),
    };
    s3::Bucket::new(&config.bucket, region, credentials)
        .unwrap()
        .with_path_style()
}

/// The objects under `prefix`, asked of the store directly.
async fn objects(config: &casegate::config::S3Config, prefix: &str) -> Vec<String> {
    let pages = bucket(config).list(prefix.to_owned(), None).await.unwrap();
    pages
        .into_iter()
        .flat_map(|p| p.contents)
        .map(|o| o.key)
        .collect()
}

/// The unfinished multipart uploads under `prefix`, asked of the store
/// directly.
async fn multiparts(config: &casegate::config::S3Config, prefix: &str) -> Vec<String> {
    let pages = bucket(config)
        .list_multiparts_uploads(Some(prefix), None)
        .await
        .unwrap();
    pages
        .into_iter()
        .flat_map(|p| p.uploads)
        .map(|u| u.key)
        .collect()
}

/// A multipart upload whose id was never recorded (the gateway killed, or
/// a PATCH discarded, after its first part went up) is aborted when the
/// object completes, and a deleted case leaves no multipart upload or
/// staging object behind. Garage only: s3s-fs cannot list multipart
/// uploads.
#[tokio::test]
async fn unrecorded_multipart_uploads_are_not_left_behind_on_garage() {
    let Some(s3) = support::garage() else { return };
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    let case_id = casegate::ids::CaseId::generate();
    let key = format!("cases/{case_id}/f1");
    let len = 9 * 1024 * 1024 + 5;
    let bytes = pattern(len, 8);
    // A first part goes up, and its upload id is lost with the writer.
    let mut lost = store
        .open_writer(&key, &ResumeToken::start(), len as u64)
        .await
        .unwrap();
    lost.write(&bytes).await.unwrap();
    drop(lost);
    assert_eq!(multiparts(&s3.config, &key).await, vec![key.clone()]);
    let mut writer = store
        .open_writer(&key, &ResumeToken::start(), len as u64)
        .await
        .unwrap();
    writer.write(&bytes).await.unwrap();
    let recorded = writer.sync().await.unwrap();
    drop(writer);
    store
        .complete_write(&key, &recorded, len as u64)
        .await
        .unwrap();
    assert!(
        store.get_range(&key, 0..len as u64).await.unwrap() == bytes,
        "the completed object"
    );
    assert_eq!(multiparts(&s3.config, &key).await, Vec::<String>::new());

    // An unfinished upload in a case that is then deleted.
    let unfinished = format!("cases/{case_id}/f2");
    let mut writer = store
        .open_writer(&unfinished, &ResumeToken::start(), 2 * len as u64)
        .await
        .unwrap();
    writer.write(&bytes).await.unwrap();
    writer.sync().await.unwrap();
    drop(writer);
    let prefix = format!("cases/{case_id}/");
    assert_eq!(multiparts(&s3.config, &prefix).await.len(), 1);
    store.delete_case(&case_id).await.unwrap();
    assert_eq!(multiparts(&s3.config, &prefix).await, Vec::<String>::new());
    assert!(matches!(store.len(&key).await, Err(StoreError::NotFound)));
    let staging = format!("staging/{unfinished}/{:010}", 1);
    assert!(matches!(
        store.len(&staging).await,
        Err(StoreError::NotFound)
    ));
}

/// A writer whose guard says no (its upload's lease was lost to another
/// replica) starts no part, staging object or retry: it fails closed with
/// `Fenced`, and the object's durable bytes stay as they were.
#[tokio::test]
async fn a_fenced_s3_writer_starts_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let s3 = support::s3s_fs().await;
    let store = ObjectStore::S3(S3Store::open(&s3.config).unwrap());
    let (key, mut writer, token, durable) = durable_start(&store, "fenced").await;
    let allowed = Arc::new(AtomicBool::new(true));
    let flag = allowed.clone();
    writer.guard(Arc::new(move || flag.load(Ordering::Relaxed)));
    allowed.store(false, Ordering::Relaxed);
    let sent = lend(&mut writer, &pattern(9 * 1024 * 1024, 22)).await;
    assert!(
        matches!(sent, Err(StoreError::Fenced)),
        "a full part was started: {sent:?}"
    );
    after_failure(&store, &key, writer, &token, durable).await;
}
