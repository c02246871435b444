//! The route table: every endpoint of the API, with its method, path,
//! listener, the access it needs and the audit action it records. The
//! router ([`super::router`]), the authorisation layer ([`super::auth`])
//! and the role-matrix test all read this one table. Deny by default: a
//! route the table does not name is refused by the auth layer even if a
//! handler exists. To add a route: a variant here, its row in
//! [`Endpoint::spec`], its handler in `super::handler_of`.

use axum::http::Method;

use crate::service::principal::{OperatorRole, Principal};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token (health, tus discovery, the upload page).
    Public,
    Coordinator,
    Compliance,
    /// A case's upload token.
    Patient,
    /// A case's upload token, within its upload period.
    PatientUpload,
    /// Uploading into a case: its upload token within the upload period,
    /// or a coordinator (who names the case in the upload's metadata).
    Uploader,
    /// A grant token over a TLS connection that presented the grant's
    /// centre certificate (centre listener only).
    Centre,
}

impl Access {
    /// Whether an authenticated caller has the role this access needs
    /// (centre callers are let in by the grant rule instead).
    pub fn admits(self, principal: &Principal) -> bool {
        matches!(
            (principal, self),
            (
                Principal::Operator {
                    role: OperatorRole::Coordinator,
                    ..
                },
                Access::Coordinator
            ) | (
                Principal::Operator {
                    role: OperatorRole::Compliance,
                    ..
                },
                Access::Compliance
            ) | (
                Principal::Operator {
                    role: OperatorRole::Coordinator,
                    ..
                },
                Access::Uploader
            ) | (
                Principal::Patient { .. },
                Access::Patient | Access::PatientUpload | Access::Uploader
            )
        )
    }
}

/// Which listener serves an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Operators, patients, health (server certificate only).
    Main,
    /// Reviewing centres (client certificate required).
    Centre,
}

/// Every endpoint of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Healthz,
    Readyz,
    CreateCase,
    ListCases,
    ReadCase,
    DeleteCase,
    ReissueUploadToken,
    RegisterCentre,
    ListCentres,
    UpdateCentre,
    DisableCentre,
    CreateGrant,
    ListGrants,
    RevokeGrant,
    PatientCase,
    PatientAccess,
    GrantInfo,
    DownloadPlaintext,
    DownloadSealed,
    DicomwebStudies,
    DicomwebStudySeries,
    DicomwebStudyInstances,
    DicomwebSeriesInstances,
    DicomwebStudy,
    DicomwebSeries,
    DicomwebInstance,
    DicomwebStudyMetadata,
    DicomwebSeriesMetadata,
    DicomwebInstanceMetadata,
    DicomwebFrames,
    AuditExport,
    AuditCheckpoint,
    AuditProof,
    AuditLeaves,
    AuditAlerts,
    CaseDisclosures,
    TusOptions,
    TusOptionsSlash,
    TusCreate,
    TusCreateSlash,
    TusHead,
    TusPatch,
    TusTerminate,
    UploadPage,
    UploadAsset,
    GrantTusCreate,
    GrantTusCreateSlash,
    GrantTusHead,
    GrantTusPatch,
    GrantTusTerminate,
    ReleaseFile,
    PatientFile,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Spec {
    pub method: Method,
    pub path: &'static str,
    pub listener: Listener,
    pub access: Access,
    /// Audit action; `None` for public endpoints, which are not audited.
    pub action: Option<&'static str>,
}

const fn main(method: Method, path: &'static str, access: Access, action: &'static str) -> Spec {
    Spec {
        method,
        path,
        listener: Listener::Main,
        access,
        action: Some(action),
    }
}

const fn public(method: Method, path: &'static str) -> Spec {
    Spec {
        method,
        path,
        listener: Listener::Main,
        access: Access::Public,
        action: None,
    }
}

const fn centre(path: &'static str, action: &'static str) -> Spec {
    centre_by(Method::GET, path, action)
}

const fn centre_by(method: Method, path: &'static str, action: &'static str) -> Spec {
    Spec {
        method,
        path,
        listener: Listener::Centre,
        access: Access::Centre,
        action: Some(action),
    }
}

