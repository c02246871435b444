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
