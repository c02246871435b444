//! What went wrong with a request, as the patient should hear it: each
//! gateway answer (status and problem+json `code`) or network failure
//! becomes a plain sentence that says what to do next, and a decision —
//! try again later, start this file afresh, give up on this file, or stop
//! the whole run because every file would fail alike.

use std::time::Duration;

use serde_json::Value;

use crate::cli::bounded::{MAX_PROBLEM_BYTES, body_within, printable};

#[derive(Debug)]
pub enum Failure {
    /// Every other file would fail alike (link expired or not valid).
    Stop(String),
    /// This file cannot be sent as it is.
    File(String),
    /// The stored upload is gone (404/410): start this file afresh.
    Gone,
    /// Worth trying again after a pause (the gateway's, when it named one).
    Retry {
        why: String,
        after: Option<Duration>,
    },
}

pub const LINK_EXPIRED: &str = "your upload link has expired. The files already sent are safe; \
     ask your coordinator for a new link and run the same command with it to send the rest";
pub const LINK_INVALID: &str = "the gateway does not accept this upload link (it may have been \
     replaced by a newer one); ask your coordinator for a new link";

/// The problem document's `code` and `detail` (bounded read, made safe
/// to print; a body that is not JSON gives empty strings).
async fn problem(resp: reqwest::Response) -> (String, String) {
    let body = body_within(resp, MAX_PROBLEM_BYTES)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| {
        printable(v[k].as_str().unwrap_or(""))
            .chars()
            .take(300)
            .collect()
    };
    (text("code"), text("detail"))
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs.min(600)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .min(Duration::from_secs(600)),
    )
}

/// Classifies a gateway's refusal of a request about file `shown`.
pub async fn from_response(resp: reqwest::Response, shown: &str) -> Failure {
    let status = resp.status();
    let after = retry_after(&resp);
    let (code, detail) = problem(resp).await;
    match status.as_u16() {
        401 => Failure::Stop(LINK_INVALID.into()),
        403 if code == "upload_expired" => Failure::Stop(LINK_EXPIRED.into()),
        403 => Failure::Stop(format!(
            "the gateway refused the upload ({code}); ask your coordinator"
        )),
        404 | 410 => Failure::Gone,
        409 => Failure::Retry {
            why: "the gateway holds a different amount of this file; checking again".into(),
            after: Some(Duration::ZERO),
        },
        413 if code == "quota_exceeded" => Failure::File(format!(
            "{shown}: the case has reached its size or file limit. Ask your coordinator to \
             raise it, then run the same command again to send this file and any after it"
        )),
        413 => Failure::File(format!(
            "{shown}: larger than this gateway accepts ({detail}); ask your coordinator \
             how to send it"
        )),
        423 => Failure::Retry {
            why: "the gateway is still finishing an earlier transfer of this file".into(),
            after: after.or(Some(Duration::from_secs(1))),
        },
        429 => Failure::Retry {
            why: match code.as_str() {
                "quota_exceeded" => "the case already has as many transfers running as it may",
                _ => "the gateway asks to slow down",
            }
            .into(),
            after,
        },
        s if s >= 500 => Failure::Retry {
            why: match code.as_str() {
                "storage_unavailable" => "the gateway's storage is briefly unavailable".into(),
                "audit_unavailable" => {
                    "the gateway cannot record uploads in its audit log right now".into()
                }
                _ => format!("the gateway is having trouble ({status})"),
            },
            after,
        },
        _ => Failure::File(format!(
            "{shown}: the gateway refused it ({status}{}{})",
            if code.is_empty() { "" } else { ", " },
            if detail.is_empty() { &code } else { &detail }
        )),
    }
}

/// The TLS handshake refused the gateway's certificate (somewhere in
/// `e`'s chain of causes).
fn untrusted_certificate(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if matches!(
            tls,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        // Some layers between reqwest and rustls keep only the message
        // (rustls's own wording for `InvalidCertificate`).
        if err.to_string().starts_with("invalid peer certificate") {
            return true;
        }
        source = err.source();
    }
    false
}

/// A request that got no answer: the network or the gateway is away — or
/// its certificate is not trusted, which no waiting mends.
pub fn from_transport(e: &reqwest::Error) -> Failure {
    if untrusted_certificate(e) {
        return Failure::Stop(
            "the gateway's certificate is not trusted, so nothing was sent. If your coordinator \
             gave you a CA file, add --ca FILE; otherwise check the address"
                .into(),
        );
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let why = if e.is_connect() {
        format!("cannot reach the gateway ({source})")
    } else if e.is_timeout() {
        "the connection timed out".into()
    } else {
        format!("the connection broke ({source})")
    };
    Failure::Retry { why, after: None }
}

/// A local file that cannot be read is the patient's to fix.
pub fn unreadable(shown: &str, e: &std::io::Error) -> Failure {
    Failure::File(format!(
        "{shown}: {} — check the disc or folder and run the same command again",
        super::walk::plain_io(e)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str, retry_after: Option<&str>) -> reqwest::Response {
        let mut builder = axum::http::Response::builder().status(status);
        if let Some(v) = retry_after {
            builder = builder.header("retry-after", v);
        }
        let body = format!(r#"{{"code":"{code}","detail":"detail of {code}"}}"#);
        reqwest::Response::from(builder.body(body).unwrap())
    }

    async fn classify(status: u16, code: &str, retry_after: Option<&str>) -> Failure {
        from_response(answer(status, code, retry_after), "CD/report.pdf").await
    }

    #[tokio::test]
    async fn each_answer_becomes_a_decision_and_a_sentence() {
        assert!(
            matches!(classify(401, "unauthenticated", None).await, Failure::Stop(m) if m == LINK_INVALID)
        );
        assert!(
            matches!(classify(403, "upload_expired", None).await, Failure::Stop(m) if m == LINK_EXPIRED)
        );
        assert!(matches!(
            classify(404, "not_found", None).await,
            Failure::Gone
        ));
        assert!(matches!(classify(410, "gone", None).await, Failure::Gone));
        assert!(matches!(
            classify(413, "quota_exceeded", None).await,
            Failure::File(m) if m.starts_with("CD/report.pdf: ") && m.contains("coordinator")
        ));
        assert!(matches!(
            classify(413, "upload_too_large", None).await,
            Failure::File(m) if m.contains("larger than")
        ));
        assert!(matches!(
            classify(429, "rate_limited", Some("7")).await,
            Failure::Retry { after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(423, "", None).await,
            Failure::Retry { after: Some(d), .. } if d == Duration::from_secs(1)
        ));
        assert!(matches!(
            classify(503, "storage_unavailable", None).await,
            Failure::Retry { why, after: None } if why.contains("storage")
        ));
        assert!(matches!(
            classify(400, "bad_request", None).await,
            Failure::File(m) if m.contains("detail of bad_request")
        ));
    }
}
