//! WADO-RS frames of one instance: which bytes of its file each asked
//! frame is ([`super::walk`] finds PixelData in the header, and
//! [`super::pixels`] the frames in it from the geometry or, for
//! encapsulated pixel data, the fragment list [`super::fragments`] walks
//! or remembers). The bytes are then served as one download of pieces of
//! the file: never from byte 0, so frames are not a new download of the
//! file, but every byte is charged to the file's budget of
//! `max_downloads × size` like a Range continuation, leased and audited
//! once per request.

use std::ops::Range;
use std::sync::Arc;

use super::fragments::{self, FragmentCache, Fragments};
use super::pixels::{self, Geometry};
use super::walk::{self, PixelData};
use super::{FRAMES, Granted, Instance, Scope, header, in_scope, record};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::FileId;
use crate::service::Services;
use crate::service::downloads::{self, Ask, Download, Kind, PlainReader};
use crate::service::grants::GrantError;

/// Most frames one request may ask for.
pub const MAX_FRAMES: usize = 1000;

/// The frames asked for, in the order asked: `1,2,3`.
pub fn frame_list(raw: &str) -> Result<Vec<u32>, GrantError> {
    let bad = || {
        GrantError::BadRequest(format!(
            "frames must be a comma-separated list of 1 to {MAX_FRAMES} frame numbers from 1"
        ))
    };
    let list: Vec<u32> = raw
        .split(',')
        .map(|n| n.trim().parse::<u32>().ok().filter(|n| *n >= 1))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if list.is_empty() || list.len() > MAX_FRAMES {
        return Err(bad());
    }
    // Each frame once: a frame's fragments are pieces of the answer, and
    // a list repeating one frame would multiply them (one frame of a
    // single-frame image can be every fragment of the file).
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    if !list.iter().all(|n| seen.insert(*n)) {
        return Err(GrantError::BadRequest(
            "frames must not repeat a frame number".into(),
        ));
    }
    Ok(list)
}

/// Frames to send: the instance (with the case key that opens its file),
/// its stored transfer syntax, and per frame the byte ranges of the file
/// that make it up.
pub struct FramePlan {
    pub granted: Granted,
    pub transfer_syntax_uid: String,
    pub frames: Vec<Vec<Range<u64>>>,
}

impl FramePlan {
    fn instance(&self) -> Result<&Instance, GrantError> {
        self.granted
            .instances
            .first()
            .ok_or_else(|| GrantError::Internal("frame plan without its instance".into()))
    }

    /// The file the frames are bytes of.
    pub fn file_id(&self) -> Result<&FileId, GrantError> {
        Ok(&self.instance()?.file.file_id)
    }
}

/// The bytes of each asked frame of the instance in `scope`. An instance
/// not in the grant, without pixel data, or a frame beyond its last is
/// "not found" (audited).
pub async fn frames(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    scope: &Scope,
    asked: &[u32],
) -> Result<FramePlan, GrantError> {
    let mut granted: Granted = in_scope(svc, ctx, grant, scope, FRAMES).await?;
    let refuse = async |reason: String| -> GrantError {
        let entry = NewEntry::new(FRAMES, Outcome::Deny).reason(reason);
        match record(svc, ctx, grant, entry).await {
            Ok(()) => GrantError::NotFound,
            Err(e) => e,
        }
    };
    granted.instances.truncate(1);
    let Some(instance) = granted.instances.first() else {
        return Err(refuse(format!("{} is not in the grant", scope.describe())).await);
    };
    let file = &instance.file.file_id;
    // Frames are pixel data of the file: once its downloads are used up,
    // none is sent, as its retrieval and metadata are refused — decided
    // before its object is opened or its fragments walked.
    if instance.file.downloads >= grant.0.max_downloads {
        let entry =
            NewEntry::new(FRAMES, Outcome::Deny).reason(format!("{file}: downloads used up"));
        record(svc, ctx, grant, entry.file(file)).await?;
        return Err(GrantError::Exhausted);
    }
    let syntax = instance.index.transfer_syntax_uid.clone();
    let located = match locate(svc, &granted.case_key, grant, instance, &syntax).await {
        Ok(located) => located,
        Err(e) => {
            // Refused like the rest: the audit log says why, precisely.
            let reason = format!("{file}: pixel data not located: {e}");
            let entry = NewEntry::new(FRAMES, Outcome::Deny).reason(reason);
            record(svc, ctx, grant, entry.file(file)).await?;
            return Err(e);
        }
    };
    let all = match located {
        Located::Nowhere => {
            return Err(refuse(format!("{file}: no pixel data found (syntax {syntax})")).await);
        }
        Located::Broken(why) => {
            return Err(refuse(format!("{file}: encapsulated pixel data {why}")).await);
        }
        Located::Native(at) => native(instance, at, asked),
        Located::Encapsulated(found) => encapsulated(instance, &found, asked),
    };
    // A frame is bytes of the file: a length the file claims past its end
    // is not a frame.
    let size = instance.file.size;
    let all = all.and_then(|frames| {
        frames
            .iter()
            .position(|ranges| ranges.iter().any(|r| r.start >= r.end || r.end > size))
            .map_or(Ok(frames), |i| Err(asked[i]))
    });
    match all {
        Ok(frames) => Ok(FramePlan {
            granted,
            transfer_syntax_uid: syntax,
            frames,
        }),
        Err(n) => Err(refuse(format!("{file}: frame {n} is not one of its frames")).await),
    }
}

