//! The upload page in a real browser (Debian's chromium driven by
//! playwright-core, `tests/browser/upload-page.mjs`) against the real
//! gateway: a hospital CD folder and two PDFs chosen, a question written,
//! the page reloaded in the middle of the upload, the same files chosen
//! again, the receipt read; then the server's manifest is checked here
//! (every file once, the SHA-256 computed here, categories, studies and
//! series). In English and in Arabic (right to left). A bad and an expired
//! link each show their message and send nothing; the token never reaches a
//! request URL or the gateway's log.
//!
//! Skipped, with the reason printed, when chromium or the test's npm
//! packages are missing, unless `CASEGATE_REQUIRE_BROWSER=1` (CI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app};
use crate::tus::{pattern, sha256_hex};

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether the browser test can run here; prints why not (or fails, in CI).
fn browser_available() -> bool {
    let missing = if !Path::new(CHROMIUM).exists() {
        Some(format!("{CHROMIUM} is missing (apt-get install chromium)"))
    } else if !browser_dir().join("node_modules/playwright-core").exists() {
        Some("tests/browser/node_modules is missing (npm ci in tests/browser)".to_owned())
    } else {
        None
    };
    match missing {
        None => true,
        Some(reason) if std::env::var("CASEGATE_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("browser test required but {reason}")
        }
        Some(reason) => {
            eprintln!("skipping the browser test: {reason}");
            false
        }
    }
}

/// Where screenshots and the script's result go.
fn output_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-output/upload-page").join(name)
}

/// What the patient sends: (path as the page names it, bytes, category).
struct Records {
    root: tempfile::TempDir,
    files: Vec<(String, Vec<u8>, &'static str)>,
}

const STUDY: &str = "1.2.826.0.1.3680043.8.498.4242";

/// A hospital CD (DICOMDIR, OS junk, its image viewer program, two series
/// of one CT study, one image of `big` bytes) and two PDFs whose names
/// suggest their categories.
fn hospital_records(big: usize) -> Records {
    use casegate::upload::dicom::testdata::ct_file;
    let root = tempfile::tempdir().unwrap();
    let cd = root.path().join("HOSPITAL_CD");
    let mut files = Vec::new();
    for (series, count) in [("1", 3usize), ("2", 2)] {
        for n in 0..count {
            let uid = format!("{STUDY}.{series}");
            let pixels = if series == "2" && n == 0 {
                big
            } else {
                20_000 + n
            };
            let path = format!("HOSPITAL_CD/DICOM/S{series}/IM{n:04}");
            files.push((
                path,
                ct_file(STUDY, &uid, "Doe^Jane", pixels),
                "imaging_dicom",
            ));
        }
    }
    for (path, bytes, _) in &files {
        let full = root.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }
    std::fs::write(cd.join("DICOMDIR"), b"not sent").unwrap();
    std::fs::write(cd.join(".DS_Store"), b"not sent").unwrap();
    std::fs::write(cd.join("autorun.inf"), b"[autorun]\nopen=setup.exe").unwrap();
    // The image viewer program the CD carries (five files, none sent).
    for viewer in [
        "setup.exe",
        "Viewer/viewer.exe",
        "Viewer/dcmtk.dll",
        "Viewer/config.xml",
        "Viewer.app/Contents/Info.plist",
    ] {
        let full = cd.join(viewer);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, b"MZ not a record").unwrap();
    }
    let docs = root.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (name, category, seed) in [
        ("Pathology report 2026-03.pdf", "pathology_report", 1),
        ("blood tests march.pdf", "lab_results", 2),
    ] {
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.extend(pattern(30_000, seed));
        std::fs::write(docs.join(name), &pdf).unwrap();
        files.push((name.to_owned(), pdf, category));
    }
    Records { root, files }
}

/// Runs the browser script; panics with its output if it fails.
async fn run_script(app: &TestApp, env: &[(&str, String)]) {
    run_script_trusting(&app.dir.path().join("certs/server.pem"), env).await;
}

