//! DICOMweb over a grant: the grant's complete DICOM files seen as
//! instances of studies and series, for QIDO-RS search ([`search`]),
//! WADO-RS retrieval ([`retrieval`]: which files a study, series or
//! instance retrieval sends, each then a counted download through
//! `service::downloads`) and metadata ([`header_json`], read from the
//! stored object, not counted). Only complete DICOM files in the grant are
//! instances; anything else is "not found", never "forbidden", so a centre
//! learns nothing of what its grant does not hold.
//!
//! The attributes come from the index sealed at upload
//! (`upload::dicom::DicomIndex`). A file completed before the index
//! existed has none: its header is read from the stored object on first
//! use and the index stored then, so it is read once.

mod attributes;
mod fragments;
mod frames;
mod header;
mod json;
pub mod pixels;
pub mod query;
mod retrieve;
mod search;
pub mod walk;

use super::Services;
use super::audit;
use super::downloads::{self, GrantedFile};
use super::grants::GrantError;
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::manifest::DicomFields;
use crate::upload::dicom::{self, DICOM_INDEX, DicomIndex, Inspection};

pub use fragments::FragmentCache;
pub use frames::{FramePlan, frame_list, frames, start_frames};
pub use header::read_head;
pub use query::Query;
pub use retrieve::{header_json, metadata, retrieval, start_part};
pub use search::{Level, search};

/// Audit action of QIDO-RS searches.
pub const SEARCH: &str = "dicomweb.search";
/// Audit action of WADO-RS retrievals (each instance's download entries).
pub const RETRIEVE: &str = "dicomweb.retrieve";
/// Audit action of WADO-RS metadata.
pub const METADATA: &str = "dicomweb.metadata";
/// Audit action of WADO-RS frames (each range's download entries).
pub const FRAMES: &str = "dicomweb.frames";

/// Whether `uid` is a DICOM UID: digits and dots, at most 64 characters,
/// no empty component.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| !c.is_empty())
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A DICOM file of the grant.
pub struct Instance {
    pub file: GrantedFile,
    pub fields: DicomFields,
    pub index: DicomIndex,
}

impl Instance {
    pub fn study(&self) -> &str {
        &self.fields.study_instance_uid
    }

    pub fn series(&self) -> &str {
        &self.fields.series_instance_uid
    }

    pub fn sop(&self) -> &str {
        &self.index.sop_instance_uid
    }

    /// Viewers order a series by instance number, then by UID.
    fn order(&self) -> (String, String, u64, String) {
        let number = self.index.instance_number.parse().unwrap_or(u64::MAX);
        let (study, series) = (self.study().to_owned(), self.series().to_owned());
        (study, series, number, self.sop().to_owned())
    }
}

/// Which instances a request's path names.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub study: Option<String>,
    pub series: Option<String>,
    pub instance: Option<String>,
}

impl Scope {
    /// From the path's UIDs, each checked to be a UID.
    pub fn new(
        study: Option<String>,
        series: Option<String>,
        instance: Option<String>,
    ) -> Result<Scope, GrantError> {
        for uid in [&study, &series, &instance].into_iter().flatten() {
            if !valid_uid(uid) {
                return Err(GrantError::BadRequest(
                    "a UID in the path is not a DICOM UID (digits and dots, at most 64)".into(),
                ));
            }
        }
        Ok(Scope {
            study,
            series,
            instance,
        })
    }

    fn contains(&self, i: &Instance) -> bool {
        self.study.as_deref().is_none_or(|s| s == i.study())
            && self.series.as_deref().is_none_or(|s| s == i.series())
            && self.instance.as_deref().is_none_or(|s| s == i.sop())
    }

    fn describe(&self) -> String {
        let parts = [("study", &self.study), ("series", &self.series)];
        let mut out: Vec<String> = parts
            .iter()
            .filter_map(|(name, uid)| uid.as_ref().map(|u| format!("{name} {u}")))
            .collect();
        if let Some(i) = &self.instance {
            out.push(format!("instance {i}"));
        }
        if out.is_empty() {
            "all studies".into()
        } else {
            out.join(", ")
        }
    }
}

/// The grant's instances, with the case key that opens their objects.
pub struct Granted {
    pub case_key: CaseKey,
    pub instances: Vec<Instance>,
}

/// The grant's complete DICOM files as instances, in viewer order.
pub async fn instances(
    svc: &Services,
    grant: (&GrantRow, &CentreRow),
) -> Result<Granted, GrantError> {
    let (case_key, files) = downloads::granted_files(svc, grant.0, None).await?;
    let mut instances = Vec::new();
    for file in files {
        let Some(fields) = file.meta.dicom.clone() else {
            continue;
        };
        match header::index_of(svc, &case_key, grant, &file).await? {
            Some(index) if valid_uid(&index.sop_instance_uid) => instances.push(Instance {
                file,
                fields,
                index,
            }),
            _ => {
                tracing::warn!(file = %file.file_id, "DICOM file without a usable SOP instance UID")
            }
        }
    }
    instances.sort_by_cached_key(Instance::order);
    Ok(Granted {
        case_key,
        instances,
    })
}

async fn record(
    svc: &Services,
    ctx: &RequestContext,
    (grant, centre): (&GrantRow, &CentreRow),
    entry: NewEntry,
) -> Result<(), GrantError> {
    let entry = entry
        .case(&grant.case_id)
        .centre(&centre.centre_id)
        .grant(&grant.grant_id);
    Ok(audit::record(svc, ctx, entry).await?)
}

/// The instances in `scope`; a scope that names what the grant does not
/// hold is refused (audited under `action`) as not found.
pub async fn in_scope(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    scope: &Scope,
    action: &'static str,
) -> Result<Granted, GrantError> {
    let mut granted = instances(svc, grant).await?;
    granted.instances.retain(|i| scope.contains(i));
    if granted.instances.is_empty() && (scope.study.is_some() || scope.series.is_some()) {
        let reason = format!("{} is not in the grant", scope.describe());
        record(
            svc,
            ctx,
            grant,
            NewEntry::new(action, Outcome::Deny).reason(reason),
        )
        .await?;
        return Err(GrantError::NotFound);
    }
    Ok(granted)
}
