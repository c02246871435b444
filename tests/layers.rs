//! The crate's layers, checked: every `crate::…` path in `src/` may only
//! name a module on a lower floor than the module it is written in, so
//! arrows point down and there are no circles between modules. The floors
//! are read from the map in `src/lib.rs`; a module missing there fails the
//! test, so a new module gets a floor on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Arrows the floors would allow but the design does not: HTTP handlers
/// reach the database only through the service layer.
const FORBIDDEN: &[(&str, &str)] = &[("http", "db")];

/// The floor of each top-level module, read from the map in `src/lib.rs`
/// (rows `//! | 7 | [`service`] | …`), so the map cannot drift from the code.
fn floors() -> Vec<(String, u8)> {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let mut floors = Vec::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let (Some(floor), Some(modules)) = (cells.next(), cells.next()) else {
            continue;
        };
        let Ok(floor) = floor.trim().parse::<u8>() else {
            continue;
        };
        for module in modules.split(", ") {
            let name = module
                .trim()
                .trim_start_matches("[`")
                .trim_end_matches("`]");
            floors.push((name.to_owned(), floor));
        }
    }
    floors
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/http/auth.rs` → `http`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Top-level modules named by `crate::` paths in `code`, including grouped
/// ones (`crate::{db, store::Store}`).
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                if let Some(name) = leading_ident(item.trim()) {
                    out.insert(name);
                }
            }
        } else if let Some(name) = leading_ident(rest) {
            out.insert(name);
        }
    }
    out
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn leading_ident(s: &str) -> Option<String> {
    let ident: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty() && ident.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .then_some(ident)
}

/// Code before the file's `mod tests` (by convention at the end): unit tests
/// may reach across layers. Other `#[cfg(test)]` items — a test-only
/// function, a test module declared by path — are checked like the rest.
fn without_tests(code: &str) -> &str {
    code.find("#[cfg(test)]\nmod tests {")
        .map_or(code, |at| &code[..at])
}

#[test]
fn imports_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let floors = floors();
    let floor = |module: &str| floors.iter().find(|(m, _)| m == module).map(|(_, f)| *f);
    let mut problems = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        // lib.rs declares the modules; main.rs uses the library as
        // `casegate::…`, from above every floor.
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(from_floor) = floor(&from) else {
            problems.push(format!(
                "{}: module `{from}` has no floor in the map in src/lib.rs",
                file.display()
            ));
            continue;
        };
        let code = std::fs::read_to_string(file).unwrap();
        for to in named_modules(without_tests(&code)) {
            if to == from {
                continue;
            }
            let Some(to_floor) = floor(&to) else {
                problems.push(format!(
                    "{}: names `crate::{to}`, which has no floor",
                    file.display()
                ));
                continue;
            };
            if to_floor >= from_floor {
                problems.push(format!(
                    "{}: `{from}` (floor {from_floor}) uses `{to}` (floor {to_floor}): arrows must point down",
                    file.display()
                ));
            }
            if FORBIDDEN.contains(&(from.as_str(), to.as_str())) {
                problems.push(format!(
                    "{}: `{from}` must not use `{to}` directly",
                    file.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_is_on_the_map() {
    let floors = floors();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if name != "lib" && name != "main" {
            assert!(
                floors.iter().any(|(m, _)| *m == name),
                "src/{name} is not on the map in src/lib.rs"
            );
        }
    }
    assert!(
        floors.len() >= 20,
        "the map in src/lib.rs was not read: {floors:?}"
    );
}

#[test]
fn the_parser_sees_grouped_and_nested_paths() {
    let code = "use crate::{db::{self, Db}, store::Store};\nlet x = crate::hex::encode(&y);";
    let got: Vec<String> = named_modules(code).into_iter().collect();
    assert_eq!(got, ["db", "hex", "store"]);
    assert!(named_modules("// no paths here").is_empty());
    let code =
        "#[cfg(test)]\nmod x;\nuse crate::db;\n#[cfg(test)]\nmod tests {\n use crate::http;\n}";
    let kept: Vec<String> = named_modules(without_tests(code)).into_iter().collect();
    assert_eq!(kept, ["db"]);
}
