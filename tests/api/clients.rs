//! Stock tus clients against the real server: tuspy (Python) and
//! tus-js-client (Node, as used by Uppy), each interrupted mid-upload and
//! resumed. The clients are installed by `.ci/run` (pip, npm in
//! tests/clients); where they are missing the test says so and passes,
//! unless CASEGATE_REQUIRE_CLIENTS is set (CI sets it).

use std::path::Path;
use std::process::Command;

use crate::common::spawn_app_with;
use crate::tus::{pattern, sha256_hex};

pub fn clients_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
}

pub fn available(what: &str, probe: &mut Command) -> bool {
    let ok = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CASEGATE_REQUIRE_CLIENTS").is_none(),
            "{what} is required (CASEGATE_REQUIRE_CLIENTS) but not installed"
        );
        eprintln!("skipped: {what} not installed (see .ci/run)");
    }
    ok
}

async fn run_client(
    name: &str,
    command: &mut Command,
    category: &str,
    s3: Option<casegate::config::S3Config>,
) {
    let app = spawn_app_with(move |c| {
        if let Some(s3) = s3 {
            c.storage.backend = casegate::config::StorageBackend::S3;
            c.storage.s3 = Some(s3);
        }
    })
    .await;
    let (_, patient) = app.create_case(None).await;
    let data = pattern(1_500_000 + 321, 1234);
    let file = app.dir.path().join(name);
    std::fs::write(&file, &data).unwrap();
    let ca = app.dir.path().join("certs/dev-ca.pem");
    let out = command
        .current_dir(clients_dir())
        .arg(&file)
        .arg(name)
        .arg(category)
        .env("CASEGATE_TUS_URL", app.url("/tus/"))
        .env("CASEGATE_TOKEN", &patient)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = app.patient_manifest(&patient).await;
    let f = &manifest["files"][0];
    assert_eq!(f["filename"], name);
    assert_eq!(f["category"], category);
    assert_eq!(f["state"], "complete");
    assert_eq!(f["sha256"], sha256_hex(&data));
    let audit = app.audit().await;
    let patches = audit
        .iter()
        .filter(|e| e["action"] == "upload.patch" && e["outcome"] == "allow")
        .count();
    assert!(
        patches >= 3,
        "several PATCHes, including the resumed ones ({patches})"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_with_interruption_and_resume() {
    if !available(
        "tuspy (pip install tuspy)",
        Command::new("python3").args(["-c", "import tusclient"]),
    ) {
        return;
    }
    let mut cmd = Command::new("python3");
    cmd.arg("tuspy_upload.py");
    run_client("pathology-tuspy.pdf", &mut cmd, "pathology_report", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_on_garage() {
    if !available(
        "tuspy (pip install tuspy)",
        Command::new("python3").args(["-c", "import tusclient"]),
    ) {
        return;
    }
    let Some(s3) = crate::support::garage() else {
        return;
    };
    let mut cmd = Command::new("python3");
    cmd.arg("tuspy_upload.py");
    run_client(
        "pathology-tuspy.pdf",
        &mut cmd,
        "pathology_report",
        Some(s3.config.clone()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_with_interruption_and_resume() {
    let probe = clients_dir().join("node_modules/tus-js-client/package.json");
    if !available(
        "tus-js-client (npm ci in tests/clients)",
        Command::new("test").arg("-f").arg(&probe),
    ) {
        return;
    }
    let mut cmd = Command::new("node");
    cmd.arg("tus_js_upload.mjs");
    run_client("ct-tus-js.zip", &mut cmd, "imaging_report", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_on_garage() {
    let probe = clients_dir().join("node_modules/tus-js-client/package.json");
    if !available(
        "tus-js-client (npm ci in tests/clients)",
        Command::new("test").arg("-f").arg(&probe),
    ) {
        return;
    }
    let Some(s3) = crate::support::garage() else {
        return;
    };
    let mut cmd = Command::new("node");
    cmd.arg("tus_js_upload.mjs");
    run_client(
        "ct-tus-js.zip",
        &mut cmd,
        "imaging_report",
        Some(s3.config.clone()),
    )
    .await;
}
