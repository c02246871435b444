//! DICOMweb on the centre listener through the real server and real mutual
//! TLS: QIDO-RS searches see exactly the grant's DICOM files (counts
//! included), WADO-RS retrieves series and instances as multipart with the
//! original bytes, metadata carries the header, and each retrieved
//! instance counts as a download of its file, audited under the DICOMweb
//! actions. Refusals and CORS are in `dicomweb_refusals.rs`.

use casegate::upload::dicom::testdata::{Image, ct_image};
use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app};
use crate::grants::{Centre, grant, register_centre};

pub const STUDY: &str = "1.2.826.0.1.3680043.8.498.7";
pub const SERIES_A: &str = "1.2.826.0.1.3680043.8.498.7.1";
pub const SERIES_B: &str = "1.2.826.0.1.3680043.8.498.7.2";
pub const SERIES_OUT: &str = "1.2.826.0.1.3680043.8.498.7.3";

/// A DICOM file of the fixture.
pub struct Dcm {
    pub file_id: String,
    pub sop: String,
    pub bytes: Vec<u8>,
}

/// A case with three granted CT images in two series, a granted PDF, and
/// one image outside the grant.
pub struct Fixture {
    pub app: TestApp,
    pub centre: Centre,
    pub grant_id: String,
    pub token: String,
    /// Granted, in viewer order: series A by instance number, then B.
    pub granted: Vec<Dcm>,
    pub outside: Dcm,
    pub pdf: String,
}

fn image(series: &'static str, n: u32, number: u32) -> (String, Vec<u8>) {
    let sop = format!("{series}.{n}");
    let pixels: Vec<u8> = (0..16 * 16 * 2)
        .map(|i| (i * 7 + n as usize) as u8)
        .collect();
    let image = Image {
        sop_instance_uid: &sop,
        instance_number: Some(number),
        rows: Some((16, 16)),
        frames: None,
        pixels,
    };
    let bytes = ct_image(STUDY, series, "Doe^Jane", &image);
    (sop, bytes)
}

pub async fn fixture(max_downloads: i64) -> Fixture {
    fixture_on(spawn_app().await, max_downloads).await
}

pub async fn fixture_on(app: TestApp, max_downloads: i64) -> Fixture {
    let (case, patient) = app.create_case(None).await;
    // Uploaded out of order: the answers are in instance-number order.
    let plan = [
        (SERIES_A, 1, 2),
        (SERIES_A, 2, 1),
        (SERIES_B, 1, 1),
        (SERIES_OUT, 1, 1),
    ];
    let mut images = Vec::new();
    for (series, n, number) in plan {
        let (sop, bytes) = image(series, n, number);
        let name = format!("{sop}.dcm");
        app.upload(&patient, &name, Some("imaging_dicom"), &bytes, 64_000)
            .await;
        images.push((name, sop, series, bytes));
    }
    app.upload(
        &patient,
        "report.pdf",
        Some("imaging_report"),
        b"%PDF-1.7 report",
        64_000,
    )
    .await;
    let manifest = app.patient_manifest(&patient).await;
    let id_of = |name: &str| -> String {
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["filename"] == name)
            .unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut dcms: Vec<Dcm> = images
        .into_iter()
        .map(|(name, sop, _, bytes)| Dcm {
            file_id: id_of(&name),
            sop,
            bytes,
        })
        .collect();
    let outside = dcms.pop().unwrap();
    dcms.swap(0, 1);
    let pdf = id_of("report.pdf");
    let centre = register_centre(&app, "Radiology Basel").await;
    let mut file_ids: Vec<&str> = dcms.iter().map(|d| d.file_id.as_str()).collect();
    file_ids.push(&pdf);
    let body = json!({ "centre_id": centre.id, "file_ids": file_ids,
        "expires_in_secs": 600, "max_downloads": max_downloads });
    let (grant_id, token) = grant(&app, &case, body).await;
    Fixture {
        app,
        centre,
        grant_id,
        token,
        granted: dcms,
        outside,
        pdf,
    }
}

impl Fixture {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.centre.get(path, &self.token).send().await.unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/dicom+json");
        resp.json().await.unwrap()
    }

    /// The downloads left of a file, from the grant listing.
    pub async fn downloads_left(&self, file_id: &str) -> i64 {
        let (info, _) = self.centre.grant_listing(&self.token).await;
        info["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file_id"] == file_id)
            .unwrap()["downloads_left"]
            .as_i64()
            .unwrap()
    }
}

/// The first value of attribute `tag` in a DICOM JSON object.
pub fn value<'a>(object: &'a Value, tag: &str) -> &'a Value {
    &object[tag]["Value"][0]
}