impl Endpoint {
    /// Every endpoint, in table order.
    pub const ALL: [Endpoint; 52] = [
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::CreateCase,
        Endpoint::ListCases,
        Endpoint::ReadCase,
        Endpoint::DeleteCase,
        Endpoint::ReissueUploadToken,
        Endpoint::RegisterCentre,
        Endpoint::ListCentres,
        Endpoint::UpdateCentre,
        Endpoint::DisableCentre,
        Endpoint::CreateGrant,
        Endpoint::ListGrants,
        Endpoint::RevokeGrant,
        Endpoint::PatientCase,
        Endpoint::PatientAccess,
        Endpoint::GrantInfo,
        Endpoint::DownloadPlaintext,
        Endpoint::DownloadSealed,
        Endpoint::DicomwebStudies,
        Endpoint::DicomwebStudySeries,
        Endpoint::DicomwebStudyInstances,
        Endpoint::DicomwebSeriesInstances,
        Endpoint::DicomwebStudy,
        Endpoint::DicomwebSeries,
        Endpoint::DicomwebInstance,
        Endpoint::DicomwebStudyMetadata,
        Endpoint::DicomwebSeriesMetadata,
        Endpoint::DicomwebInstanceMetadata,
        Endpoint::DicomwebFrames,
        Endpoint::AuditExport,
        Endpoint::AuditCheckpoint,
        Endpoint::AuditProof,
        Endpoint::AuditLeaves,
        Endpoint::AuditAlerts,
        Endpoint::CaseDisclosures,
        Endpoint::TusOptions,
        Endpoint::TusOptionsSlash,
        Endpoint::TusCreate,
        Endpoint::TusCreateSlash,
        Endpoint::TusHead,
        Endpoint::TusPatch,
        Endpoint::TusTerminate,
        Endpoint::UploadPage,
        Endpoint::UploadAsset,
        Endpoint::GrantTusCreate,
        Endpoint::GrantTusCreateSlash,
        Endpoint::GrantTusHead,
        Endpoint::GrantTusPatch,
        Endpoint::GrantTusTerminate,
        Endpoint::ReleaseFile,
        Endpoint::PatientFile,
    ];

