//! The fragment list of an instance's encapsulated pixel data: its basic
//! offset table and where each fragment lies, walked from the object in
//! one pass (eight bytes per item header, read through one opened
//! [`PlainReader`], so each chunk is decrypted at most once), and kept in a
//! bounded in-memory cache by file and object digest: a viewer asks for a
//! multi-frame instance one frame per request, and each request would
//! otherwise walk every fragment again. A replaced object has another
//! digest, so a cached list never describes bytes it did not walk.
//!
//! The walk trusts nothing the file claims: the offset table is read only
//! up to [`MAX_OFFSET_TABLE`], at most [`MAX_FRAGMENTS`] fragments are
//! listed, and every item must lie inside the file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::pixels::{self, Fragment, ItemHeader, PixelData};
use crate::ids::FileId;
use crate::service::downloads::PlainReader;
use crate::service::grants::GrantError;

/// Most fragments of encapsulated pixel data the gateway lists.
pub const MAX_FRAGMENTS: usize = 10_000;
/// The largest basic offset table read: four bytes per frame, and never
/// more than this whatever a file claims.
pub const MAX_OFFSET_TABLE: u64 = 4 * 1024 * 1024;
/// Memory the cache may hold, counted as the lists' sizes.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The basic offset table and fragments of encapsulated pixel data.
#[derive(Debug, PartialEq, Eq)]
pub struct Fragments {
    pub table: Vec<u32>,
    pub list: Vec<Fragment>,
}

impl Fragments {
    /// Bytes it holds in memory (what the cache counts).
    fn weight(&self) -> usize {
        self.table.len() * 4 + self.list.len() * std::mem::size_of::<Fragment>()
    }
}

/// Walks the items of encapsulated pixel data whose value starts at `at`
/// (only the offset table's contents are read). The inner error says why
/// the items do not walk (the file's claims do not fit it).
pub async fn walk(
    reader: &mut PlainReader<'_>,
    at: PixelData,
) -> Result<Result<Fragments, &'static str>, GrantError> {
    let size = reader.size();
    let mut pos = at.value_at;
    let Some(ItemHeader::Item(table_len)) = item(reader, pos).await? else {
        return Ok(Err("has no offset table item"));
    };
    let table_len = u64::from(table_len);
    let table_at = pos.saturating_add(8);
    let table_end = table_at.saturating_add(table_len);
    if table_len > MAX_OFFSET_TABLE || table_end > size {
        return Ok(Err("claims an offset table larger than it can hold"));
    }
    let table = pixels::offset_table(&reader.read(table_at..table_end).await?);
    pos = table_end;
    let first = pos;
    let mut list = Vec::new();
    while pos < size && list.len() < MAX_FRAGMENTS {
        match item(reader, pos).await? {
            Some(ItemHeader::Item(len)) => {
                let start = pos.saturating_add(8);
                let bytes = start..start.saturating_add(u64::from(len));
                if bytes.end > size {
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
            Some(ItemHeader::End) => return Ok(Ok(Fragments { table, list })),
            None => return Ok(Err("has an item that is not one")),
        }
    }
    // Out of fragments to walk, or at the end of the file, before the
    // sequence ended: a list cut short is no frame to send (or cache).
    Ok(Err(
        "has more fragments than are walked, or no sequence end",
    ))
}

async fn item(reader: &mut PlainReader<'_>, at: u64) -> Result<Option<ItemHeader>, GrantError> {
    let bytes = reader.read(at..at.saturating_add(8)).await?;
    Ok(pixels::item_header(&bytes))
}

/// Fragment lists walked recently, by file and object digest; bounded by
/// [`CACHE_BYTES`], the oldest dropped first.
#[derive(Default)]
pub struct FragmentCache {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    lists: HashMap<(FileId, String), (u64, Arc<Fragments>)>,
    weight: usize,
    stamp: u64,
}

impl FragmentCache {
    /// The list walked for `file` at object `digest`, if still cached.
    pub fn get(&self, file: &FileId, digest: &str) -> Option<Arc<Fragments>> {
        let mut inner = self.inner.lock().ok()?;
        inner.stamp += 1;
        let stamp = inner.stamp;
        let (used, list) = inner.lists.get_mut(&(file.clone(), digest.to_owned()))?;
        *used = stamp;
        Some(list.clone())
    }

    /// Keeps a walked list (one larger than the whole cache is not kept).
    pub fn put(&self, file: &FileId, digest: &str, list: Arc<Fragments>) {
        let weight = list.weight();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if weight > CACHE_BYTES {
            return;
        }
        while inner.weight + weight > CACHE_BYTES {
            let oldest = inner
                .lists
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone());
            let Some(key) = oldest else { break };
            if let Some((_, gone)) = inner.lists.remove(&key) {
                inner.weight -= gone.weight();
            }
        }
        inner.stamp += 1;
        let stamp = inner.stamp;
        let key = (file.clone(), digest.to_owned());
        if let Some((_, old)) = inner.lists.insert(key, (stamp, list)) {
            inner.weight -= old.weight();
        }
        inner.weight += weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fragments: usize) -> Arc<Fragments> {
        let list = (0..fragments as u64)
            .map(|n| Fragment {
                offset: n * 16,
                bytes: n * 16 + 8..n * 16 + 16,
            })
            .collect();
        Arc::new(Fragments {
            table: Vec::new(),
            list,
        })
    }

    #[test]
    fn the_cache_is_keyed_by_object_and_bounded() {
        let cache = FragmentCache::default();
        let (a, b) = (FileId::generate(), FileId::generate());
        cache.put(&a, "digest-1", list(3));
        assert_eq!(cache.get(&a, "digest-1").unwrap().list.len(), 3);
        assert!(cache.get(&a, "digest-2").is_none(), "another object");
        assert!(cache.get(&b, "digest-1").is_none(), "another file");
        // Lists of the most fragments a walk keeps: the cache holds only
        // as many as fit its bound, dropping the least recently used.
        let per = list(MAX_FRAGMENTS).weight();
        let fit = CACHE_BYTES / per;
        let files: Vec<FileId> = (0..fit + 2).map(|_| FileId::generate()).collect();
        for (n, f) in files.iter().enumerate() {
            cache.put(f, "d", list(MAX_FRAGMENTS));
            // Keep `a` in use: it stays while older ones go.
            assert!(cache.get(&a, "digest-1").is_some(), "after {n}");
        }
        let inner = cache.inner.lock().unwrap();
        assert!(inner.weight <= CACHE_BYTES);
        assert_eq!(
            inner.weight,
            inner.lists.values().map(|(_, l)| l.weight()).sum::<usize>()
        );
        drop(inner);
        assert!(cache.get(&files[0], "d").is_none(), "the oldest went");
        assert!(
            cache.get(&files[fit + 1], "d").is_some(),
            "the newest stays"
        );
    }
}
