//! The HTTP side of the coordinator verbs (`casegate admin case|centre|
//! grant …`): one authenticated client, JSON in, pretty JSON out, problem
//! documents turned into one-line errors.

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

/// How to reach the gateway's main listener.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The gateway, e.g. https://gateway.example.org:8443
    #[arg(long, env = "CASEGATE_SERVER", global = true)]
    pub server: Option<String>,
    /// An operator (coordinator) token.
    #[arg(long, env = "CASEGATE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A PEM CA to trust (else the system trust store).
    #[arg(long, env = "CASEGATE_CA", global = true)]
    pub ca: Option<PathBuf>,
}

/// `builder` trusting only the PEM CA in `ca` when one is given (`--ca`,
/// `CASEGATE_CA`), else the system trust store: how every client verb
/// (`admin`, `upload`, `fetch`) reaches the gateway.
///
/// Redirects are never followed and only https is spoken: reqwest keeps
/// the `Authorization` header across a redirect to the same host and port,
/// so a `Location: http://gateway:8443/…` would send the bearer token in
/// clear. The gateway never redirects an API call; a 3xx is an error.
pub fn trusting(
    builder: reqwest::ClientBuilder,
    ca: Option<&std::path::Path>,
) -> Result<reqwest::ClientBuilder, String> {
    let builder = builder
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true);
    let Some(ca) = ca else {
        return Ok(builder);
    };
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let cert =
        reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
    Ok(builder
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert))
}

pub struct ApiClient {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    pub fn new(args: &ServerArgs) -> Result<ApiClient, String> {
        let base = args
            .server
            .clone()
            .ok_or("--server (or CASEGATE_SERVER) is required")?;
        let token = args
            .token
            .clone()
            .ok_or("--token (or CASEGATE_TOKEN) is required")?;
        let builder = trusting(reqwest::Client::builder(), args.ca.as_deref())?;
        Ok(ApiClient {
            client: builder.build().map_err(|e| e.to_string())?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// GET `path`; a successful answer to read as it streams, a refusal
    /// as its one-line problem.
    pub async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // A refusal is a short problem document; a hostile server's endless
        // one is cut at the bound, and its text never reaches the terminal
        // as it is.
        let body = super::bounded::body_within(resp, super::bounded::MAX_PROBLEM_BYTES)
            .await
            .unwrap_or_default();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let detail = super::bounded::printable(value["detail"].as_str().unwrap_or(""));
        let code = super::bounded::printable(value["code"].as_str().unwrap_or(""));
        Err(format!("{status} {code}: {detail}"))
    }

    /// Sends a request; prints the JSON answer (if any) and returns it.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let detail = value["detail"].as_str().unwrap_or("");
            let code = value["code"].as_str().unwrap_or("");
            return Err(format!("{status} {code}: {detail}"));
        }
        if !value.is_null() {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        Ok(value)
    }
}
