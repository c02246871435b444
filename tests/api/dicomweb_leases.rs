//! A WADO-RS retrieval starts the next part's download while the part
//! before it streams. However long that part takes, the waiting part's
//! lease stays alive: another request for its file must not settle it as
//! a dead gateway's (which would cut the retrieval when its turn came).
//! But only while that part makes progress: a client that stopped reading
//! must not hold the next file's download budget for good.

use std::time::Duration;

use casegate::upload::dicom::testdata::{Image, ct_image};
use serde_json::json;

use crate::common::{TestApp, spawn_app};
use crate::dicomweb::parts;
use crate::grants::{Centre, grant, register_centre};

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

/// A case with a 48 MiB instance (larger than every buffer between the
/// gateway and the client, so it is still streaming while the client
/// pauses) and a small one, a grant of `max_downloads` for both, and a
/// retrieval of the series of which 1 MiB was read.
struct Paused {
    app: TestApp,
    centre: Centre,
    token: String,
    small_id: String,
    big: Vec<u8>,
    small: Vec<u8>,
    resp: reqwest::Response,
    content_type: String,
    body: Vec<u8>,
}

async fn pause_a_retrieval(max_downloads: u32) -> Paused {
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
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
    let body =
        json!({ "centre_id": centre.id, "expires_in_secs": 3600, "max_downloads": max_downloads });
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
    read_on(&mut resp, &mut body, 1024 * 1024).await;
    Paused {
        app,
        centre,
        token,
        small_id,
        big,
        small,
        resp,
        content_type,
        body,
    }
}

/// Reads at least `more` bytes of the retrieval.
async fn read_on(resp: &mut reqwest::Response, body: &mut Vec<u8>, more: usize) {
    let until = body.len() + more;
    while body.len() < until {
        body.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
}

impl Paused {
    /// Another request for the small file: it settles that file's leases
    /// whose heartbeat is older than the TTL.
    async fn fetch_small(&self) -> reqwest::Response {
        let path = format!("/api/v1/grant/files/{}", self.small_id);
        self.centre.get(&path, &self.token).send().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_waiting_behind_a_long_one_keeps_its_lease() {
    let mut p = pause_a_retrieval(2).await;
    // The first part takes "more than two minutes", moving all along: the
    // clock passes the lease TTL in two steps while the client reads on
    // in between and the second part's download waits.
    p.app.clock.advance(61);
    tokio::time::sleep(Duration::from_secs(3)).await;
    read_on(&mut p.resp, &mut p.body, 4 * 1024 * 1024).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.app.clock.advance(61);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let other = p.fetch_small().await;
    assert_eq!(other.status(), 200);
    assert_eq!(other.bytes().await.unwrap().to_vec(), p.small);

    while let Some(chunk) = p.resp.chunk().await.expect("the retrieval is not cut") {
        p.body.extend_from_slice(&chunk);
    }
    let got = parts(&p.content_type, &p.body);
    assert_eq!(got.len(), 2);
    assert!(got[0].1 == p.big, "first part whole");
    assert_eq!(got[1].1, p.small, "second part whole");
    p.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_retrieval_does_not_hold_the_next_files_budget() {
    // One download per file: the waiting part's lease holds the small
    // file's only use.
    let mut p = pause_a_retrieval(1).await;
    // The client stops reading for more than a lease's lifetime (the
    // buffers between it and the gateway fill in the first seconds).
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.app.clock.advance(121);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The waiting part's lease was left to go stale: it is settled (it
    // sent nothing, so its use comes back) and the file downloads.
    let other = p.fetch_small().await;
    assert_eq!(
        other.status(),
        200,
        "the waiting part still holds the budget"
    );
    assert_eq!(other.bytes().await.unwrap().to_vec(), p.small);

    // The stalled retrieval, read on, is cut at the part it lost.
    let cut = loop {
        match p.resp.chunk().await {
            Ok(Some(chunk)) => p.body.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the retrieval ends cut, not whole");
    assert!(p.body.len() >= p.big.len(), "the first part was sent whole");
    p.app.stop().await;
}