/// The parts of a `multipart/related` body: each part's headers and bytes.
pub fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1).unwrap().trim();
    let delimiter = format!("--{boundary}").into_bytes();
    let mut pieces = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        pieces.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    assert_eq!(rest, b"--\r\n", "closing delimiter");
    assert!(pieces[0].is_empty());
    pieces[1..]
        .iter()
        .map(|p| {
            let p = p.strip_prefix(b"\r\n").unwrap();
            let split = p.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let headers = String::from_utf8(p[..split].to_vec()).unwrap();
            let bytes = p[split + 4..].strip_suffix(b"\r\n").unwrap().to_vec();
            (headers, bytes)
        })
        .collect()
}

#[tokio::test]
async fn qido_searches_see_exactly_the_grants_dicom_files() {
    let f = fixture(3).await;
    let studies = f.json("/dicomweb/studies").await;
    let studies = studies.as_array().unwrap();
    assert_eq!(studies.len(), 1);
    let study = &studies[0];
    assert_eq!(value(study, "0020000D"), STUDY);
    assert_eq!(value(study, "00100010")["Alphabetic"], "Doe^Jane");
    assert_eq!(value(study, "00081030"), "CT CHEST");
    assert_eq!(value(study, "00080061"), "CT");
    // Counts over the grant only: the third series is not the centre's.
    assert_eq!(value(study, "00201206"), 2, "NumberOfStudyRelatedSeries");
    assert_eq!(value(study, "00201208"), 3, "NumberOfStudyRelatedInstances");

    let series = f.json(&format!("/dicomweb/studies/{STUDY}/series")).await;
    let uids: Vec<&Value> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| value(s, "0020000E"))
        .collect();
    assert_eq!(uids, vec![SERIES_A, SERIES_B]);
    assert_eq!(
        value(&series[0], "00201209"),
        2,
        "NumberOfSeriesRelatedInstances"
    );
    assert_eq!(value(&series[0], "00080060"), "CT");

    let path = format!("/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances");
    let instances = f.json(&path).await;
    let sops: Vec<&Value> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| value(i, "00080018"))
        .collect();
    assert_eq!(
        sops,
        vec![f.granted[0].sop.as_str(), f.granted[1].sop.as_str()]
    );
    assert_eq!(value(&instances[0], "00200013"), 1);
    assert_eq!(value(&instances[0], "00280010"), 16);

    // The file outside the grant: not found by any search.
    let all = f
        .json(&format!("/dicomweb/studies/{STUDY}/instances"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let sop = &f.outside.sop;
    let by_uid = f
        .json(&format!(
            "/dicomweb/studies/{STUDY}/instances?SOPInstanceUID={sop}"
        ))
        .await;
    assert!(by_uid.as_array().unwrap().is_empty());
    let resp = f
        .get(&format!(
            "/dicomweb/studies/{STUDY}/series/{SERIES_OUT}/instances"
        ))
        .await;
    assert_eq!(resp.status(), 404);
    let resp = f.get("/dicomweb/studies/1.2.3.999/series").await;
    assert_eq!(resp.status(), 404);

    // Matching keys, paging.
    let ct = f
        .json("/dicomweb/studies?ModalitiesInStudy=CT&PatientName=doe*&limit=5")
        .await;
    assert_eq!(ct.as_array().unwrap().len(), 1);
    let mr = f.json("/dicomweb/studies?ModalitiesInStudy=MR").await;
    assert!(mr.as_array().unwrap().is_empty());
    let page = f.json(&format!("{path}?limit=1&offset=1")).await;
    assert_eq!(value(&page[0], "00080018"), f.granted[1].sop.as_str());
    let resp = f.get("/dicomweb/studies?BodyPartExamined=CHEST").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["warning"]
            .to_str()
            .unwrap()
            .contains("BodyPartExamined")
    );

    let audit = f.app.audit().await;
    let searches = audit
        .iter()
        .filter(|e| e["action"] == "dicomweb.search" && e["outcome"] == "allow")
        .count();
    assert!(searches >= 8, "every search audited: {searches}");
    assert!(audit.iter().any(|e| e["action"] == "dicomweb.search"
        && e["outcome"] == "deny"
        && e["grant_id"] == f.grant_id.as_str()));
    f.app.stop().await;
}

