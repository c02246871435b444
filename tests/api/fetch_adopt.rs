//! `casegate fetch` run again over a folder it (or an older version of it)
//! filled: files already in place, or left under an earlier fetch's path
//! (the category layout from before `DICOM/<study>/<series>/`, or wherever
//! the earlier `index.csv` says), are moved into place and never
//! downloaded again. The grant allows one download per file, so any
//! second download would fail the run.

use std::path::Path;

use casegate::upload::dicom::testdata::{Image, ct_image};

use crate::common::spawn_app;
use crate::fetch_harness::{Centre, entry_for, files_under};

const STUDY: &str = "1.2.826.0.1.3680043.8.498.21";
const SERIES: &str = "1.2.826.0.1.3680043.8.498.21.1";

fn instance(n: u8) -> (String, Vec<u8>) {
    let sop = format!("{SERIES}.{n}");
    let image = Image {
        sop_instance_uid: &sop,
        instance_number: Some(u32::from(n)),
        rows: None,
        frames: None,
        pixels: vec![n; 4096],
    };
    let bytes = ct_image(STUDY, SERIES, "Doe^Jane", &image);
    (sop, bytes)
}

fn moved(out: &Path, from: &str, to: &str) {
    let to = out.join(to);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(out.join(from), to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_fetch_downloads_nothing_and_adopts_an_older_layout() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (sop1, ct1) = instance(1);
    let (sop2, ct2) = instance(2);
    for (name, bytes) in [("IM0001", &ct1), ("IM0002", &ct2)] {
        app.upload(&patient, name, Some("imaging_dicom"), bytes, 64_000)
            .await;
    }
    app.upload(
        &patient,
        "report.pdf",
        Some("imaging_report"),
        b"%PDF-1.7 r",
        64_000,
    )
    .await;
    let centre = Centre::with_grant(&app, &case, 1).await;
    let out = app.dir.path().join("fetched");
    let port = app.centre_addr.port();

    let first = centre.fetch(&app, port, &out);
    assert!(first.ok, "{}", first.stderr);
    let counted = centre.downloads(&app).await;
    assert!(counted.values().all(|n| *n == 1), "{counted:?}");
    let landed = files_under(&out);

    // Nothing changed: nothing is downloaded (the grant has none left).
    let again = centre.fetch(&app, port, &out);
    assert!(again.ok, "{}", again.stderr);
    assert!(
        again.stderr.contains("0 fetched now, 3 already there"),
        "{}",
        again.stderr
    );
    assert_eq!(centre.downloads(&app).await, counted);

    // An older fetch's folder: one instance in the category layout (from
    // before the DICOM layout, or before the gateway had indexed it), the
    // other where an earlier index.csv listed it.
    let new1 = format!("DICOM/{STUDY}/{SERIES}/{sop1}.dcm");
    let new2 = format!("DICOM/{STUDY}/{SERIES}/{sop2}.dcm");
    let old1 = format!("imaging_dicom/{STUDY}/{SERIES}/IM0001");
    moved(&out, &new1, &old1);
    moved(&out, &new2, "elsewhere/second.dcm");
    let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert!(index.contains(&new2));
    std::fs::write(
        out.join("index.csv"),
        index.replace(&new2, "elsewhere/second.dcm"),
    )
    .unwrap();

    let adopted = centre.fetch(&app, port, &out);
    assert!(adopted.ok, "{}", adopted.stderr);
    assert!(
        adopted.stderr.contains("0 fetched now"),
        "{}",
        adopted.stderr
    );
    assert!(adopted.stderr.contains("2 moved"), "{}", adopted.stderr);
    assert_eq!(centre.downloads(&app).await, counted, "no download counted");
    assert_eq!(std::fs::read(out.join(&new1)).unwrap(), ct1);
    assert_eq!(std::fs::read(out.join(&new2)).unwrap(), ct2);
    assert_eq!(files_under(&out), landed, "the old places are gone");
    assert!(
        !out.join("imaging_dicom").exists(),
        "emptied folders tidied"
    );
    let index = std::fs::read_to_string(out.join("index.csv")).unwrap();
    assert!(index.contains(&new2) && !index.contains("elsewhere"));
    app.stop().await;
}

/// A file at an earlier path that is not the granted file (another size or
/// SHA-256) is left alone and the file is downloaded as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_file_at_an_old_path_is_not_taken() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (sop1, ct1) = instance(1);
    app.upload(&patient, "IM0001", Some("imaging_dicom"), &ct1, 64_000)
        .await;
    let centre = Centre::with_grant(&app, &case, 1).await;
    let out = app.dir.path().join("fetched");
    let old = out.join(format!("imaging_dicom/{STUDY}/{SERIES}/IM0001"));
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    let mut impostor = ct1.clone();
    *impostor.last_mut().unwrap() ^= 1;
    std::fs::write(&old, &impostor).unwrap();
    let fetched = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(fetched.ok, "{}", fetched.stderr);
    assert!(
        fetched.stderr.contains("1 fetched now"),
        "{}",
        fetched.stderr
    );
    let new = out.join(format!("DICOM/{STUDY}/{SERIES}/{sop1}.dcm"));
    assert_eq!(std::fs::read(new).unwrap(), ct1);
    assert_eq!(std::fs::read(&old).unwrap(), impostor, "left as it was");
    app.stop().await;
}

