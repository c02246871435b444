//! The report as a printable HTML page: a title, the case, when it was
//! made, the checkpoint line, the table. No script, no external resource,
//! no form: the Content-Security-Policy allows nothing but the page's one
//! style sheet (by its hash), and every value is HTML-escaped — file names
//! are the patient's input.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{CheckpointLine, PatientRow, Row, case_state};
use crate::service::disclosures::Report;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#111}\
table{border-collapse:collapse;width:100%;font-size:0.85em}\
th,td{border:1px solid #777;padding:0.3em;text-align:left;vertical-align:top}\
.id,pre{font-family:monospace;word-break:break-all}\
pre{white-space:pre-wrap;border:1px solid #777;padding:0.5em}\
@media print{body{margin:0}}";

/// The page's Content-Security-Policy: its inline style sheet by hash,
/// nothing else.
fn content_security_policy() -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
    format!(
        "default-src 'none'; style-src 'sha256-{}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        STANDARD.encode(hash.as_ref())
    )
}

/// `&`, `<`, `>`, `"` and `'` as character references.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const COLUMNS: [&str; 12] = [
    "Centre",
    "Country",
    "File",
    "Category",
    "Kind",
    "First byte served",
    "Last byte served",
    "Bytes served / size",
    "Status",
    "Grant",
    "Ids (centre, file)",
    "Audit entries",
];

fn row(r: &Row<'_>, missing: &str) -> String {
    let deleted = missing;
    let cells = [
        escape(r.centre_name.unwrap_or("")),
        escape(r.centre_country.unwrap_or("")),
        escape(r.filename.unwrap_or(deleted)),
        escape(r.category.unwrap_or(deleted)),
        escape(r.kind),
        r.first_byte_at.to_string(),
        r.last_byte_at.map(|t| t.to_string()).unwrap_or_default(),
        format!(
            "{} / {}",
            r.bytes_served,
            r.size.map(|s| s.to_string()).unwrap_or_default()
        ),
        match r.requests {
            1 => r.status.to_owned(),
            n => format!("{} ({n} requests)", r.status),
        },
        format!("<span class=\"id\">{}</span>", escape(r.grant_id)),
        format!("{}<br>{}", escape(r.centre_id), escape(r.file_id)),
        super::csv::seqs(r.audit_seqs),
    ];
    let tds: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
    format!("<tr>{tds}</tr>\n")
}

/// The section on what went back to the patient.
fn to_patient(report: &Report) -> String {
    if report.to_patient.is_empty() {
        return "<h2>Released to the patient</h2>\n<p>Nothing has been released to the patient.</p>\n"
            .into();
    }
    let missing = super::csv::missing_name(report);
    let head: String = [
        "When",
        "Event",
        "File",
        "Category",
        "By",
        "Detail",
        "File id",
        "Audit entry",
    ]
    .iter()
    .map(|c| format!("<th>{c}</th>"))
    .collect();
    let rows: String = report
        .to_patient
        .iter()
        .map(|t| {
            let r = PatientRow::of(t);
            let cells = [
                r.at.to_string(),
                match r.event {
                    "release" => "released to the patient".to_owned(),
                    _ => "downloaded by the patient".to_owned(),
                },
                escape(r.filename.unwrap_or(missing)),
                escape(r.category.unwrap_or(missing)),
                format!("<span class=\"id\">{}</span>", escape(r.actor)),
                escape(r.detail.unwrap_or("")),
                format!("<span class=\"id\">{}</span>", escape(r.file_id)),
                r.audit_seq.to_string(),
            ];
            let tds: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
            format!("<tr>{tds}</tr>\n")
        })
        .collect();
    format!(
        "<h2>Released to the patient</h2>\n<table><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>\n"
    )
}

pub fn page(report: &Report) -> String {
    let cp = CheckpointLine::of(report);
    let case = escape(report.case_id.as_str());
    let (state, deleted_at) = case_state(report);
    let deleted = deleted_at
        .map(|t| format!(" on {t}; file names are no longer readable"))
        .unwrap_or_default();
    let head: String = COLUMNS.iter().map(|c| format!("<th>{c}</th>")).collect();
    let rows: String = report
        .disclosures
        .iter()
        .map(|d| row(&Row::of(d), super::csv::missing_name(report)))
        .collect();
    let empty = if report.disclosures.is_empty() {
        "<p>No file of this case has been downloaded.</p>\n"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">\n\
<title>Accounting of disclosures: case {case}</title>\n<style>{STYLE}</style></head><body>\n\
<h1>Accounting of disclosures</h1>\n\
<p>Case <span class=\"id\">{case}</span> ({state}{deleted}). Report generated at {generated}.</p>\n\
<p>Read under checkpoint: {origin}, tree size {size}, root {root}. \
It reflects audit entries 1 to {last}.</p>\n\
<pre>{note}</pre>\n{empty}\
<table><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>\n{patient}</body></html>\n",
        // Also in the page, so a copy saved with --out keeps it.
        policy = escape(&content_security_policy()),
        generated = report.generated_at,
        origin = escape(&cp.origin),
        size = cp.tree_size,
        root = escape(&cp.root),
        last = report.covers_to,
        note = escape(&report.checkpoint.note),
        patient = to_patient(report),
    )
}

pub fn response(report: &Report) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page(report),
    )
        .into_response();
    let headers = response.headers_mut();
    // The policy is ASCII; were it ever not, nothing at all is allowed.
    let csp = HeaderValue::from_str(&content_security_policy())
        .unwrap_or(HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    let fixed: [(HeaderName, &'static str); 3] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