/// Runs the browser script against a gateway whose certificate is `cert`.
async fn run_script_trusting(cert: &Path, env: &[(&str, String)]) {
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(browser_dir())
        .arg("upload-page.mjs")
        .env("CASEGATE_SERVER_CERT", cert)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = tokio::time::timeout(std::time::Duration::from_secs(600), cmd.output());
    let output = run.await.expect("browser script timed out").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "browser script failed:\n{stdout}\n{stderr}"
    );
}

fn link(app: &TestApp, token: &str) -> String {
    format!("{}#token={token}", app.url("/upload"))
}

const QUESTION: &str = "Is surgery still possible?\nShould I ask for a PET scan? — 手术还可以吗？";

/// The script's environment for uploading `records` through `link` in
/// `lang`, with screenshots into the output directory named `lang`.
fn upload_env(
    link: String,
    token: &str,
    lang: &str,
    records: &Records,
    summary: &[&str],
    offline: bool,
) -> Vec<(&'static str, String)> {
    let documents: Vec<String> = ["Pathology report 2026-03.pdf", "blood tests march.pdf"]
        .iter()
        .map(|n| {
            records
                .root
                .path()
                .join("docs")
                .join(n)
                .display()
                .to_string()
        })
        .collect();
    let files = json!({
        "folder": records.root.path().join("HOSPITAL_CD").display().to_string(),
        "documents": documents,
    });
    let expect = json!({
        "summary": summary,
        "categories": ["lab_results", "pathology_report"],
        "question": QUESTION,
        "offline": offline,
    });
    vec![
        ("CASEGATE_LINK", link),
        ("CASEGATE_TOKEN", token.to_owned()),
        ("CASEGATE_LANG", lang.to_owned()),
        ("CASEGATE_FILES", files.to_string()),
        ("CASEGATE_EXPECT", expect.to_string()),
        ("CASEGATE_OUT", output_dir(lang).display().to_string()),
    ]
}