#[tokio::test]
async fn wado_retrieves_series_and_instances_and_counts_each_file_once() {
    let f = fixture(2).await;
    let resp = f
        .get(&format!("/dicomweb/studies/{STUDY}/series/{SERIES_A}"))
        .await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("multipart/related; type=\"application/dicom\""));
    let body = resp.bytes().await.unwrap();
    let got = parts(&content_type, &body);
    assert_eq!(got.len(), 2);
    for ((headers, bytes), dcm) in got.iter().zip(&f.granted[..2]) {
        assert!(
            headers.contains("transfer-syntax=1.2.840.10008.1.2.1"),
            "{headers}"
        );
        assert!(bytes == &dcm.bytes, "{} comes back as uploaded", dcm.sop);
    }
    assert_eq!(f.downloads_left(&f.granted[0].file_id).await, 1);
    assert_eq!(
        f.downloads_left(&f.granted[2].file_id).await,
        2,
        "other series untouched"
    );

    // One instance of the other series.
    let b = &f.granted[2];
    let path = format!(
        "/dicomweb/studies/{STUDY}/series/{SERIES_B}/instances/{}",
        b.sop
    );
    let resp = f.get(&path).await;
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let got = parts(&content_type, &resp.bytes().await.unwrap());
    assert_eq!(got.len(), 1);
    assert!(got[0].1 == b.bytes);
    assert_eq!(f.downloads_left(&b.file_id).await, 1);

    // The whole study: each granted image once, the PDF and the image
    // outside the grant never.
    let resp = f.get(&format!("/dicomweb/studies/{STUDY}")).await;
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let got = parts(&content_type, &resp.bytes().await.unwrap());
    assert_eq!(got.len(), 3);
    for dcm in &f.granted {
        assert_eq!(f.downloads_left(&dcm.file_id).await, 0);
    }
    assert_eq!(f.downloads_left(&f.pdf).await, 2);

    // Used up: the next retrieval is refused.
    let resp = f
        .get(&format!("/dicomweb/studies/{STUDY}/series/{SERIES_A}"))
        .await;
    assert_eq!(resp.status(), 403);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "grant_exhausted");
    let resp = f
        .get(&format!(
            "/dicomweb/studies/{STUDY}/series/{SERIES_A}/metadata"
        ))
        .await;
    assert_eq!(
        resp.status(),
        403,
        "metadata ends with the file's downloads"
    );
    // Still found by a search, marked as no longer retrievable.
    let instances = f
        .json(&format!(
            "/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances"
        ))
        .await;
    assert_eq!(instances.as_array().unwrap().len(), 2);
    for instance in instances.as_array().unwrap() {
        assert_eq!(value(instance, "00080056"), "UNAVAILABLE");
    }

    // Audited under the DICOMweb action: a start and an end per file.
    let audit = f.app.audit().await;
    for dcm in &f.granted {
        let of_file: Vec<&Value> = audit
            .iter()
            .filter(|e| e["action"] == "dicomweb.retrieve" && e["file_id"] == dcm.file_id.as_str())
            .collect();
        let starts = of_file
            .iter()
            .filter(|e| e["reason"].as_str().unwrap().starts_with("start"))
            .count();
        let ends = of_file
            .iter()
            .filter(|e| e["reason"].as_str().unwrap().starts_with("end"))
            .count();
        assert_eq!((starts, ends), (2, 2), "{}", dcm.sop);
    }
    assert!(
        !audit
            .iter()
            .any(|e| e["file_id"] == f.outside.file_id.as_str()
                && e["action"] == "dicomweb.retrieve")
    );
    f.app.stop().await;
}

#[tokio::test]
async fn metadata_is_the_header_without_pixels_and_costs_no_download() {
    let f = fixture(1).await;
    let dcm = &f.granted[0];
    let path = format!(
        "/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances/{}/metadata",
        dcm.sop
    );
    let metadata = f.json(&path).await;
    let metadata = metadata.as_array().unwrap();
    assert_eq!(metadata.len(), 1);
    let header = &metadata[0];
    assert_eq!(value(header, "00080018"), dcm.sop.as_str());
    assert_eq!(value(header, "0020000E"), SERIES_A);
    assert_eq!(value(header, "00100010")["Alphabetic"], "Doe^Jane");
    assert_eq!(value(header, "00280011"), 16);
    assert_eq!(value(header, "00083002"), "1.2.840.10008.1.2.1");
    assert!(header.get("7FE00010").is_none(), "no pixel data");

    let study = f.json(&format!("/dicomweb/studies/{STUDY}/metadata")).await;
    assert_eq!(study.as_array().unwrap().len(), 3);
    assert_eq!(
        f.downloads_left(&dcm.file_id).await,
        1,
        "metadata is not a download"
    );
    let audit = f.app.audit().await;
    // Every file whose header went out is named: the study's three too.
    for d in &f.granted {
        let named = audit
            .iter()
            .filter(|e| {
                e["action"] == "dicomweb.metadata"
                    && e["outcome"] == "allow"
                    && e["file_id"] == d.file_id.as_str()
            })
            .count();
        let expected = if d.file_id == dcm.file_id { 2 } else { 1 };
        assert_eq!(named, expected, "{}", d.file_id);
    }
    f.app.stop().await;
}

