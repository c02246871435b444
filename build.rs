//! Build steps:
//! - Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//!   `migrations/sqlite/` and `migrations/postgres/` at compile time, and cargo only watches source files.
//! - Embed the built upload page (`web/dist/`): a table of its files as
//!   `include_bytes!`, written to `$OUT_DIR/upload_page_files.rs` and read by
//!   `src/http/upload_page.rs`. The gateway needs no Node at run time; the
//!   page is rebuilt with npm (web/README.md) and its output committed.
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=web/dist");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dist = Path::new(&manifest_dir).join("web/dist");
    let page = dist.join("upload.html");
    if !page.is_file() {
        panic!("web/dist/upload.html is missing: build the upload page (see web/README.md)");
    }
    let mut assets: Vec<String> = std::fs::read_dir(dist.join("assets"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assets.sort();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "/// The page's HTML.\npub const PAGE: &[u8] = include_bytes!({:?});",
        page.display().to_string()
    );
    out.push_str("/// Every asset under `/upload/assets/`, by file name.\npub const ASSETS: &[(&str, &[u8])] = &[\n");
    for name in &assets {
        let safe = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !safe {
            panic!("web/dist/assets/{name}: asset names are [A-Za-z0-9._-] only");
        }
        let path = dist.join("assets").join(name);
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
        println!("cargo:rerun-if-changed={}", path.display());
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    if let Err(e) = std::fs::write(Path::new(&out_dir).join("upload_page_files.rs"), out) {
        panic!("writing the upload page table: {e}");
    }
}
