//! `casegate audit disclosures CASE_ID`: a case's accounting of disclosures
//! over the API. By default a readable table on stdout; `--format csv|html|
//! json` passes the gateway's own form through; `--out FILE` writes it to a
//! new file (never replacing one). The answer is read with a bound, and
//! control characters never reach the terminal.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::super::CliError;
use super::super::api_client::{ApiClient, ServerArgs};
use super::super::bounded::{self, BodyError};
use crate::ids::CaseId;

/// A report is a few hundred bytes a download; this holds far more than
/// any case can have.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable table (built from the JSON form).
    Table,
    Csv,
    Html,
    Json,
}

#[derive(Debug, Args)]
pub struct DisclosuresArgs {
    /// The case.
    pub case_id: String,
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the report to this new file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The gateway's report in `format` (JSON for the table), bounded.
async fn fetch(client: &ApiClient, case_id: &str, format: Format) -> Result<String, CliError> {
    let Some(case_id) = CaseId::parse(case_id) else {
        return Err(format!("{case_id:?} is not a case id").into());
    };
    let wire = match format {
        Format::Table | Format::Json => "json",
        Format::Csv => "csv",
        Format::Html => "html",
    };
    let path = format!("/api/v1/cases/{case_id}/disclosures?format={wire}");
    let resp = client.get(&path).await?;
    let body = bounded::body_within(resp, MAX_REPORT_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => format!(
                "the gateway's report is larger than {} MiB; refused",
                MAX_REPORT_BYTES >> 20
            ),
            BodyError::Interrupted(e) => format!("the report broke off: {e}"),
        })?;
    String::from_utf8(body).map_err(|_| "the gateway's report is not UTF-8".to_owned().into())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const HEAD: [&str; 10] = [
    "CENTRE",
    "COUNTRY",
    "FILE",
    "CATEGORY",
    "KIND",
    "FIRST BYTE",
    "LAST BYTE",
    "BYTES",
    "STATUS",
    "GRANT",
];

/// A report row's cells, in [`HEAD`]'s order.
fn cells(r: &Value) -> [String; 10] {
    let name = |k: &str| r[k].as_str().unwrap_or("(deleted)").to_owned();
    [
        text(&r["centre_name"]),
        text(&r["centre_country"]),
        name("filename"),
        name("category"),
        text(&r["kind"]),
        text(&r["first_byte_at"]),
        text(&r["last_byte_at"]),
        format!("{}/{}", text(&r["bytes_served"]), text(&r["size"])),
        text(&r["status"]),
        text(&r["grant_id"]),
    ]
}

/// Rows in columns as wide as their widest cell.
fn columns(rows: &[[String; 10]]) -> String {
    let mut widths = HEAD.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| -> String {
        let padded: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&HEAD.map(str::to_owned));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The JSON report as a table with its context lines.
pub fn table(report: &Value) -> Result<String, CliError> {
    let rows = report["disclosures"]
        .as_array()
        .ok_or_else(|| "the gateway's report has no disclosures list".to_owned())?;
    let cp = &report["checkpoint"];
    let mut out = format!(
        "Accounting of disclosures for case {} ({}), generated at {}\n\
         Read under checkpoint: {}, tree size {}, root {}; reflects audit entries 1-{}\n\n",
        text(&report["case_id"]),
        text(&report["case_state"]),
        text(&report["generated_at"]),
        text(&cp["origin"]),
        text(&cp["tree_size"]),
        text(&cp["root"]),
        text(&report["audit_entries"]["last_seq"]),
    );
    if rows.is_empty() {
        out.push_str("No file of this case has been downloaded.\n");
    } else {
        out.push_str(&columns(&rows.iter().map(cells).collect::<Vec<_>>()));
    }
    out.push_str(&to_patient(report));
    Ok(out)
}

/// What went back to the patient, one line per release or download.
fn to_patient(report: &Value) -> String {
    let events = report["to_patient"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if events.is_empty() {
        return "\nNothing has been released to the patient.\n".into();
    }
    let mut out = "\nReleased to the patient:\n".to_owned();
    for e in events {
        let what = match e["event"].as_str() {
            Some("release") => "released  ",
            _ => "downloaded",
        };
        out.push_str(&format!(
            "{}  {what}  {} ({}) by {}: {}\n",
            text(&e["at"]),
            e["filename"].as_str().unwrap_or("(deleted)"),
            e["category"].as_str().unwrap_or("(deleted)"),
            text(&e["actor"]),
            text(&e["detail"]),
        ));
    }
    out
}

/// Text safe for a terminal: hidden characters but line ends and tabs
/// become `_`.
fn printable(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            let (body, cr) = line.strip_suffix('\r').map_or((line, ""), |b| (b, "\r"));
            format!("{}{cr}", bounded::printable(body))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `text` to a new file `out`: under a temporary name, then linked
/// to its name, which fails rather than replace an existing file.
fn write_new(out: &Path, text: &str) -> Result<(), CliError> {
    if out.exists() {
        return Err(format!("{} exists; choose another --out", out.display()).into());
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    // A `.partial` file this run did not create is never removed.
    let mut file =
        std::fs::File::create_new(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::hard_link(&tmp, out));
    let _ = std::fs::remove_file(&tmp);
    written.map_err(|e| format!("{}: {e}", out.display()).into())
}

pub async fn run(args: DisclosuresArgs) -> Result<(), CliError> {
    let client = ApiClient::new(&args.server)?;
    let body = fetch(&client, &args.case_id, args.format).await?;
    let text = match args.format {
        Format::Table => {
            let report: Value = serde_json::from_str(&body)
                .map_err(|e| format!("the gateway's report is not JSON: {e}"))?;
            table(&report)?
        }
        _ => body,
    };
    match &args.out {
        Some(out) => {
            write_new(out, &text)?;
            println!("disclosure report written to {}", out.display());
        }
        None => print!("{}", printable(&text)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_table_ends_with_what_went_back_to_the_patient() {
        let mut report = json!({"case_id": "case_1", "disclosures": [], "checkpoint": {}});
        let plain = super::table(&report).unwrap();
        assert!(
            plain.ends_with("Nothing has been released to the patient.\n"),
            "{plain}"
        );
        report["to_patient"] = json!([
            {"event": "release", "at": "2026-11-30T01:00:00Z", "actor": "op_1", "file_id": "file_1",
             "filename": "opinion.pdf", "category": "second_opinion_report",
             "detail": "released to the patient; from the centre", "audit_seq": 7},
            {"event": "download", "at": "2026-11-30T02:00:00Z", "actor": "patient:case_1",
             "file_id": "file_1", "filename": null, "category": null, "detail": "bytes 0-9 of 10",
             "audit_seq": 9},
        ]);
        let table = super::table(&report).unwrap();
        assert!(table.contains(
            "2026-11-30T01:00:00Z  released    opinion.pdf (second_opinion_report) by op_1: released to the patient; from the centre\n"
        ), "{table}");
        assert!(
            table.contains("downloaded  (deleted) ((deleted)) by patient:case_1: bytes 0-9 of 10"),
            "{table}"
        );
    }
}
