//! The route table: which role each route needs and the audit action it
//! records. Deny by default: a route missing here is refused by the auth
//! layer even if a handler exists.

use axum::http::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token (health, upload page).
    Public,
    Coordinator,
    Compliance,
    /// A case's upload token.
    Patient,
    /// A case's upload token, within its upload period.
    PatientUpload,
    /// A grant token over a TLS connection that presented the grant's
    /// centre certificate (centre listener only).
    Centre,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// Audit action name; `None` for public routes, which are not audited.
    pub action: Option<&'static str>,
}

const fn route(
    method: Method,
    path: &'static str,
    access: Access,
    action: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        action: Some(action),
    }
}

const fn public(method: Method, path: &'static str) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access: Access::Public,
        action: None,
    }
}

#[rustfmt::skip]
pub const ROUTES: &[RouteSpec] = &[
    public(Method::GET, "/healthz"),
    public(Method::GET, "/readyz"),
    route(Method::POST,   "/api/v1/cases",                          Access::Coordinator,   "case.create"),
    route(Method::GET,    "/api/v1/cases",                          Access::Coordinator,   "case.list"),
    route(Method::GET,    "/api/v1/cases/{case_id}",                Access::Coordinator,   "case.read"),
    route(Method::DELETE, "/api/v1/cases/{case_id}",                Access::Coordinator,   "case.delete"),
    route(Method::POST,   "/api/v1/cases/{case_id}/upload-token",   Access::Coordinator,   "case.upload_token.reissue"),
    route(Method::POST,   "/api/v1/centres",                        Access::Coordinator,   "centre.register"),
    route(Method::GET,    "/api/v1/centres",                        Access::Coordinator,   "centre.list"),
    route(Method::PUT,    "/api/v1/centres/{centre_id}",            Access::Coordinator,   "centre.update"),
    route(Method::DELETE, "/api/v1/centres/{centre_id}",            Access::Coordinator,   "centre.disable"),
    route(Method::POST,   "/api/v1/cases/{case_id}/grants",         Access::Coordinator,   "grant.create"),
    route(Method::GET,    "/api/v1/cases/{case_id}/grants",         Access::Coordinator,   "grant.list"),
    route(Method::DELETE, "/api/v1/grants/{grant_id}",              Access::Coordinator,   "grant.revoke"),
    route(Method::GET,    "/api/v1/patient/case",                   Access::Patient,       "patient.case.read"),
    route(Method::GET,    "/api/v1/patient/access",                 Access::Patient,       "patient.access.read"),
    route(Method::GET,    "/api/v1/grant",                          Access::Centre,        "grant.read"),
    route(Method::GET,    "/api/v1/grant/files/{file_id}",          Access::Centre,        "download.plaintext"),
    route(Method::GET,    "/api/v1/grant/files/{file_id}/sealed",   Access::Centre,        "download.sealed"),
    route(Method::GET,    "/api/v1/audit",                          Access::Compliance,    "audit.export"),
    public(Method::OPTIONS, "/tus"),
    public(Method::OPTIONS, "/tus/"),
    route(Method::POST,   "/tus",                                   Access::PatientUpload, "upload.create"),
    route(Method::POST,   "/tus/",                                  Access::PatientUpload, "upload.create"),
    route(Method::HEAD,   "/tus/{upload_id}",                       Access::PatientUpload, "upload.head"),
    route(Method::PATCH,  "/tus/{upload_id}",                       Access::PatientUpload, "upload.patch"),
    route(Method::DELETE, "/tus/{upload_id}",                       Access::PatientUpload, "upload.terminate"),
];

/// The table row for a matched route.
pub fn lookup(method: &Method, matched_path: &str) -> Option<&'static RouteSpec> {
    ROUTES
        .iter()
        .find(|r| r.method == *method && r.path == matched_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicate_rows() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
