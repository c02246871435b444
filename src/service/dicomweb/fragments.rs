//! The fragment list of an instance's encapsulated pixel data: its basic
//! offset table and where each fragment lies, walked from the object in
//! one pass (eight bytes per item header, read through one opened
//! [`PlainReader`], so each chunk is decrypted at most once), and kept in a
//! bounded in-memory cache (least recently used dropped first) by file and
//! object version: a viewer asks for a multi-frame instance one frame per
//! request, and each request would otherwise walk every fragment again. A
//! replaced object has another version, so a cached list never describes
//! bytes it did not walk.
//!
//! The walk trusts nothing the file claims: the offset table is read only
//! up to [`MAX_OFFSET_TABLE`], at most [`MAX_FRAGMENTS`] fragments are
//! listed, and every item must lie inside the file.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::pixels::{self, Fragment, ItemHeader};
use super::walk::PixelData;
use crate::ids::FileId;
use crate::service::downloads::PlainReader;
use crate::service::grants::GrantError;

/// Most fragments of encapsulated pixel data the gateway lists.
pub const MAX_FRAGMENTS: usize = 10_000;
/// The largest basic offset table read: four bytes per frame, and never
/// more than this whatever a file claims.
pub const MAX_OFFSET_TABLE: u64 = 4 * 1024 * 1024;
/// Memory the cache may hold, counted as everything an entry holds.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The basic offset table and fragments of encapsulated pixel data.
#[derive(Debug, PartialEq, Eq)]
pub struct Fragments {
    pub table: Vec<u32>,
    pub list: Vec<Fragment>,
}

