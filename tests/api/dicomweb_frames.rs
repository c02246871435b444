//! WADO-RS frames through the real server: a request is one download of
//! the file's pieces (one lease, one start and one end entry, however many
//! frames and fragments it asks for), refused with a problem before any
//! byte when the file's budget cannot cover it; and an index read from a
//! stored header is taken from the whole header, not from the first read
//! window.

use casegate::upload::dicom::testdata::{Image, ct_image, encapsulated_image};
use serde_json::{Value, json};

use crate::common::spawn_app;
use crate::dicomweb::parts;
use crate::grants::{grant, register_centre};

const STUDY: &str = "1.2.826.0.1.3680043.8.498.11";
const SERIES: &str = "1.2.826.0.1.3680043.8.498.11.1";
const SOP: &str = "1.2.826.0.1.3680043.8.498.11.1.1";

fn entries<'a>(audit: &'a [Value], file_id: &str, starting: &str) -> Vec<&'a Value> {
    audit
        .iter()
        .filter(|e| {
            e["action"] == "dicomweb.frames"
                && e["file_id"] == file_id
                && e["reason"].as_str().unwrap_or("").starts_with(starting)
        })
        .collect()
}

#[tokio::test]
async fn frames_are_one_download_per_request_and_refused_whole_when_used_up() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let fragments: Vec<Vec<u8>> = (1..=3u8).map(|n| vec![n; 1000]).collect();
    let refs: Vec<&[u8]> = fragments.iter().map(|f| f.as_slice()).collect();
    let file = encapsulated_image(STUDY, SERIES, SOP, &refs);
    app.upload(&patient, "cine.dcm", Some("imaging_dicom"), &file, 64_000)
        .await;
    let file_id = app.patient_manifest(&patient).await["files"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let centre = register_centre(&app, "Echo Lab").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1 });
    let (_, token) = grant(&app, &case, body).await;
    let base = format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}");

    let resp = centre
        .get(&format!("{base}/frames/3,1,2"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let got = parts(&content_type, &resp.bytes().await.unwrap());
    let bodies: Vec<&Vec<u8>> = got.iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, vec![&fragments[2], &fragments[0], &fragments[1]]);
    let audit = app.audit().await;
    assert_eq!(
        (
            entries(&audit, &file_id, "start").len(),
            entries(&audit, &file_id, "end").len()
        ),
        (1, 1),
        "three frames, one download"
    );
    assert!(
        entries(&audit, &file_id, "start")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("(3000 bytes in pieces)")
    );

    // A frame asked twice in one list is refused (it would send its
    // fragments twice).
    let resp = centre
        .get(&format!("{base}/frames/1,2,1"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The file's budget (one download: its size) cannot cover the three
    // frames once more: refused as a whole, before any byte goes out.
    let resp = centre
        .get(&format!("{base}/frames/1,2,3"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "a problem, not a cut multipart body"
    );
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "grant_exhausted");
    let audit = app.audit().await;
    assert_eq!(
        entries(&audit, &file_id, "start").len(),
        1,
        "nothing leased"
    );
    app.stop().await;
}

/// A header whose first read window ends exactly between two elements
/// parses, short of the attributes after the cut (the image geometry
/// here): the index of a file completed before the index existed must be
/// read from the whole header, or its frames are lost for good.
#[tokio::test]
async fn an_index_read_later_covers_the_whole_header() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let pixels: Vec<u8> = (0..16 * 16 * 2).map(|i| (i * 3) as u8).collect();
    let image = Image {
        sop_instance_uid: SOP,
        instance_number: Some(1),
        rows: Some((16, 16)),
        frames: None,
        pixels: pixels.clone(),
    };
    let plain = ct_image(STUDY, SERIES, "Doe^Jane", &image);
    // Before (0028,0002) SamplesPerPixel, a private OB element that ends
    // at byte 65,536: the gateway's first header read.
    let geometry = plain
        .windows(6)
        .position(|w| w == [0x28, 0x00, 0x02, 0x00, b'U', b'S'])
        .unwrap();
    let len = 64 * 1024 - geometry - 12;
    let mut file = plain[..geometry].to_vec();
    file.extend_from_slice(&[0x21, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    file.extend_from_slice(&(len as u32).to_le_bytes());
    file.extend(std::iter::repeat_n(0x42, len));
    assert_eq!(file.len(), 64 * 1024);
    file.extend_from_slice(&plain[geometry..]);
    app.upload(&patient, "ct.dcm", Some("imaging_dicom"), &file, 64_000)
        .await;
    let db = app.db().await;
    sqlx::query("UPDATE files SET dicom_index_sealed = NULL")
        .execute(&db)
        .await
        .unwrap();
    let centre = register_centre(&app, "Thorax").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1 });
    let (_, token) = grant(&app, &case, body).await;
    let base = format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}");
    let resp = centre
        .get(&format!("{base}/frames/1"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the geometry after the cut is indexed");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let got = parts(&content_type, &resp.bytes().await.unwrap());
    assert!(got[0].1 == pixels);
    let instances: Value = centre
        .get(
            &format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances"),
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(instances[0]["00280010"]["Value"][0], 16, "Rows");
    app.stop().await;
}

/// Frames are the file's pixel data: once its downloads are used up (a
/// retrieval of the instance under max_downloads = 1), no frame is sent
/// either, as its metadata and retrieval are refused.
#[tokio::test]
async fn no_frame_of_a_used_up_instance() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let fragments: Vec<Vec<u8>> = (1..=2u8).map(|n| vec![n; 1000]).collect();
    let refs: Vec<&[u8]> = fragments.iter().map(|f| f.as_slice()).collect();
    let file = encapsulated_image(STUDY, SERIES, SOP, &refs);
    app.upload(&patient, "cine.dcm", Some("imaging_dicom"), &file, 64_000)
        .await;
    let centre = register_centre(&app, "Echo Lab").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1 });
    let (_, token) = grant(&app, &case, body).await;
    let base = format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}");
    let resp = centre.get(&base, &token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();
    // As after a retrieval cut early: its one use is spent, but hardly
    // any of the file's byte budget.
    sqlx::query("UPDATE grant_files SET bytes_served = 0")
        .execute(&app.db().await)
        .await
        .unwrap();
    // A file recorded before object digests were (its fragments are
    // walked from the object, and cached by its plaintext SHA-256).
    sqlx::query("UPDATE files SET object_sha256 = NULL")
        .execute(&app.db().await)
        .await
        .unwrap();
    // Refused before the instance's pixel data is even looked at: a frame
    // it does not have is "used up" too, not "not found".
    for frames in ["1", "99"] {
        let resp = centre
            .get(&format!("{base}/frames/{frames}"), &token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "frames {frames}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "grant_exhausted");
    }
    app.stop().await;
}

/// An instance whose pixel data cannot be located because its stored
/// object does not decrypt (a bit flipped at rest) is refused, and the
/// audit log says so: every refusal of a frames request has its entry.
#[tokio::test]
async fn a_frames_request_that_fails_to_read_its_object_is_audited() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let fragments: Vec<Vec<u8>> = (1..=2u8).map(|n| vec![n; 1000]).collect();
    let refs: Vec<&[u8]> = fragments.iter().map(|f| f.as_slice()).collect();
    let file = encapsulated_image(STUDY, SERIES, SOP, &refs);
    app.upload(&patient, "cine.dcm", Some("imaging_dicom"), &file, 64_000)
        .await;
    let file_id = app.patient_manifest(&patient).await["files"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let object = app.config.fs_root().join(casegate::store::object_key(
        &casegate::ids::CaseId::parse(&case).unwrap(),
        &casegate::ids::FileId::parse(&file_id).unwrap(),
    ));
    let mut stored = std::fs::read(&object).unwrap();
    let last = stored.len() - 1;
    stored[last] ^= 1;
    std::fs::write(&object, stored).unwrap();
    let centre = register_centre(&app, "Echo Lab").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1 });
    let (_, token) = grant(&app, &case, body).await;
    let base = format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}");
    let resp = centre
        .get(&format!("{base}/frames/1"), &token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let audit = app.audit().await;
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|e| {
            e["action"] == "dicomweb.frames"
                && e["outcome"] == "deny"
                && e["file_id"] == file_id.as_str()
        })
        .collect();
    assert_eq!(refused.len(), 1, "{audit:#?}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("pixel data not located"),
        "{}",
        refused[0]
    );
    app.stop().await;
}