/// Starts the one download that sends a plan's frames: a continuation
/// (never a new use of the file), its bytes leased and audited once for
/// the request, refused before any byte goes out when the file's budget
/// cannot cover them.
pub async fn start_frames(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    plan: &FramePlan,
) -> Result<Download, GrantError> {
    let instance = plan.instance()?;
    // Its downloads were found not used up before the plan was made. The
    // lease below is a continuation (no new use): it checks the byte
    // budget again, atomically, but not the uses — a file whose last use
    // was taken since is still served within its bytes.
    let pieces: Vec<Range<u64>> = plan.frames.iter().flatten().cloned().collect();
    let what = (&plan.granted.case_key, &instance.file);
    let kind = (Kind::Plaintext, FRAMES);
    downloads::start_file(svc, ctx, grant, what, kind, Ask::Pieces(&pieces)).await
}

/// Where an instance's pixel data is.
enum Located {
    /// Not found (or a syntax the walker does not read).
    Nowhere,
    Native(PixelData),
    Encapsulated(Arc<Fragments>),
    /// Encapsulated, but its items do not fit the file: why.
    Broken(&'static str),
}

/// Finds the pixel data: the header read through one opened reader, then
/// for encapsulated pixel data its fragment list, from the cache when this
/// object's was walked before.
async fn locate(
    svc: &Services,
    key: &CaseKey,
    grant: (&GrantRow, &CentreRow),
    instance: &Instance,
    syntax: &str,
) -> Result<Located, GrantError> {
    let file = &instance.file;
    let version = FragmentCache::version(
        file.object_digest.as_deref(),
        file.meta.sha256.as_deref(),
        file.size,
    );
    let version = version.as_deref();
    let mut reader = PlainReader::open(svc, key, grant, file).await?;
    let Some((head, _)) = header::read_head(&mut reader).await? else {
        return Err(GrantError::Internal("header does not parse".into()));
    };
    let Some(pixel_data) = walk::locate(&head, syntax) else {
        return Ok(Located::Nowhere);
    };
    if pixel_data.length.is_some() {
        return Ok(Located::Native(pixel_data));
    }
    if let Some(found) = version.and_then(|v| svc.fragments.get(&file.file_id, v)) {
        return Ok(Located::Encapsulated(found));
    }
    match fragments::walk(&mut reader, pixel_data).await? {
        Ok(found) => {
            let found = Arc::new(found);
            if let Some(v) = version {
                svc.fragments.put(&file.file_id, v, found.clone());
            }
            Ok(Located::Encapsulated(found))
        }
        Err(why) => Ok(Located::Broken(why)),
    }
}

fn native(i: &Instance, at: PixelData, asked: &[u32]) -> Result<Vec<Vec<Range<u64>>>, u32> {
    let x = &i.index;
    let geometry = Geometry {
        rows: x.rows.unwrap_or(0),
        columns: x.columns.unwrap_or(0),
        samples: x.samples_per_pixel.unwrap_or(1),
        bits: x.bits_allocated.unwrap_or(0),
        frames: x.number_of_frames.unwrap_or(1),
    };
    asked
        .iter()
        .map(|n| {
            pixels::native_frame(at, geometry, *n)
                .map(|r| vec![r])
                .ok_or(*n)
        })
        .collect()
}

fn encapsulated(i: &Instance, f: &Fragments, asked: &[u32]) -> Result<Vec<Vec<Range<u64>>>, u32> {
    let frames = i.index.number_of_frames.unwrap_or(1);
    asked
        .iter()
        .map(|n| pixels::encapsulated_frame(&f.list, &f.table, frames, *n).ok_or(*n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(frame_list("1").unwrap(), vec![1]);
        assert_eq!(frame_list("3,1, 2").unwrap(), vec![3, 1, 2]);
        for bad in ["0", "", "1,,2", "-1", "a", "1.5", "99999999999", "1,2,1"] {
            assert!(frame_list(bad).is_err(), "{bad:?}");
        }
        let many = vec!["1"; MAX_FRAMES + 1].join(",");
        assert!(frame_list(&many).is_err());
        // A frame repeated would repeat its fragments: 1000 x "1" on a
        // single-frame image of 10,000 fragments was 10 million pieces.
        let repeated = vec!["1"; MAX_FRAMES].join(",");
        assert!(frame_list(&repeated).is_err());
        let distinct: Vec<String> = (1..=MAX_FRAMES).map(|n| n.to_string()).collect();
        assert_eq!(frame_list(&distinct.join(",")).unwrap().len(), MAX_FRAMES);
    }
}
