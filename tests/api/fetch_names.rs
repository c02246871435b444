//! What `casegate fetch` leaves on disk, end to end through the real
//! gateway: the name each granted file lands under, that nothing else (no
//! sealed download, no partial plaintext) stays behind, and what happens
//! to the other files when one cannot be written.

use std::path::Path;

use crate::common::spawn_app;
use crate::fetch_harness::{Centre, files_under};
use crate::tus::pattern;

/// `name` on disk must hold exactly `data`.
fn assert_landed(out: &Path, name: &str, data: &[u8]) {
    let path = out.join(name);
    match std::fs::read(&path) {
        Ok(found) => assert!(found == data, "{name}: wrong content"),
        Err(e) => panic!("{name}: {e}; found {:?}", files_under(out).keys()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_that_cannot_be_written_does_not_stop_the_others() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let files = [
        ("a.txt", pattern(2_000, 11)),
        ("b.txt", pattern(2_100, 12)),
        ("c.txt", pattern(2_200, 13)),
    ];
    for (name, data) in &files {
        app.upload(&patient, name, None, data, 4_000).await;
    }
    let centre = Centre::with_grant(&app, &case, 3).await;
    let manifest = centre.manifest(&app).await;
    // The first file fetch meets (files are listed by id) cannot be written:
    // a folder of the centre's own sits where it goes.
    let first = &manifest["files"][0];
    let blocked = first["filename"].as_str().unwrap().to_owned();
    let out = app.dir.path().join("received");
    let blocker = out.join("other").join(&blocked);
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("keep.txt"), b"the centre's own").unwrap();

    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(!run.ok, "a failed file makes the exit status non-zero");
    for (name, data) in &files {
        if *name != blocked {
            assert_landed(&out, &format!("other/{name}"), data);
        }
    }
    assert_eq!(
        std::fs::read(blocker.join("keep.txt")).unwrap(),
        b"the centre's own"
    );
    assert!(run.stderr.contains(&blocked), "{}", run.stderr);
    assert!(
        run.stderr.contains("2 of 3 files are in") && run.stderr.contains("1 failed"),
        "{}",
        run.stderr
    );

    // Once the way is clear, a rerun lands it from the sealed download kept
    // from the first run: no second download.
    std::fs::remove_dir_all(&blocker).unwrap();
    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    for (name, data) in &files {
        assert_landed(&out, &format!("other/{name}"), data);
    }
    let downloads = centre.downloads(&app).await;
    assert!(downloads.values().all(|d| *d == 1), "{downloads:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_like_temporary_files_are_kept() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let files = [
        ("notes.casegate-sealed", pattern(3_000, 21)),
        ("scan.casegate-part", pattern(3_100, 22)),
        ("letter.pdf", pattern(3_200, 23)),
        ("letter.doc", pattern(3_300, 24)),
    ];
    for (name, data) in &files {
        app.upload(&patient, name, None, data, 4_000).await;
    }
    let centre = Centre::with_grant(&app, &case, 3).await;
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    for (name, data) in &files {
        assert_landed(&out, &format!("other/{name}"), data);
    }
    // Nothing else is left behind: no sealed download, no partial plaintext.
    assert_eq!(
        files_under(&out).len(),
        files.len(),
        "{:?}",
        files_under(&out)
    );
    let downloads = centre.downloads(&app).await;
    assert!(downloads.values().all(|d| *d == 1), "{downloads:?}");
    app.stop().await;
}