/// What an earlier fetch's place holds is taken only when it is a plain
/// file of this user's under `--out`: a category folder that is a link
/// to a folder elsewhere is not followed (what it leads to stays as it
/// was), and a file with a second name (a hard link) is not moved away
/// from it. Both files are downloaded instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_folders_and_hard_linked_files_are_not_adopted() {
    use std::os::unix::fs::MetadataExt;

    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (sop1, ct1) = instance(1);
    let (sop2, ct2) = instance(2);
    for (name, bytes) in [("IM0001", &ct1), ("IM0002", &ct2)] {
        app.upload(&patient, name, Some("imaging_dicom"), bytes, 64_000)
            .await;
    }
    let centre = Centre::with_grant(&app, &case, 1).await;
    let out = app.dir.path().join("fetched");
    std::fs::create_dir_all(&out).unwrap();

    // imaging_dicom/ is a link to a folder outside --out that holds the
    // first instance at its old-layout place.
    let outside = app.dir.path().join("outside");
    let outside_file = outside.join(format!("{STUDY}/{SERIES}/IM0001"));
    std::fs::create_dir_all(outside_file.parent().unwrap()).unwrap();
    std::fs::write(&outside_file, &ct1).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("imaging_dicom")).unwrap();
    // The second instance, listed by an earlier index.csv, has a second
    // name outside --out.
    let kept = app.dir.path().join("kept.dcm");
    std::fs::write(&kept, &ct2).unwrap();
    std::fs::create_dir_all(out.join("elsewhere")).unwrap();
    std::fs::hard_link(&kept, out.join("elsewhere/second.dcm")).unwrap();
    let manifest = centre.manifest(&app).await;
    let file2 = entry_for(&manifest, &ct2)["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(
        out.join("index.csv"),
        format!("path,file_id\nelsewhere/second.dcm,{file2}\n"),
    )
    .unwrap();

    let fetched = centre.fetch(&app, app.centre_addr.port(), &out);
    assert!(fetched.ok, "{}", fetched.stderr);
    assert!(
        fetched.stderr.contains("2 fetched now") && !fetched.stderr.contains("moved"),
        "{}",
        fetched.stderr
    );
    let new1 = out.join(format!("DICOM/{STUDY}/{SERIES}/{sop1}.dcm"));
    let new2 = out.join(format!("DICOM/{STUDY}/{SERIES}/{sop2}.dcm"));
    assert_eq!(std::fs::read(new1).unwrap(), ct1);
    assert_eq!(std::fs::read(new2).unwrap(), ct2);
    assert_eq!(std::fs::read(&outside_file).unwrap(), ct1, "left as it was");
    assert!(out.join("imaging_dicom").is_symlink());
    assert_eq!(
        std::fs::metadata(&kept).unwrap().nlink(),
        2,
        "both names stay"
    );
    assert_eq!(
        std::fs::read(out.join("elsewhere/second.dcm")).unwrap(),
        ct2
    );
    app.stop().await;
}
