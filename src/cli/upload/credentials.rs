//! Who the patient is to the gateway: the upload token and the gateway's
//! address, from `--token`/`CASEGATE_UPLOAD_TOKEN` and `--server`, or from
//! the upload link the coordinator sent (`https://host/upload#token=cgu_…`).
//! The token only ever travels in the `Authorization` header: it is never
//! put in a URL, printed, logged or written to disk in clear.

use std::fmt;
use std::str::FromStr;

use reqwest::Url;

use crate::token::{SecretToken, TokenKind};

/// A command-line value that holds a secret (a token, or a link carrying
/// one); `Debug` never shows it.
#[derive(Clone)]
pub struct SecretArg(pub String);

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<SecretArg, Self::Err> {
        Ok(SecretArg(s.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The gateway (scheme, host, port and any path prefix, no trailing `/`)
/// and the patient's upload token.
pub struct Credentials {
    pub server: String,
    pub token: SecretToken,
}

const WHAT: &str =
    "the upload link should look like https://gateway.example.org/upload#token=cgu_…";

/// Why the link, token or address cannot be used (never echoing a token).
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("that is not a link; {WHAT}")]
    NotALink,
    #[error("the upload link must start with https://; {WHAT}")]
    NotHttps,
    #[error("the token must come after '#' in the link, never after '?'; {WHAT}")]
    TokenInQuery,
    #[error("the link has no token after '#'; {WHAT}")]
    NoToken,
    #[error("that is not an upload link; {WHAT}")]
    NotAnUploadLink,
    #[error(
        "that is not an upload token (it starts with cgu_ and is 47 characters long); copy the \
         whole link or token your coordinator sent"
    )]
    NotAToken,
    #[error(
        "give the upload link (--link 'https://…/upload#token=…') or --server and --token (or \
         CASEGATE_UPLOAD_TOKEN)"
    )]
    Missing,
    #[error("--server {0}: not a URL")]
    ServerNotAUrl(String),
    #[error("--server must be an https:// address")]
    ServerNotHttps,
    #[error("--server is required with --token")]
    ServerRequired,
}

/// Reads the upload link: the gateway is everything before `/upload`, the
/// token is the fragment's `token=` value. Links that would send the token
/// where it does not belong (plain http, a query string) are refused.
pub fn parse_link(link: &str) -> Result<(String, SecretToken), CredentialsError> {
    let url = Url::parse(link.trim()).map_err(|_| CredentialsError::NotALink)?;
    if url.scheme() != "https" {
        return Err(CredentialsError::NotHttps);
    }
    if url.query().is_some_and(|q| q.contains("token")) {
        return Err(CredentialsError::TokenInQuery);
    }
    let token = url
        .fragment()
        .into_iter()
        .flat_map(|f| f.split('&'))
        .find_map(|pair| pair.strip_prefix("token="))
        .ok_or(CredentialsError::NoToken)?;
    let token = upload_token(token)?;
    let path = url.path().trim_end_matches('/');
    let prefix = path
        .strip_suffix("/upload")
        .ok_or(CredentialsError::NotAnUploadLink)?;
    let host = url.host_str().ok_or(CredentialsError::NotALink)?;
    let server = match url.port() {
        Some(port) => format!("https://{host}:{port}{prefix}"),
        None => format!("https://{host}{prefix}"),
    };
    Ok((server, token))
}

/// Checks the shape of an upload token before anything is sent.
pub fn upload_token(text: &str) -> Result<SecretToken, CredentialsError> {
    match SecretToken::parse(text.trim()) {
        Some((TokenKind::Upload, token)) => Ok(token),
        _ => Err(CredentialsError::NotAToken),
    }
}

/// `--server` (or the link's gateway) and the token, from whichever the
/// patient gave; `--server` overrides the link's gateway.
pub fn resolve(
    server: Option<&str>,
    token: Option<&SecretArg>,
    link: Option<&SecretArg>,
) -> Result<Credentials, CredentialsError> {
    let (from_link, token) = match (link, token) {
        (Some(link), _) => {
            let (server, token) = parse_link(&link.0)?;
            (Some(server), token)
        }
        (None, Some(token)) => (None, upload_token(&token.0)?),
        (None, None) => return Err(CredentialsError::Missing),
    };
    let server = match server {
        Some(s) => {
            let url = Url::parse(s).map_err(|_| CredentialsError::ServerNotAUrl(s.to_owned()))?;
            if url.scheme() != "https" {
                return Err(CredentialsError::ServerNotHttps);
            }
            s.trim_end_matches('/').to_owned()
        }
        None => from_link.ok_or(CredentialsError::ServerRequired)?,
    };
    Ok(Credentials { server, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> String {
        SecretToken::generate(TokenKind::Upload).expose().to_owned()
    }

    #[test]
    fn links_give_gateway_and_token() {
        let t = token();
        let (server, parsed) =
            parse_link(&format!("https://gw.example:8443/upload#token={t}")).unwrap();
        assert_eq!(server, "https://gw.example:8443");
        assert_eq!(parsed.expose(), t);
        let (server, _) = parse_link(&format!(
            "https://gw.example/casegate/upload/#lang=ar&token={t}"
        ))
        .unwrap();
        assert_eq!(server, "https://gw.example/casegate");
    }

    #[test]
    fn bad_links_are_refused_without_echoing_the_token() {
        let t = token();
        for bad in [
            format!("http://gw.example/upload#token={t}"),
            format!("https://gw.example/upload?token={t}"),
            format!("https://gw.example/elsewhere#token={t}"),
            "https://gw.example/upload".to_owned(),
            "https://gw.example/upload#token=cgu_short".to_owned(),
            format!(
                "https://gw.example/upload#token={}",
                t.replace("cgu_", "cgo_")
            ),
            format!("gw.example/upload#token={t}"),
        ] {
            let err = parse_link(&bad).unwrap_err().to_string();
            assert!(!err.contains(&t[4..]), "{err}");
        }
    }

    #[test]
    fn server_overrides_the_link() {
        let link = SecretArg(format!("https://a.example/upload#token={}", token()));
        let c = resolve(Some("https://b.example:9/"), None, Some(&link)).unwrap();
        assert_eq!(c.server, "https://b.example:9");
        assert!(resolve(None, None, None).is_err());
        assert!(resolve(None, Some(&SecretArg(token())), None).is_err());
        assert!(resolve(Some("http://b.example"), Some(&SecretArg(token())), None).is_err());
    }
}
