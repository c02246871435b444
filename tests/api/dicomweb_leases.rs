//! A WADO-RS retrieval starts the next part's download while the part
//! before it streams. However long that part takes, the waiting part's
//! lease stays alive: another request for its file must not settle it as
//! a dead gateway's (which would cut the retrieval when its turn came).

use std::time::Duration;

use casegate::upload::dicom::testdata::{Image, ct_image};
use serde_json::json;

use crate::common::spawn_app;
use crate::dicomweb::parts;
use crate::grants::{grant, register_centre};

const STUDY: &str = "1.2.826.0.1.3680043.8.498.41";
const SERIES: &str = "1.2.826.0.1.3680043.8.498.41.1";

fn instance(n: u8, pixels: usize) -> (String, Vec<u8>) {
    let sop = format!("{SERIES}.{n}");
    let image = Image {
        sop_instance_uid: &sop,
        instance_number: Some(u32::from(n)),
        rows: None,
        frames: None,
        pixels: (0..pixels).map(|i| (i % 251) as u8 ^ n).collect(),
    };
    let bytes = ct_image(STUDY, SERIES, "Doe^Jane", &image);
    (sop, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_waiting_behind_a_long_one_keeps_its_lease() {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    // The first part is larger than every buffer between the gateway and
    // the client, so it is still streaming while the client pauses.
    let (_, big) = instance(1, 48 * 1024 * 1024);
    let (_, small) = instance(2, 4096);
    for (name, bytes) in [("IM0001", &big), ("IM0002", &small)] {
        app.upload(&patient, name, Some("imaging_dicom"), bytes, 8 << 20)
            .await;
    }
    let manifest = app.patient_manifest(&patient).await;
    let small_id = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == "IM0002")
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let centre = register_centre(&app, "Slow Reader").await;
    let body = json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": 2 });
    let (_, token) = grant(&app, &case, body).await;

    let mut resp = centre
        .get(
            &format!("/dicomweb/studies/{STUDY}/series/{SERIES}"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let mut body = Vec::new();
    while body.len() < 1024 * 1024 {
        body.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
    // The first part now takes "more than two minutes": the clock moves
    // past the lease TTL while the second part's download waits.
    app.clock.advance(121);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Another request for the second file settles that file's leases
    // whose heartbeat is older than the TTL.
    let other = centre
        .get(&format!("/api/v1/grant/files/{small_id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.bytes().await.unwrap().to_vec(), small);

    while let Some(chunk) = resp.chunk().await.expect("the retrieval is not cut") {
        body.extend_from_slice(&chunk);
    }
    let got = parts(&content_type, &body);
    assert_eq!(got.len(), 2);
    assert!(got[0].1 == big, "first part whole");
    assert_eq!(got[1].1, small, "second part whole");
    app.stop().await;
}