impl Fragments {
    /// Bytes its lists hold in memory (what the cache counts of them).
    fn weight(&self) -> usize {
        self.table.capacity() * 4 + self.list.capacity() * std::mem::size_of::<Fragment>()
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
    let mut table = pixels::offset_table(&reader.read(table_at..table_end).await?);
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
            Some(ItemHeader::End) => {
                // Kept (and weighed) at its length, not its growth's.
                list.shrink_to_fit();
                table.shrink_to_fit();
                return Ok(Ok(Fragments { table, list }));
            }
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

/// What a cached list is kept under: its file, and a value that changes
/// whenever the bytes it describes could (see [`FragmentCache::version`]).
type Key = (FileId, String);

/// A cached list and when it was last used.
struct Slot {
    used: u64,
    list: Arc<Fragments>,
    weight: usize,
}

/// What one cache entry costs besides its lists and its key's text: the
/// key twice (in the map and in the use order), the slot, the `Arc` with
/// its counts and the two `Vec` headers, and a share of the map's and the
/// tree's nodes and the allocator's rounding (160 bytes: measured by RSS,
/// 200,000 one-fragment entries took 579 bytes each; they now weigh 592).
/// Without it such a cache held ~700,000 entries in "16 MiB", really
/// 400 MB.
const ENTRY_COST: usize = 2 * std::mem::size_of::<Key>()
    + std::mem::size_of::<Slot>()
    + std::mem::size_of::<u64>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Fragments>()
    + 160;

/// Fragment lists walked recently, by file and object version; bounded by
/// [`CACHE_BYTES`] of everything an entry holds, the least recently used
/// dropped first. Lookups and evictions cost O(log n) under the lock.
pub struct FragmentCache {
    inner: Mutex<Cached>,
    limit: usize,
}

impl Default for FragmentCache {
    fn default() -> FragmentCache {
        FragmentCache::with_limit(CACHE_BYTES)
    }
}

#[derive(Default)]
struct Cached {
    lists: HashMap<Key, Slot>,
    /// Use tick → key, oldest first: the next to drop is the first.
    order: BTreeMap<u64, Key>,
    weight: usize,
    tick: u64,
}

impl Cached {
    fn touch(&mut self, key: &Key) -> Option<Arc<Fragments>> {
        self.tick += 1;
        let tick = self.tick;
        let slot = self.lists.get_mut(key)?;
        self.order.remove(&slot.used);
        slot.used = tick;
        self.order.insert(tick, key.clone());
        Some(slot.list.clone())
    }

    fn remove(&mut self, key: &Key) {
        if let Some(gone) = self.lists.remove(key) {
            self.order.remove(&gone.used);
            self.weight -= gone.weight;
        }
    }
}

/// What a list under `key` weighs in the cache.
fn entry_weight(key: &Key, list: &Fragments) -> usize {
    let key_text = key.0.as_str().len() + key.1.len();
    list.weight() + ENTRY_COST + 2 * key_text
}

impl FragmentCache {
    fn with_limit(limit: usize) -> FragmentCache {
        FragmentCache {
            inner: Mutex::new(Cached::default()),
            limit,
        }
    }

    /// The value a file's list is cached under besides its id: the digest
    /// of its stored object when recorded, which changes whenever the
    /// object does. A file completed before the digest was recorded is
    /// keyed by its plaintext SHA-256 and size instead: a fragment list is
    /// positions in the plaintext, and those two change whenever the
    /// plaintext does (a replaced object holding the same plaintext has
    /// the same fragments). A file with neither is not cached.
    pub fn version(object_digest: Option<&str>, sha256: Option<&str>, size: u64) -> Option<String> {
        match (object_digest, sha256) {
            (Some(digest), _) => Some(format!("object:{digest}")),
            (None, Some(sha)) => Some(format!("plaintext:{sha}:{size}")),
            (None, None) => None,
        }
    }

    /// The cache under its lock. A lock poisoned by a panic while it was
    /// held (its entries possibly half-updated) is recovered emptied, with
    /// one warning, instead of leaving the cache off for good.
    fn lock(&self) -> MutexGuard<'_, Cached> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => {
                tracing::warn!("fragment cache lock poisoned by a panic; the cache starts empty");
                let mut inner = poisoned.into_inner();
                *inner = Cached::default();
                self.inner.clear_poison();
                inner
            }
        }
    }

    /// The list walked for `file` at `version`, if still cached.
    pub fn get(&self, file: &FileId, version: &str) -> Option<Arc<Fragments>> {
        self.lock().touch(&(file.clone(), version.to_owned()))
    }

    /// Keeps a walked list (one heavier than the whole cache is not kept).
    pub fn put(&self, file: &FileId, version: &str, list: Arc<Fragments>) {
        let key = (file.clone(), version.to_owned());
        let weight = entry_weight(&key, &list);
        if weight > self.limit {
            return;
        }
        let mut inner = self.lock();
        inner.remove(&key);
        while inner.weight + weight > self.limit {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(gone) = inner.lists.remove(&oldest) {
                inner.weight -= gone.weight;
            }
        }
        inner.tick += 1;
        let used = inner.tick;
        inner.order.insert(used, key.clone());
        inner.lists.insert(key, Slot { used, list, weight });
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

    fn consistent(cache: &FragmentCache) -> usize {
        let inner = cache.inner.lock().unwrap();
        assert!(inner.weight <= cache.limit);
        let weights: usize = inner.lists.values().map(|s| s.weight).sum();
        assert_eq!(inner.weight, weights);
        assert_eq!(inner.order.len(), inner.lists.len());
        for (used, key) in &inner.order {
            assert_eq!(inner.lists[key].used, *used);
        }
        inner.lists.len()
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
        let files: Vec<FileId> = (0..100).map(|_| FileId::generate()).collect();
        for (n, f) in files.iter().enumerate() {
            cache.put(f, "d", list(MAX_FRAGMENTS));
            // Keep `a` in use: it stays while older ones go.
            assert!(cache.get(&a, "digest-1").is_some(), "after {n}");
        }
        let held = consistent(&cache);
        assert!(held < files.len(), "bounded: {held}");
        assert!(cache.get(&files[0], "d").is_none(), "the oldest went");
        assert!(cache.get(&files[99], "d").is_some(), "the newest stays");
    }

    #[test]
    fn a_poisoned_cache_starts_again_empty() {
        let cache = FragmentCache::default();
        let a = FileId::generate();
        cache.put(&a, "d", list(3));
        // A panic while the lock is held poisons it.
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = cache.inner.lock().unwrap();
                panic!("while the cache is held");
            })
            .join()
        });
        assert!(cache.inner.is_poisoned());
        assert!(cache.get(&a, "d").is_none(), "emptied, not trusted");
        assert!(!cache.inner.is_poisoned());
        cache.put(&a, "d", list(3));
        assert_eq!(cache.get(&a, "d").unwrap().list.len(), 3, "caching again");
        assert_eq!(consistent(&cache), 1);
    }

    #[test]
    fn an_entry_weighs_what_it_holds_not_only_its_list() {
        // The smallest list there is: one fragment, no offset table. Each
        // entry still holds its key (twice), its slot and the Arc.
        let cache = FragmentCache::default();
        for _ in 0..200_000 {
            cache.put(&FileId::generate(), &"d".repeat(71), list(1));
        }
        let held = consistent(&cache);
        let key = (FileId::generate(), "d".repeat(71));
        let one = entry_weight(&key, &list(1));
        assert!(one >= 300, "{one}");
        assert_eq!(held, CACHE_BYTES / one);
        assert!(held < 60_000, "{held} one-fragment entries in 16 MiB");
        // The list's own share is its capacity.
        let mut grown = Fragments {
            table: Vec::with_capacity(100),
            list: Vec::new(),
        };
        assert_eq!(grown.weight(), 400);
        grown.table.shrink_to_fit();
        assert_eq!(grown.weight(), 0);
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let (a, b, c, d) = (
            FileId::generate(),
            FileId::generate(),
            FileId::generate(),
            FileId::generate(),
        );
        let three = 3 * entry_weight(&(a.clone(), "v".into()), &list(10));
        let cache = FragmentCache::with_limit(three);
        for f in [&a, &b, &c] {
            cache.put(f, "v", list(10));
        }
        assert_eq!(consistent(&cache), 3);
        assert!(cache.get(&a, "v").is_some(), "a used again: b is oldest");
        cache.put(&d, "v", list(10));
        assert!(cache.get(&b, "v").is_none(), "b went");
        for f in [&a, &c, &d] {
            assert!(cache.get(f, "v").is_some());
        }
        // Putting a list again replaces it, weighed once.
        cache.put(&c, "v", list(10));
        assert_eq!(consistent(&cache), 3);
        // One heavier than the whole cache is not kept, and drops nothing.
        cache.put(&b, "v", list(1000));
        assert!(cache.get(&b, "v").is_none());
        assert_eq!(consistent(&cache), 3);
    }

    #[test]
    fn versions_change_with_what_the_list_describes() {
        let v = |digest, sha, size| FragmentCache::version(digest, sha, size);
        assert_eq!(v(Some("ab"), Some("cd"), 9).unwrap(), "object:ab");
        assert_eq!(v(None, Some("cd"), 9).unwrap(), "plaintext:cd:9");
        assert_ne!(v(None, Some("cd"), 9), v(None, Some("ce"), 9));
        assert_ne!(v(None, Some("cd"), 9), v(None, Some("cd"), 10));
        assert_ne!(v(Some("cd"), None, 9), v(None, Some("cd"), 9));
        assert_eq!(v(None, None, 9), None);
    }
}
