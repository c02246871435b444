//! `casegate fetch --jobs`: several files at once through the real gateway.
//! Every file lands once with its content and counts one download whatever
//! the number of jobs; a failure that would repeat for every file (here an
//! X25519 key that opens no sealed key) starts no further file, so the
//! grant is not spent on downloads that cannot be decrypted.

use crate::common::spawn_app;
use crate::fetch_harness::{Centre, files_under};
use crate::tus::{pattern, sha256_hex};

const FILES: usize = 12;

async fn case_with_files(app: &crate::common::TestApp) -> (String, Vec<Vec<u8>>) {
    let (case, patient) = app.create_case(None).await;
    let mut all = Vec::new();
    for i in 0..FILES {
        // Some files span several download windows.
        let data = pattern(20_000 + i * 300_000, i as u64 + 1);
        app.upload(
            &patient,
            &format!("note-{i}.txt"),
            Some("clinic_note"),
            &data,
            1 << 20,
        )
        .await;
        all.push(data);
    }
    (case, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_lands_once_whatever_the_number_of_jobs() {
    let app = spawn_app().await;
    let (case, data) = case_with_files(&app).await;
    let centre = Centre::with_grant(&app, &case, 1).await;
    let out = app.dir.path().join("received");
    let run = centre.fetch_with(&app, app.centre_addr.port(), &out, &["--jobs", "8"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{FILES} of {FILES} files are in")),
        "{}",
        run.stderr
    );
    let on_disk = files_under(&out);
    assert_eq!(on_disk.len(), FILES, "{on_disk:?}");
    for (i, data) in data.iter().enumerate() {
        let got = std::fs::read(out.join(format!("clinic_note/note-{i}.txt"))).unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(data), "note-{i}.txt");
    }
    let downloads = centre.downloads(&app).await;
    assert!(downloads.values().all(|n| *n == 1), "{downloads:?}");
    // index.csv lists every file in place, with its path, once.
    let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
    let lines: Vec<&str> = index.lines().collect();
    assert!(
        lines[0].starts_with("path,file_id,filename,category,size,sha256"),
        "{index}"
    );
    assert_eq!(lines.len(), FILES + 1, "{index}");
    for (i, data) in data.iter().enumerate() {
        let row = format!("clinic_note/note-{i}.txt,");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("{row} not in {index}"));
        assert!(line.contains(&sha256_hex(data)), "{line}");
    }

    // One job at a time finds them all in place and downloads nothing.
    let run = centre.fetch_with(&app, app.centre_addr.port(), &out, &["--jobs", "1"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{FILES} already there")),
        "{}",
        run.stderr
    );
    assert_eq!(centre.downloads(&app).await, downloads);

    let run = centre.fetch_with(&app, app.centre_addr.port(), &out, &["--jobs", "0"]);
    assert!(!run.ok, "--jobs 0 accepted");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_opens_nothing_starts_no_further_file() {
    let app = spawn_app().await;
    let (case, _) = case_with_files(&app).await;
    let centre = Centre::with_grant(&app, &case, 1).await;
    // A valid X25519 key, but not the one the grant's keys are sealed to.
    let other = app.dir.path().join("other-keys");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_casegate"))
        .args(["centre", "keygen", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    std::fs::copy(other.join("x25519.key"), centre.keys.join("x25519.key")).unwrap();

    let out = app.dir.path().join("received");
    let jobs = 2;
    let run = centre.fetch_with(
        &app,
        app.centre_addr.port(),
        &out,
        &["--jobs", &jobs.to_string()],
    );
    assert!(!run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("does not open with this X25519 key"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("stopping"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("0 of {FILES} files are in")),
        "{}",
        run.stderr
    );
    let downloaded: i64 = centre.downloads(&app).await.values().sum();
    assert!(
        downloaded <= jobs,
        "{downloaded} files downloaded after the key was found wrong with {jobs} jobs"
    );
    // Only the sealed downloads wait (a rerun with the right key decrypts
    // them without downloading again); no plaintext anywhere.
    let left = files_under(&out);
    assert!(
        left.keys()
            .all(|p| p.starts_with(".casegate-partial") && p.to_string_lossy().ends_with(".sealed")),
        "{left:?}"
    );
    app.stop().await;
}
