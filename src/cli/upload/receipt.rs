//! The receipt: every file with its size, the SHA-256 computed here while
//! sending, the SHA-256 the gateway recorded (from the case manifest) and
//! whether they agree — the chain-of-custody value a reviewing centre's
//! `casegate fetch` verifies again. Printed, and written as CSV next to the
//! resume state.

use std::io::Write;
use std::path::Path;

use indicatif::DecimalBytes;

use super::matching::ServerFiles;

pub struct Line {
    pub shown: String,
    pub name: String,
    pub size: u64,
    pub category: &'static str,
    pub local_sha256: Option<String>,
    pub server_sha256: Option<String>,
    /// Why the file is not confirmed, when it is not.
    pub problem: Option<String>,
}

impl Line {
    pub fn confirmed(&self) -> bool {
        self.problem.is_none()
            && self.local_sha256.is_some()
            && self.local_sha256 == self.server_sha256
    }
}

/// Fills in the gateway's SHA-256 for each line from `server`.
pub fn confirm(lines: &mut [Line], server: &mut ServerFiles) {
    for line in lines.iter_mut() {
        let Some(local) = line.local_sha256.clone() else {
            continue;
        };
        if server.take(&line.name, line.size, &local) {
            line.server_sha256 = Some(local);
        } else {
            line.server_sha256 = server.any(&line.name, line.size);
            line.problem
                .get_or_insert_with(|| match &line.server_sha256 {
                    Some(_) => "the gateway recorded a different SHA-256".into(),
                    None => "not (yet) listed as complete in the gateway's case manifest; run \
                             the same command again in a few minutes to check"
                        .into(),
                });
        }
    }
}

pub fn print(lines: &[Line]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Receipt (SHA-256 as the gateway recorded it):");
    for l in lines {
        let mark = if l.confirmed() { "✓" } else { "✗" };
        let sha = l.server_sha256.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{mark} {sha:64} {:>10}  {}",
            DecimalBytes(l.size).to_string(),
            l.shown
        );
        if let Some(p) = &l.problem {
            let _ = writeln!(out, "    {p}");
        }
    }
    let ok = lines.iter().filter(|l| l.confirmed()).count();
    let _ = writeln!(
        out,
        "{ok} of {} files confirmed by the gateway",
        lines.len()
    );
}

/// A CSV field, quoted; a leading `= + - @` is defused so a spreadsheet
/// shows a file name instead of running it as a formula.
fn field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

pub fn write_csv(path: &Path, lines: &[Line]) -> std::io::Result<()> {
    let mut csv = String::from("file,size,category,sha256_local,sha256_server,confirmed,problem\n");
    for l in lines {
        let row = [
            field(&l.shown),
            l.size.to_string(),
            field(l.category),
            field(l.local_sha256.as_deref().unwrap_or("")),
            field(l.server_sha256.as_deref().unwrap_or("")),
            (if l.confirmed() { "yes" } else { "no" }).to_owned(),
            field(l.problem.as_deref().unwrap_or("")),
        ];
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    crate::fsutil::replace_secret_file(path, csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses() {
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(field("=HYPERLINK()"), "\"'=HYPERLINK()\"");
    }
}
