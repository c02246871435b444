//! WADO-RS frames of one instance: which bytes of its file each asked
//! frame is ([`super::pixels`] finds them from the header and, for
//! encapsulated pixel data, the item headers read from the object). The
//! bytes are then served as ranges of the file: never from byte 0, so a
//! frame is not a new download of the file, but every byte is charged to
//! the file's budget of `max_downloads × size` like a Range continuation.

use std::ops::Range;

use super::pixels::{self, Fragment, Geometry, ItemHeader, PixelData};
use super::{FRAMES, Granted, GrantedFile, Instance, Scope, header, in_scope, record};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::crypto::CaseKey;
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::ids::FileId;
use crate::service::Services;
use crate::service::downloads;
use crate::service::grants::GrantError;

/// Most frames one request may ask for.
pub const MAX_FRAMES: usize = 1000;
/// Most fragments of encapsulated pixel data the gateway lists.
const MAX_FRAGMENTS: usize = 10_000;
/// The largest basic offset table read: four bytes per frame, and never
/// more than this whatever a file claims.
const MAX_OFFSET_TABLE: u64 = 4 * 1024 * 1024;

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
    Ok(list)
}

/// Frames to send: the file, its stored transfer syntax, and per frame
/// the byte ranges of the file that make it up.
pub struct FramePlan {
    pub file_id: FileId,
    pub transfer_syntax_uid: String,
    pub frames: Vec<Vec<Range<u64>>>,
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
    let granted: Granted = in_scope(svc, ctx, grant, scope, FRAMES).await?;
    let refuse = async |reason: String| -> GrantError {
        let entry = NewEntry::new(FRAMES, Outcome::Deny).reason(reason);
        match record(svc, ctx, grant, entry).await {
            Ok(()) => GrantError::NotFound,
            Err(e) => e,
        }
    };
    let Some(instance) = granted.instances.first() else {
        return Err(refuse(format!("{} is not in the grant", scope.describe())).await);
    };
    let key = &granted.case_key;
    let (head, _) = header::read_head(svc, key, grant, &instance.file)
        .await?
        .ok_or_else(|| GrantError::Internal("header does not parse".into()))?;
    let syntax = instance.index.transfer_syntax_uid.as_str();
    let Some(pixel_data) = pixels::locate(&head, syntax) else {
        let file = &instance.file.file_id;
        return Err(refuse(format!("{file}: no pixel data found (syntax {syntax})")).await);
    };
    let all = match pixel_data.length {
        Some(_) => native(instance, pixel_data, asked),
        None => match fragments(svc, key, grant, &instance.file, pixel_data).await? {
            Ok(found) => encapsulated(instance, &found, asked),
            Err(why) => {
                let file = &instance.file.file_id;
                return Err(refuse(format!("{file}: encapsulated pixel data {why}")).await);
            }
        },
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
            file_id: instance.file.file_id.clone(),
            transfer_syntax_uid: syntax.to_owned(),
            frames,
        }),
        Err(n) => {
            let file = &instance.file.file_id;
            Err(refuse(format!("{file}: frame {n} is not one of its frames")).await)
        }
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

/// The basic offset table and fragments of encapsulated pixel data.
struct Fragments {
    table: Vec<u32>,
    list: Vec<Fragment>,
}

fn encapsulated(i: &Instance, f: &Fragments, asked: &[u32]) -> Result<Vec<Vec<Range<u64>>>, u32> {
    let frames = i.index.number_of_frames.unwrap_or(1);
    asked
        .iter()
        .map(|n| pixels::encapsulated_frame(&f.list, &f.table, frames, *n).ok_or(*n))
        .collect()
}

/// Walks the items of encapsulated pixel data from the object (eight
/// bytes per item header; only the offset table's contents are read).
/// The inner error says why the items do not walk (the file's claims
/// do not fit it).
async fn fragments(
    svc: &Services,
    key: &CaseKey,
    grant: (&GrantRow, &CentreRow),
    file: &GrantedFile,
    at: PixelData,
) -> Result<Result<Fragments, &'static str>, GrantError> {
    let item = async |at: u64| -> Result<Option<ItemHeader>, GrantError> {
        let bytes = downloads::read_plain(svc, key, grant, file, at..at + 8).await?;
        Ok(pixels::item_header(&bytes))
    };
    let mut pos = at.value_at;
    let Some(ItemHeader::Item(table_len)) = item(pos).await? else {
        return Ok(Err("has no offset table item"));
    };
    if u64::from(table_len) > MAX_OFFSET_TABLE || pos + 8 + u64::from(table_len) > file.size {
        return Ok(Err("claims an offset table larger than it can hold"));
    }
    let table_at = pos + 8;
    let table_bytes = downloads::read_plain(
        svc,
        key,
        grant,
        file,
        table_at..table_at + u64::from(table_len),
    )
    .await?;
    pos = table_at + u64::from(table_len);
    let first = pos;
    let mut list = Vec::new();
    while pos < file.size && list.len() < MAX_FRAGMENTS {
        match item(pos).await? {
            Some(ItemHeader::Item(len)) => {
                let bytes = pos + 8..pos + 8 + u64::from(len);
                if bytes.end > file.size {
                    return Ok(Err("has a fragment past the end of the file"));
                }
                if !bytes.is_empty() {
                    list.push(Fragment {
                        offset: pos - first,
                        bytes: bytes.clone(),
                    });
                }
                pos = bytes.end;
            }
            Some(ItemHeader::End) => break,
            None => return Ok(Err("has an item that is not one")),
        }
    }
    Ok(Ok(Fragments {
        table: pixels::offset_table(&table_bytes),
        list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(frame_list("1").unwrap(), vec![1]);
        assert_eq!(frame_list("3,1, 2").unwrap(), vec![3, 1, 2]);
        for bad in ["0", "", "1,,2", "-1", "a", "1.5", "99999999999"] {
            assert!(frame_list(bad).is_err(), "{bad:?}");
        }
        let many = vec!["1"; MAX_FRAMES + 1].join(",");
        assert!(frame_list(&many).is_err());
    }
}
