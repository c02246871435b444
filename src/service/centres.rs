//! Reviewing centres: registered by a coordinator with a client certificate
//! (pinned by the SHA-256 of its DER) and an X25519 public key (file keys
//! of sealed downloads are sealed to it); listed; their certificate or key
//! replaced; disabled (their grants are revoked with it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Services;
use super::audit::{self, AuditError};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db::centres::{CentreRow, NewCentre};
use crate::db::{self, DbError};
use crate::ids::CentreId;
use crate::tls::cert_sha256;

/// The centre service's one error.
#[derive(Debug, thiserror::Error)]
pub enum CentreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn bad(message: &str) -> CentreError {
    CentreError::BadRequest(message.to_owned())
}

fn already_registered() -> CentreError {
    CentreError::Conflict("this certificate is already registered".into())
}

/// Exactly one PEM certificate that parses as X.509.
pub fn parse_certificate(pem: &str) -> Result<CertificateDer<'static>, CentreError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("client_cert_pem is not a PEM certificate"))?;
    let [cert] = <[_; 1]>::try_from(certs)
        .map_err(|_| bad("client_cert_pem must hold exactly one certificate"))?;
    webpki::EndEntityCert::try_from(&cert)
        .map_err(|_| bad("client_cert_pem is not a valid X.509 certificate"))?;
    Ok(cert)
}

/// 32 bytes, base64url without padding, not the all-zero point.
pub fn parse_x25519(encoded: &str) -> Result<[u8; 32], CentreError> {
    let raw = URL_SAFE_NO_PAD
        .decode(encoded.trim())
        .map_err(|_| bad("x25519_public_key must be base64url without padding"))?;
    let key: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("x25519_public_key must be 32 bytes"))?;
    if key == [0u8; 32] {
        return Err(bad("x25519_public_key is not a usable key"));
    }
    Ok(key)
}

/// A registration as the coordinator sent it.
#[derive(Debug)]
pub struct Registration {
    pub name: String,
    pub country: String,
    pub client_cert_pem: String,
    pub x25519_public_key: String,
}

/// A validated registration.
struct CentreInput {
    name: String,
    country: String,
    cert_der: CertificateDer<'static>,
    x25519_public_key: [u8; 32],
}

impl Registration {
    fn validate(self) -> Result<CentreInput, CentreError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(bad(
                "name must be 1 to 200 characters without control characters",
            ));
        }
        let country = self.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "country must be an ISO 3166-1 alpha-2 code, e.g. \"DE\"",
            ));
        }
        Ok(CentreInput {
            name,
            country,
            cert_der: parse_certificate(&self.client_cert_pem)?,
            x25519_public_key: parse_x25519(&self.x25519_public_key)?,
        })
    }
}

/// Registers a centre; returns its id and certificate fingerprint. A
/// certificate registered already is a conflict.
pub async fn register(
    svc: &Services,
    ctx: &RequestContext,
    registration: Registration,
) -> Result<(CentreId, String), CentreError> {
    let input = registration.validate()?;
    let centre_id = CentreId::generate();
    let fingerprint = cert_sha256(&input.cert_der);
    let mut tx = audit::begin(svc).await?;
    let new = NewCentre {
        centre_id: &centre_id,
        name: &input.name,
        country: &input.country,
        cert_sha256: &fingerprint,
        cert_der: input.cert_der.as_ref(),
        x25519_public_key: &input.x25519_public_key,
        created_at: svc.timestamp(),
    };
    if !db::centres::insert(&mut tx, &new).await? {
        drop(tx);
        let entry = NewEntry::new("centre.register", Outcome::Deny)
            .reason(format!("certificate {fingerprint} is already registered"));
        audit::record(svc, ctx, entry).await?;
        return Err(already_registered());
    }
    let entry = NewEntry::new("centre.register", Outcome::Allow).centre(&centre_id);
    audit::commit(svc, tx, ctx, entry).await?;
    Ok((centre_id, fingerprint))
}

pub async fn list(svc: &Services, ctx: &RequestContext) -> Result<Vec<CentreRow>, CentreError> {
    let centres = db::centres::list(&svc.db).await?;
    audit::record(svc, ctx, NewEntry::new("centre.list", Outcome::Allow)).await?;
    Ok(centres)
}

/// A registered centre, or a denial of `action` audited as "no such centre".
async fn existing(
    svc: &Services,
    ctx: &RequestContext,
    action: &'static str,
    centre_id: &CentreId,
) -> Result<(), CentreError> {
    if db::centres::get(&svc.db, centre_id).await?.is_some() {
        return Ok(());
    }
    let entry = NewEntry::new(action, Outcome::Deny).reason("no such centre");
    audit::record(svc, ctx, entry).await?;
    Err(CentreError::NotFound)
}

/// A change to a centre as the coordinator sent it.
#[derive(Debug)]
pub struct Update {
    pub client_cert_pem: Option<String>,
    pub x25519_public_key: Option<String>,
}

/// Replaces a centre's certificate and/or X25519 key; returns the new
/// certificate's fingerprint if it was replaced.
pub async fn update(
    svc: &Services,
    ctx: &RequestContext,
    centre_id: &CentreId,
    req: Update,
) -> Result<Option<String>, CentreError> {
    existing(svc, ctx, "centre.update", centre_id).await?;
    if req.client_cert_pem.is_none() && req.x25519_public_key.is_none() {
        return Err(bad("give client_cert_pem and/or x25519_public_key"));
    }
    let cert = req
        .client_cert_pem
        .as_deref()
        .map(parse_certificate)
        .transpose()?;
    let key = req
        .x25519_public_key
        .as_deref()
        .map(parse_x25519)
        .transpose()?;
    let fingerprint = cert.as_ref().map(cert_sha256);
    let cert_arg = fingerprint
        .as_deref()
        .zip(cert.as_ref().map(|c| c.as_ref()));
    let mut tx = audit::begin(svc).await?;
    let key_arg = key.as_ref().map(|k| k.as_slice());
    if !db::centres::update(&mut tx, centre_id, cert_arg, key_arg, svc.timestamp()).await? {
        drop(tx);
        let entry = NewEntry::new("centre.update", Outcome::Deny)
            .centre(centre_id)
            .reason("certificate registered to another centre");
        audit::record(svc, ctx, entry).await?;
        return Err(already_registered());
    }
    let what = match (cert.is_some(), key.is_some()) {
        (true, true) => "certificate and X25519 key replaced",
        (true, false) => "certificate replaced",
        _ => "X25519 key replaced",
    };
    let entry = NewEntry::new("centre.update", Outcome::Allow)
        .centre(centre_id)
        .reason(what);
    audit::commit(svc, tx, ctx, entry).await?;
    Ok(fingerprint)
}

/// Disables a centre and revokes its grants, in one audited transaction.
pub async fn disable(
    svc: &Services,
    ctx: &RequestContext,
    centre_id: &CentreId,
) -> Result<(), CentreError> {
    existing(svc, ctx, "centre.disable", centre_id).await?;
    let now = svc.timestamp();
    let mut tx = audit::begin(svc).await?;
    db::centres::disable(&mut tx, centre_id, now).await?;
    let revoked = db::grants::revoke_where(
        &mut tx,
        "centre_id",
        centre_id.as_str(),
        now,
        "centre disabled",
    )
    .await?;
    let entry = NewEntry::new("centre.disable", Outcome::Allow)
        .centre(centre_id)
        .reason(format!("{revoked} grants revoked"));
    Ok(audit::commit(svc, tx, ctx, entry).await?)
}