/// Uploads the records through the page in `lang` and checks the server's
/// manifest and the page's receipt against them.
async fn upload_in(lang: &str, summary: &[&str], viewer: Option<&str>) {
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let records = hospital_records(48 * 1024 * 1024);
    let question = QUESTION;
    let out = output_dir(lang);
    let documents: Vec<String> = ["Pathology report 2026-03.pdf", "blood tests march.pdf"]
        .iter()
        .map(|n| {
            records
                .root
                .path()
                .join("docs")
                .join(n)
                .display()
                .to_string()
        })
        .collect();
    let files = json!({
        "folder": records.root.path().join("HOSPITAL_CD").display().to_string(),
        "documents": documents,
    });
    let expect = json!({
        "summary": summary,
        "categories": ["lab_results", "pathology_report"],
        "question": question,
        "viewer": viewer,
    });
    run_script(
        &app,
        &[
            ("CASEGATE_LINK", link(&app, &patient)),
            ("CASEGATE_TOKEN", patient.clone()),
            ("CASEGATE_LANG", lang.to_owned()),
            ("CASEGATE_FILES", files.to_string()),
            ("CASEGATE_EXPECT", expect.to_string()),
            ("CASEGATE_OUT", out.display().to_string()),
        ],
    )
    .await;

    let m = app.patient_manifest(&patient).await;
    let listed = m["files"].as_array().unwrap();
    let mut by_name: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for f in listed {
        by_name
            .entry(f["filename"].as_str().unwrap())
            .or_default()
            .push(f);
    }
    let questions = format!("{question}\n");
    let mut expected: Vec<(String, Vec<u8>, &str)> = records.files;
    let questions_name = if lang == "ar" {
        "أسئلتي.txt"
    } else {
        "my-questions.txt"
    };
    expected.push((
        questions_name.to_owned(),
        questions.into_bytes(),
        "patient_questions",
    ));
    for (name, bytes, category) in &expected {
        let entries = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} missing: {m:#}"));
        assert_eq!(
            entries.len(),
            1,
            "{name} uploaded more than once: {entries:?}"
        );
        let f = entries[0];
        assert_eq!(f["state"], "complete", "{name}");
        assert_eq!(f["sha256"], sha256_hex(bytes).as_str(), "{name}");
        assert_eq!(f["size"], bytes.len(), "{name}");
        assert_eq!(f["category"], *category, "{name}");
    }
    assert_eq!(listed.len(), expected.len(), "{m:#}");
    let studies = m["studies"].as_array().unwrap();
    assert_eq!(studies.len(), 1);
    assert_eq!(studies[0]["study_instance_uid"], STUDY);
    let series = studies[0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert!(series.iter().all(|s| s["modality"] == "CT"));

    // The receipt shows what the server recorded.
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let receipt = result["receipt"].as_array().unwrap();
    assert_eq!(receipt.len(), expected.len());
    for row in receipt {
        let name = row["filename"].as_str().unwrap();
        assert_eq!(row["sha256"], by_name[name][0]["sha256"], "{name}");
    }
    for shot in ["summary", "progress", "receipt"] {
        let png = std::fs::read(out.join(format!("{shot}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}.png");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_uploads_a_cd_and_documents_in_english_with_a_reload() {
    if !browser_available() {
        return;
    }
    upload_in(
        "en",
        &["1 study", "2 series", "5 images", "2 documents"],
        Some("Left out: 5 files of the image viewer program"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_uploads_in_arabic_right_to_left() {
    if !browser_available() {
        return;
    }
    upload_in("ar", &["دراسة واحدة", "سلسلتان", "مستندان"], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_expired_link_shows_its_message_and_sends_nothing() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let (case, patient) = app.create_case(None).await;
    // A document the coordinator released: the expired link still
    // lists it for the patient and downloads it.
    let translation = crate::tus::pattern(300_000, 77);
    let coordinator = crate::reply::Uploader::main(&app, &app.coordinator);
    let metadata = format!(
        "{},case_id {}",
        crate::tus::meta("Übersetzung – report.pdf", None),
        crate::reply::b64(&case)
    );
    coordinator.upload_resumed(&metadata, &translation).await;
    let manifest = app
        .get_json(&format!("/api/v1/cases/{case}"), &app.coordinator)
        .await;
    let file_id = crate::reply::file_id_of(&manifest, "Übersetzung – report.pdf");
    assert_eq!(crate::reply::release(&app, &case, &file_id).await, 204);
    let unknown = "cgu_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (name, token, notice) in [
        ("unknown", unknown, "This link does not work"),
        ("expired", patient.as_str(), "This link has expired"),
    ] {
        let mut expect = json!({ "name": name, "notice": notice });
        if name == "expired" {
            app.clock
                .advance(app.config.uploads.token_ttl_secs as i64 + 60);
            expect["for_you"] = json!([{
                "filename": "Übersetzung – report.pdf",
                "sha256": crate::tus::sha256_hex(&translation),
            }]);
        }
        run_script(
            &app,
            &[
                ("CASEGATE_MODE", "refused".to_owned()),
                ("CASEGATE_LINK", link(&app, token)),
                ("CASEGATE_TOKEN", token.to_owned()),
                ("CASEGATE_LANG", "en".to_owned()),
                ("CASEGATE_EXPECT", expect.to_string()),
                ("CASEGATE_OUT", output_dir("refused").display().to_string()),
            ],
        )
        .await;
    }
    let m = app.patient_manifest(&patient).await;
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only the released document");
    assert_eq!(files[0]["source"]["kind"], "coordinator");
    app.stop().await;
}

/// The gateway process, killed if the test ends before it stops it.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a line starting with `prefix` in the gateway's log file.
fn wait_for_line(log: &Path, prefix: &str) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
            return line[prefix.len()..].trim().to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no line {prefix:?} in the gateway's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_reaches_the_gateways_log() {
    if !browser_available() {
        return;
    }
    // The binary as operators run it, logging everything it logs.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("gateway.log");
    let child = crate::startup::casegate(dir.path())
        .env("CASEGATE_LOG", "trace")
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut gateway = Gateway(child);
    let addr = wait_for_line(&log_path, "listening on https://");
    let coordinator = wait_for_line(&log_path, "coordinator token: ");
    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let client = crate::common::client_trusting(&ca);
    let created: Value = client
        .post(format!("https://{addr}/api/v1/cases"))
        .bearer_auth(&coordinator)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let patient = created["upload_token"].as_str().unwrap().to_owned();
    let records = hospital_records(4 * 1024 * 1024);
    let link = format!("https://{addr}/upload#token={patient}");
    let summary = ["1 study", "2 series", "5 images"];
    let mut env = upload_env(link, &patient, "en", &records, &summary, false);
    env.retain(|(k, _)| *k != "CASEGATE_OUT");
    env.push((
        "CASEGATE_OUT",
        output_dir("log-check").display().to_string(),
    ));
    run_script_trusting(&dir.path().join("certs/server.pem"), &env).await;

    let pid = gateway.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    gateway.0.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The log did record the page's requests, so the check below can fail.
    assert!(
        log.contains("/api/v1/patient/case") && log.contains("/tus/"),
        "{log}"
    );
    let secret = &patient["cgu_".len()..];
    assert!(
        !log.contains(secret),
        "the upload token is in the gateway's log"
    );
}

/// A second CD from another hospital visit: the same paths and sizes as
/// `records`' CD, different bytes (the last pixel byte of every image).
fn second_cd(records: &Records) -> (tempfile::TempDir, Vec<(String, Vec<u8>)>) {
    let root = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (path, bytes, category) in &records.files {
        if *category != "imaging_dicom" {
            continue;
        }
        let mut other = bytes.clone();
        *other.last_mut().unwrap() ^= 0xff;
        let full = root.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, &other).unwrap();
        files.push((path.clone(), other));
    }
    (root, files)
}

/// Two different CDs with the same paths and sizes, one after the other on
/// one link: every image of both arrives. On the way, the page (a) waits
/// out a gateway that cannot be reached and then answers 503, and comes
/// back by itself; (b) keeps the typed questions over a reload and sends
/// them first; (c) leaves no file name in localStorage, and nothing of the
/// case once the receipt is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cd_with_the_same_names_and_sizes_is_sent_whole() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    // The big image is over 64 MiB, so the page hashes it in slices (as it
    // does a file of any size), not whole with crypto.subtle.
    let records = hospital_records(72 * 1024 * 1024);
    let (second_root, second) = second_cd(&records);
    let files = json!({
        "first": records.root.path().join("HOSPITAL_CD").display().to_string(),
        "second": second_root.path().join("HOSPITAL_CD").display().to_string(),
    });
    let expect = json!({
        "summary": ["1 study", "2 series", "5 images"],
        "checking": "Checking what already arrived",
        "unreachable": "we keep trying",
        "question": QUESTION,
        "questions_filename": "my-questions.txt",
    });
    run_script(
        &app,
        &[
            ("CASEGATE_MODE", "second-cd".to_owned()),
            ("CASEGATE_LINK", link(&app, &patient)),
            ("CASEGATE_TOKEN", patient.clone()),
            ("CASEGATE_LANG", "en".to_owned()),
            ("CASEGATE_FILES", files.to_string()),
            ("CASEGATE_EXPECT", expect.to_string()),
            (
                "CASEGATE_OUT",
                output_dir("second-cd").display().to_string(),
            ),
        ],
    )
    .await;

    let m = app.patient_manifest(&patient).await;
    let listed = m["files"].as_array().unwrap();
    let first = records.files.iter().filter(|f| f.2 == "imaging_dicom");
    let mut expected: Vec<(String, String)> = first
        .map(|(p, b, _)| (p.clone(), sha256_hex(b)))
        .chain(second.iter().map(|(p, b)| (p.clone(), sha256_hex(b))))
        .collect();
    let questions = format!("{QUESTION}\n");
    expected.push((
        "my-questions.txt".to_owned(),
        sha256_hex(questions.as_bytes()),
    ));
    let mut got: Vec<(String, String)> = listed
        .iter()
        .map(|f| {
            assert_eq!(f["state"], "complete", "{f}");
            let name = f["filename"].as_str().unwrap().to_owned();
            (name, f["sha256"].as_str().unwrap().to_owned())
        })
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "both CDs, every image once");
    app.stop().await;
}

/// The page in each of its languages, switched with the visible switch:
/// every script (Chinese, Devanagari, Arabic, Cyrillic) is drawn with real
/// glyphs, not empty boxes, so the machine's fonts are checked too; a
/// screenshot of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_is_drawn_in_its_own_script() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let expect = json!({ "languages": ["en", "zh-CN", "hi", "es", "ar", "ru"] });
    run_script(
        &app,
        &[
            ("CASEGATE_MODE", "languages".to_owned()),
            ("CASEGATE_LINK", link(&app, &patient)),
            ("CASEGATE_TOKEN", patient.clone()),
            ("CASEGATE_LANG", "en".to_owned()),
            ("CASEGATE_EXPECT", expect.to_string()),
            (
                "CASEGATE_OUT",
                output_dir("languages").display().to_string(),
            ),
        ],
    )
    .await;
    app.stop().await;
}

/// A CD folder and two PDFs dragged onto the page instead of chosen: the
/// page walks the dropped folder (counting the files it finds), leaves out
/// the CD's index, system files and viewer program (but not a scan image in
/// the viewer's folder, a report named setup.pdf, nor a Software folder
/// with no program in it), and sends the rest. The folder
/// drop carries a scripted FileSystemEntry tree (a real one cannot be made
/// from a script); the PDFs a real DataTransfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_drops_a_cd_folder_and_documents() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let (_, patient) = app.create_case(None).await;
    let mut records = hospital_records(1024 * 1024);
    // A scan image in the viewer's folder (a sample the viewer opens first)
    // is still a record: sent, unlike the viewer's other files.
    let sample = casegate::upload::dicom::testdata::ct_file(
        STUDY,
        &format!("{STUDY}.1"),
        "Doe^Jane",
        20_100,
    );
    let sample_path = "HOSPITAL_CD/Viewer/Samples/IM0001";
    let full = records.root.path().join(sample_path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(&full, &sample).unwrap();
    records
        .files
        .push((sample_path.to_owned(), sample, "imaging_dicom"));
    // Records whose names look like a program's but are not: a folder
    // called Software holding no program, and a report called setup.pdf.
    for (path, category, seed) in [
        (
            "HOSPITAL_CD/Software/Discharge summary.pdf",
            "discharge_summary",
            7,
        ),
        ("HOSPITAL_CD/setup.pdf", "other", 8),
    ] {
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.extend(pattern(20_000, seed));
        let full = records.root.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, &pdf).unwrap();
        records.files.push((path.to_owned(), pdf, category));
    }
    let mut env = upload_env(
        link(&app, &patient),
        &patient,
        "en",
        &records,
        &["1 study", "2 series", "5 images", "2 documents"],
        false,
    );
    env.retain(|(k, _)| !matches!(*k, "CASEGATE_OUT" | "CASEGATE_EXPECT"));
    let expect = json!({
        "summary": ["1 study", "2 series", "6 images", "4 documents"],
        "reading_folder": "Reading the folder…",
        "viewer": "Left out: 5 files of the image viewer program",
    });
    env.push(("CASEGATE_EXPECT", expect.to_string()));
    env.push(("CASEGATE_OUT", output_dir("drop").display().to_string()));
    env.push(("CASEGATE_MODE", "drop".to_owned()));
    run_script(&app, &env).await;

    let m = app.patient_manifest(&patient).await;
    let mut got: Vec<(String, String, String)> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["state"], "complete", "{f}");
            let text = |k: &str| f[k].as_str().unwrap().to_owned();
            (text("filename"), text("sha256"), text("category"))
        })
        .collect();
    let mut expected: Vec<(String, String, String)> = records
        .files
        .iter()
        .map(|(p, b, c)| (p.clone(), sha256_hex(b), (*c).to_owned()))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every record once, nothing else");
    app.stop().await;
}
