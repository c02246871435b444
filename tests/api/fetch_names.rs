//! What `casegate fetch` leaves on disk, end to end through the real
//! gateway: the name each granted file lands under, that nothing else (no
//! sealed download, no partial plaintext) stays behind, and what happens
//! to the other files when one cannot be written.

use std::path::Path;

use crate::common::spawn_app;
use crate::fetch_harness::{Centre, entry_for, files_under};
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
async fn files_sharing_a_name_all_land_and_reruns_skip_them() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let long = |tail: &str| format!("{}{tail}.txt", "a".repeat(300));
    let files = [
        ("report.pdf", "pathology_report", pattern(5_000, 1)),
        ("report.pdf", "pathology_report", pattern(6_000, 2)),
        // Same file on a case-insensitive disk (macOS, Windows).
        ("REPORT.pdf", "pathology_report", pattern(7_000, 3)),
        // Equal once cut to the byte limit.
        (&long("1"), "clinic_note", pattern(8_000, 4)),
        (&long("2"), "clinic_note", pattern(9_000, 5)),
        // Another folder: no collision, the plain name.
        ("report.pdf", "imaging_report", pattern(10_000, 6)),
    ];
    for (name, category, data) in &files {
        app.upload(&patient, name, Some(category), data, 4_000)
            .await;
    }
    let centre = Centre::with_grant(&app, &case, 3).await;
    let manifest = centre.manifest(&app).await;
    let id = |data: &[u8]| {
        entry_for(&manifest, data)["file_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    let on_disk = files_under(&out);
    assert_eq!(on_disk.len(), files.len(), "{on_disk:?}");
    for (stem, data) in [
        ("report", &files[0].2),
        ("report", &files[1].2),
        ("REPORT", &files[2].2),
    ] {
        assert_landed(
            &out,
            &format!("pathology_report/{stem} ({}).pdf", id(data)),
            data,
        );
    }
    for (_, _, data) in &files[3..5] {
        let suffix = format!(" ({}).txt", id(data));
        let (name, _) = on_disk
            .iter()
            .find(|(p, _)| p.to_str().unwrap().ends_with(&suffix))
            .unwrap_or_else(|| panic!("no file ends with {suffix}: {on_disk:?}"));
        let file_name = name.file_name().unwrap().to_str().unwrap();
        assert!(file_name.len() <= 255 && file_name.starts_with("aaaa"));
        assert_landed(&out, name.to_str().unwrap(), data);
    }
    assert_landed(&out, "imaging_report/report.pdf", &files[5].2);
    assert!(run.stderr.contains("6 of 6 files are in"), "{}", run.stderr);

    // A rerun finds every file in place and downloads nothing.
    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("0 fetched now, 6 already there"),
        "{}",
        run.stderr
    );
    let downloads = centre.downloads(&app).await;
    assert!(downloads.values().all(|d| *d == 1), "{downloads:?}");
    assert_eq!(files_under(&out), on_disk);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_are_cut_to_255_bytes_keeping_the_extension() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    // 1,004 bytes, 504 characters: accepted at upload.
    let long = format!("{}.pdf", "é".repeat(500));
    let (a, b) = (pattern(3_000, 7), pattern(4_000, 8));
    app.upload(&patient, &long, None, &a, 3_000).await;
    app.upload(&patient, "short.txt", None, &b, 4_000).await;
    let centre = Centre::with_grant(&app, &case, 3).await;
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    // 125 × 2 bytes + ".pdf": the longest cut on a character boundary.
    assert_landed(&out, &format!("other/{}.pdf", "é".repeat(125)), &a);
    assert_landed(&out, "other/short.txt", &b);
    assert!(run.stderr.contains("2 of 2 files are in"), "{}", run.stderr);
    app.stop().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_that_disguise_names_are_neutralised() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let files = [
        // Shows as "reportexe.pdf" in most file managers.
        ("report\u{202e}fdp.exe", "report_fdp.exe"),
        ("a\u{200b}b\u{2066}c\u{2069}.txt", "a_b_c_.txt"),
        ("\u{feff}bom.txt", "_bom.txt"),
        ("x\u{061c}y\u{200e}z\u{200f}.txt", "x_y_z_.txt"),
        ("soft\u{ad}hyphen\u{2060}.txt", "soft_hyphen_.txt"),
        ("CON.txt", "_CON.txt"),
        ("lpt1", "_lpt1"),
        ("trailing. . .", "trailing"),
    ];
    let mut contents = Vec::new();
    for (i, (name, _)) in files.iter().enumerate() {
        let data = pattern(1_000 + i, 30 + i as u64);
        app.upload(&patient, name, None, &data, 4_000).await;
        contents.push(data);
    }
    let centre = Centre::with_grant(&app, &case, 3).await;
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    for ((_, shown), data) in files.iter().zip(&contents) {
        assert_landed(&out, &format!("other/{shown}"), data);
    }
    assert!(!run.stderr.contains('\u{202e}'), "{}", run.stderr);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicom_folders_from_file_contents_are_sanitised_and_cut() {
    use casegate::upload::dicom::testdata::ct_file;
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    // StudyInstanceUID and SeriesInstanceUID come from inside the file: the
    // patient's CD, not the gateway, chose them.
    let study = format!("1.2.{}", "é".repeat(200));
    let ct = ct_file(&study, "..", "Doe^Jane", 2_000);
    let sneaky = ct_file("1.2.3", "4\u{1b}5/../..", "Doe^John", 2_000);
    app.upload(&patient, "IM1.dcm", Some("imaging_dicom"), &ct, 4_000)
        .await;
    app.upload(&patient, "IM2.dcm", Some("imaging_dicom"), &sneaky, 4_000)
        .await;
    let centre = Centre::with_grant(&app, &case, 3).await;
    let out = app.dir.path().join("received");

    let run = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(run.ok, "{}", run.stderr);
    // The gateway reads these UIDs in DICOM's default character set
    // (Latin-1): each UTF-8 byte of "é" is one character, 804 bytes in all.
    let read: String = study.bytes().map(char::from).collect();
    assert_eq!(read.len(), 804);
    let mut cut = String::new();
    for c in read.chars() {
        if cut.len() + c.len_utf8() > 255 {
            break;
        }
        cut.push(c);
    }
    assert_landed(&out, &format!("imaging_dicom/{cut}/unnamed/IM1.dcm"), &ct);
    assert_landed(&out, "imaging_dicom/1.2.3/4_5_.._/IM2.dcm", &sneaky);
    app.stop().await;
}
