//! Whose upload it is: an upload is resumed, inspected or ended only by
//! the kind of uploader that created it — the case's patient, the centre
//! that created it (through any of its grants on the case), or a
//! coordinator. Anyone else's request for it is answered as for an
//! unknown upload (404), so upload ids of other uploaders cannot even be
//! confirmed, and audited with the reason.

use super::{UploadError, Uploads};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db::{self, cases::CaseRow, files::Source};
use crate::ids::UploadId;

impl Uploads {
    /// Checks that `upload_id`, if it is an upload of `case`, was created
    /// by `uploader`. An unknown id passes (the request then meets tus's
    /// own 404); another uploader's is refused as not found.
    pub async fn check_owner(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        (case, uploader): (&CaseRow, &Source),
        upload_id: &UploadId,
    ) -> Result<(), UploadError> {
        match db::uploads::get(&self.db, &case.case_id, upload_id).await? {
            Some(upload) if upload.uploader != *uploader => {
                let entry = NewEntry::new(action, Outcome::Deny)
                    .case(&case.case_id)
                    .file(&upload.file_id)
                    .reason(format!(
                        "upload {upload_id} was created by the {}, not this {}",
                        upload.uploader.kind(),
                        uploader.kind()
                    ));
                self.audit(ctx, entry).await?;
                Err(UploadError::NotFound)
            }
            _ => Ok(()),
        }
    }

    /// An open case by id (a centre's grant names it); a deleted one is
    /// not found.
    pub async fn open_case(&self, case_id: &crate::ids::CaseId) -> Result<CaseRow, UploadError> {
        db::cases::get(&self.db, case_id)
            .await?
            .ok_or(UploadError::NotFound)
    }

    /// The case of a coordinator's upload: the request names only the
    /// upload. An upload that is not a coordinator's, or whose case was
    /// deleted, is not found (audited).
    pub async fn coordinator_upload_case(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        upload_id: &UploadId,
    ) -> Result<CaseRow, UploadError> {
        let upload = db::uploads::find(&self.db, upload_id).await?;
        let case = match &upload {
            Some(u) if u.uploader == Source::Coordinator => {
                db::cases::get(&self.db, &u.case_id).await?
            }
            _ => None,
        };
        match case {
            Some(case) => Ok(case),
            None => {
                let mut entry = NewEntry::new(action, Outcome::Deny).reason(format!(
                    "upload {upload_id} is no coordinator's upload of an open case"
                ));
                if let Some(u) = &upload {
                    entry = entry.case(&u.case_id);
                }
                self.audit(ctx, entry).await?;
                Err(UploadError::NotFound)
            }
        }
    }
}
