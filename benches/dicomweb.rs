//! WADO-RS retrieval of a series against plaintext downloads of the same
//! files, one gateway, one run (`bench/dicomweb`): a CT-like series of
//! DICOM files is uploaded, granted, then (a) retrieved as one
//! `multipart/related` answer and (b) downloaded file by file over
//! `/api/v1/grant/files/{id}`, both over the centre listener with mutual
//! TLS. Reports MiB/s of each and their ratio. A measurement, never a test.
//!
//! `cargo bench --bench dicomweb -- [MiB, default 1024] [files, default 64]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

#[path = "support/mod.rs"]
mod support;
use support::centre::{Centre, drain};
use support::*;

const STUDY: &str = "1.2.826.0.1.3680043.8.498.77";
const SERIES: &str = "1.2.826.0.1.3680043.8.498.77.1";

/// Uploads one file's bytes over tus in PATCHes of 8 MiB.
async fn upload(gw: &Gateway, c: &reqwest::Client, token: &str, bytes: Vec<u8>) {
    let url = gw.create(c, token, bytes.len() as u64).await;
    let mut offset = 0usize;
    for piece in bytes.chunks(8 * MIB as usize) {
        let resp = c
            .patch(&url)
            .bearer_auth(token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        offset += piece.len();
    }
}

#[tokio::main]
async fn main() {
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let mib = numbers.next().unwrap_or(1024);
    let files = numbers.next().unwrap_or(64).max(1);
    let per_file = (mib * MIB / files) as usize;
    println!(
        "DICOMweb benchmark: a series of {files} files, {mib} MiB, HTTP/1.1 over TLS 1.3, loopback"
    );

    let gw = Gateway::start();
    let c = client(&gw.ca);
    let token = gw.patient(&c).await;
    for n in 1..=files {
        let sop = format!("{SERIES}.{n}");
        let image = casegate::upload::dicom::testdata::Image {
            sop_instance_uid: &sop,
            instance_number: Some(n as u32),
            rows: None,
            frames: None,
            pixels: vec![(n % 251) as u8; per_file],
        };
        let bytes =
            casegate::upload::dicom::testdata::ct_image(STUDY, SERIES, "Bench^Patient", &image);
        upload(&gw, &c, &token, bytes).await;
    }

    let centre = Centre::with_grant(&gw, &c).await;
    let ids = centre.file_ids().await;

    // (b) first: the files one after another, as a download manager would.
    let started = Instant::now();
    let mut plain_bytes = 0;
    for id in &ids {
        plain_bytes += drain(centre.get(&format!("/api/v1/grant/files/{id}")))
            .await
            .0;
    }
    let plain = mib_s(plain_bytes, started.elapsed().as_secs_f64());

    // (a) the series as one WADO-RS answer.
    let started = Instant::now();
    let (wado_bytes, _) = drain(
        centre
            .get(&format!("/dicomweb/studies/{STUDY}/series/{SERIES}"))
            .header("Accept", "multipart/related; type=\"application/dicom\""),
    )
    .await;
    let wado = mib_s(wado_bytes, started.elapsed().as_secs_f64());
    assert!(
        wado_bytes >= plain_bytes,
        "the multipart answer holds every file"
    );

    println!("(b) plaintext downloads, file by file   {plain:8.0} MiB/s  ({plain_bytes} bytes)");
    println!("(a) WADO-RS series retrieval            {wado:8.0} MiB/s  ({wado_bytes} bytes)");
    println!(
        "ratio WADO-RS / plaintext downloads      {:7.0}%",
        100.0 * wado / plain
    );
}