    /// The endpoint's row.
    #[rustfmt::skip]
    pub fn spec(self) -> Spec {
        use Access::*;
        use Endpoint as E;
        match self {
            E::Healthz =>            public(Method::GET, "/healthz"),
            E::Readyz =>             public(Method::GET, "/readyz"),
            E::CreateCase =>         main(Method::POST,   "/api/v1/cases",                        Coordinator,   "case.create"),
            E::ListCases =>          main(Method::GET,    "/api/v1/cases",                        Coordinator,   "case.list"),
            E::ReadCase =>           main(Method::GET,    "/api/v1/cases/{case_id}",              Coordinator,   "case.read"),
            E::DeleteCase =>         main(Method::DELETE, "/api/v1/cases/{case_id}",              Coordinator,   "case.delete"),
            E::ReissueUploadToken => main(Method::POST,   "/api/v1/cases/{case_id}/upload-token", Coordinator,   "case.upload_token.reissue"),
            E::RegisterCentre =>     main(Method::POST,   "/api/v1/centres",                      Coordinator,   "centre.register"),
            E::ListCentres =>        main(Method::GET,    "/api/v1/centres",                      Coordinator,   "centre.list"),
            E::UpdateCentre =>       main(Method::PUT,    "/api/v1/centres/{centre_id}",          Coordinator,   "centre.update"),
            E::DisableCentre =>      main(Method::DELETE, "/api/v1/centres/{centre_id}",          Coordinator,   "centre.disable"),
            E::CreateGrant =>        main(Method::POST,   "/api/v1/cases/{case_id}/grants",       Coordinator,   "grant.create"),
            E::ListGrants =>         main(Method::GET,    "/api/v1/cases/{case_id}/grants",       Coordinator,   "grant.list"),
            E::RevokeGrant =>        main(Method::DELETE, "/api/v1/grants/{grant_id}",            Coordinator,   "grant.revoke"),
            E::PatientCase =>        main(Method::GET,    "/api/v1/patient/case",                 Patient,       "patient.case.read"),
            E::PatientAccess =>      main(Method::GET,    "/api/v1/patient/access",               Patient,       "patient.access.read"),
            E::GrantInfo =>          centre("/api/v1/grant",                                                     "grant.read"),
            E::DownloadPlaintext =>  centre("/api/v1/grant/files/{file_id}",                                     "download.plaintext"),
            E::DownloadSealed =>     centre("/api/v1/grant/files/{file_id}/sealed",                              "download.sealed"),
            E::DicomwebStudies =>          centre("/dicomweb/studies",                                                          "dicomweb.search"),
            E::DicomwebStudySeries =>      centre("/dicomweb/studies/{study}/series",                                           "dicomweb.search"),
            E::DicomwebStudyInstances =>   centre("/dicomweb/studies/{study}/instances",                                        "dicomweb.search"),
            E::DicomwebSeriesInstances =>  centre("/dicomweb/studies/{study}/series/{series}/instances",                        "dicomweb.search"),
            E::DicomwebStudy =>            centre("/dicomweb/studies/{study}",                                                  "dicomweb.retrieve"),
            E::DicomwebSeries =>           centre("/dicomweb/studies/{study}/series/{series}",                                  "dicomweb.retrieve"),
            E::DicomwebInstance =>         centre("/dicomweb/studies/{study}/series/{series}/instances/{instance}",             "dicomweb.retrieve"),
            E::DicomwebStudyMetadata =>    centre("/dicomweb/studies/{study}/metadata",                                         "dicomweb.metadata"),
            E::DicomwebSeriesMetadata =>   centre("/dicomweb/studies/{study}/series/{series}/metadata",                         "dicomweb.metadata"),
            E::DicomwebInstanceMetadata => centre("/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",    "dicomweb.metadata"),
            E::DicomwebFrames =>           centre("/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", "dicomweb.frames"),
            E::AuditExport =>        main(Method::GET,    "/api/v1/audit",                        Compliance,    "audit.export"),
            E::AuditCheckpoint =>    main(Method::GET,    "/api/v1/audit/checkpoint",             Compliance,    "audit.checkpoint.read"),
            E::AuditProof =>         main(Method::GET,    "/api/v1/audit/proof",                  Compliance,    "audit.proof.read"),
            E::AuditLeaves =>        main(Method::GET,    "/api/v1/audit/leaves",                 Compliance,    "audit.leaves.read"),
            E::AuditAlerts =>        main(Method::GET,    "/api/v1/audit/alerts",                 Compliance,    "audit.alerts.read"),
            E::CaseDisclosures =>    main(Method::GET,    "/api/v1/cases/{case_id}/disclosures",  Compliance,    "audit.disclosures.read"),
            E::TusOptions =>         public(Method::OPTIONS, "/tus"),
            E::TusOptionsSlash =>    public(Method::OPTIONS, "/tus/"),
            E::TusCreate =>          main(Method::POST,   "/tus",                                 Uploader,      "upload.create"),
            E::TusCreateSlash =>     main(Method::POST,   "/tus/",                                Uploader,      "upload.create"),
            E::TusHead =>            main(Method::HEAD,   "/tus/{upload_id}",                     Uploader,      "upload.head"),
            E::TusPatch =>           main(Method::PATCH,  "/tus/{upload_id}",                     Uploader,      "upload.patch"),
            E::TusTerminate =>       main(Method::DELETE, "/tus/{upload_id}",                     Uploader,      "upload.terminate"),
            E::UploadPage =>         public(Method::GET, "/upload"),
            E::UploadAsset =>        public(Method::GET, "/upload/assets/{name}"),
            E::GrantTusCreate =>     centre_by(Method::POST,   "/api/v1/grant/tus",               "upload.create"),
            E::GrantTusCreateSlash => centre_by(Method::POST,  "/api/v1/grant/tus/",              "upload.create"),
            E::GrantTusHead =>       centre_by(Method::HEAD,   "/api/v1/grant/tus/{upload_id}",   "upload.head"),
            E::GrantTusPatch =>      centre_by(Method::PATCH,  "/api/v1/grant/tus/{upload_id}",   "upload.patch"),
            E::GrantTusTerminate =>  centre_by(Method::DELETE, "/api/v1/grant/tus/{upload_id}",   "upload.terminate"),
            E::ReleaseFile =>        main(Method::POST,   "/api/v1/cases/{case_id}/files/{file_id}/release", Coordinator, "file.release"),
            E::PatientFile =>        main(Method::GET,    "/api/v1/patient/files/{file_id}",      Patient,       "patient.download"),
        }
    }

    /// Whether the endpoint is part of tus (streamed bodies: no body limit,
    /// no whole-request deadline, `Tus-Resumable` on every answer).
    pub fn is_tus(self) -> bool {
        let path = self.spec().path;
        path.starts_with("/tus") || path.starts_with("/api/v1/grant/tus")
    }

    /// The endpoint a matched route template and method belong to.
    pub fn find(method: &Method, matched_path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| {
            let spec = e.spec();
            spec.method == *method && spec.path == matched_path
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicate_rows() {
        for (i, a) in Endpoint::ALL.iter().enumerate() {
            for b in &Endpoint::ALL[i + 1..] {
                let (a, b) = (a.spec(), b.spec());
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn public_endpoints_are_not_audited_and_the_rest_are() {
        for e in Endpoint::ALL {
            let spec = e.spec();
            assert_eq!(
                spec.access == Access::Public,
                spec.action.is_none(),
                "{e:?}"
            );
            assert_eq!(
                spec.listener == Listener::Centre,
                spec.access == Access::Centre,
                "{e:?}"
            );
        }
    }
}