/// A file completed before the index existed has none: its header is read
/// from the stored object on first use, and the index stored.
#[tokio::test]
async fn files_indexed_before_dicomweb_are_read_once_on_first_use() {
    let f = fixture(1).await;
    let db = f.app.db().await;
    sqlx::query("UPDATE files SET dicom_index_sealed = NULL")
        .execute(&db)
        .await
        .unwrap();
    let path = format!("/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances");
    let instances = f.json(&path).await;
    assert_eq!(value(&instances[0], "00080018"), f.granted[0].sop.as_str());
    let missing: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM files WHERE dicom_index_sealed IS NULL AND file_id IN ($1, $2, $3)",
    )
    .bind(&f.granted[0].file_id)
    .bind(&f.granted[1].file_id)
    .bind(&f.granted[2].file_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(missing, 0, "the index is stored once read");

    // A stored index that no longer opens is read again, not a failure of
    // every request of the grant.
    sqlx::query("UPDATE files SET dicom_index_sealed = $1 WHERE file_id = $2")
        .bind(vec![0u8])
        .bind(&f.granted[1].file_id)
        .execute(&db)
        .await
        .unwrap();
    let instances = f.json(&path).await;
    assert_eq!(instances.as_array().unwrap().len(), 2);
    let repaired: Vec<u8> =
        sqlx::query_scalar("SELECT dicom_index_sealed FROM files WHERE file_id = $1")
            .bind(&f.granted[1].file_id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(repaired.len() > 1, "a fresh index is stored");
    f.app.stop().await;
}

#[tokio::test]
async fn frames_are_the_pixel_bytes_and_no_new_download() {
    let f = fixture(1).await;
    let dcm = &f.granted[0];
    let base = format!(
        "/dicomweb/studies/{STUDY}/series/{SERIES_A}/instances/{}",
        dcm.sop
    );
    let resp = f.get(&format!("{base}/frames/1")).await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("multipart/related; type=\"application/octet-stream\""));
    let got = parts(&content_type, &resp.bytes().await.unwrap());
    assert_eq!(got.len(), 1);
    // The image's 16×16 16-bit pixels are the file's last 512 bytes.
    assert!(got[0].1 == dcm.bytes[dcm.bytes.len() - 512..]);
    assert!(got[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"));
    assert_eq!(
        f.downloads_left(&dcm.file_id).await,
        1,
        "a frame is not a download"
    );
    for (frames, status) in [("2", 404), ("0", 400), ("1,x", 400), ("", 404)] {
        let resp = f.get(&format!("{base}/frames/{frames}")).await;
        assert_eq!(resp.status().as_u16(), status, "frames/{frames}");
    }
    let audit = f.app.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "dicomweb.frames"
        && e["file_id"] == dcm.file_id.as_str()
        && e["reason"].as_str().unwrap().contains("(continuation)")));
    f.app.stop().await;
}

#[tokio::test]
async fn frames_of_encapsulated_pixel_data_are_its_fragments() {
    use casegate::upload::dicom::testdata::encapsulated_image;
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    let (study, series, sop) = (
        "1.2.826.0.1.3680043.8.498.8",
        "1.2.826.0.1.3680043.8.498.8.1",
        "1.2.826.0.1.3680043.8.498.8.1.1",
    );
    let first = vec![0xAB; 70_000]; // crosses a 64 KiB chunk
    let file = encapsulated_image(study, series, sop, &[&first, b"second frame"]);
    app.upload(&patient, "us.dcm", Some("imaging_dicom"), &file, 64_000)
        .await;
    let centre = register_centre(&app, "Cardiology").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 600, "max_downloads": 1 });
    let (_, token) = grant(&app, &case, body).await;
    let base = format!("/dicomweb/studies/{study}/series/{series}/instances/{sop}");
    let resp = centre
        .get(&format!("{base}/frames/2,1"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let got = parts(&content_type, &resp.bytes().await.unwrap());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, b"second frame");
    assert!(got[1].1 == first);
    assert!(
        got[0].0.contains("transfer-syntax=1.2.840.10008.1.2.4.50"),
        "{}",
        got[0].0
    );
    let resp = centre
        .get(&format!("{base}/frames/3"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}
