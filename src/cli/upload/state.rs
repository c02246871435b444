//! The resume state: for each local file (absolute path, size, mtime) the
//! tus upload it is going to, whether it finished, and the SHA-256 computed
//! while sending it. One JSON file per case (`<state-dir>/<case_id>.json`),
//! replaced atomically (temp file, fsync, rename, fsync of the folder),
//! plus a journal (`<case_id>.journal`, one JSON line per change) so that
//! recording an upload costs one append, not a rewrite of thousands of
//! entries. A kill at any moment leaves whole lines in the journal (a torn
//! last line is ignored); the journal is folded into the JSON file at the
//! start and end of every run. Nothing of the token is stored (an upload
//! started under a replaced link that the gateway no longer accepts is
//! simply started afresh), and upload addresses are kept as paths, so the
//! same state works with another address of the same gateway (`--server`
//! versus the link's). Files are keyed by
//! their path's bytes in hex: a USB stick's GBK or Latin-1 names are not
//! UTF-8, and JSON cannot hold them as they are. A lock file
//! (`<case_id>.lock`, held while the run lasts) keeps a second run for the
//! same case from sending the same files and emptying the first one's
//! journal.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::walk::LocalFile;
use crate::fsutil::{private_dir_all, replace_secret_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Uploading,
    Complete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    pub mtime_ns: i64,
    /// The upload's path on the gateway (`/tus/up_…`; a full URL in
    /// states written before), resolved against this run's gateway.
    pub upload_url: Option<String>,
    pub state: Phase,
    /// Computed locally while sending; set when complete.
    pub sha256: Option<String>,
}

impl Entry {
    /// Whether this entry still describes `file` (same size and mtime).
    pub fn describes(&self, file: &LocalFile) -> bool {
        self.size == file.size && self.mtime_ns == file.mtime_ns
    }
}

/// Version 2 keys files by [`key`]; version 1 by the path as text.
const VERSION: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    case_id: String,
    files: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize)]
struct JournalLine {
    key: String,
    entry: Entry,
}

/// A path as a state key: its bytes in hex, whatever their encoding.
pub fn key(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::hex::encode(path.as_os_str().as_bytes())
}

pub struct StateStore {
    receipt_path: PathBuf,
    snapshot_path: PathBuf,
    journal_path: PathBuf,
    snapshot: Mutex<Snapshot>,
    journal: Mutex<std::fs::File>,
    /// Held (locked) until the store is dropped.
    _lock: std::fs::File,
}

/// Why the resume state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot keep the resume state in {} ({source}); run the command from a folder you \
         can write to (not the CD itself), or give --state-dir",
        dir.display()
    )]
    NoFolder {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("resume state {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another upload for this case is already running on this computer; let it finish (or \
         stop it with Ctrl-C), then run the command again"
    )]
    AlreadyRunning,
    #[error("resume state: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("resume state lock poisoned")]
    Poisoned,
}

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The journal, opened for appending (0600): every write lands at the end,
/// also after the journal was emptied.
fn append_only(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The case's lock, taken without waiting: the OS releases it when the run
/// ends, however it ends.
fn hold_lock(path: &Path) -> Result<std::fs::File, StateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StateError::AlreadyRunning),
        Err(std::fs::TryLockError::Error(e)) => Err(io(path, e)),
    }
}

impl StateStore {
    /// Opens (or starts) the state of `case_id` in `dir`. An unreadable
    /// state file is set aside (`.broken`): the gateway's manifest still
    /// keeps finished files from being sent twice.
    pub fn open(dir: &Path, case_id: &str) -> Result<StateStore, StateError> {
        private_dir_all(dir).map_err(|source| StateError::NoFolder {
            dir: dir.to_owned(),
            source,
        })?;
        let lock = hold_lock(&dir.join(format!("{case_id}.lock")))?;
        let snapshot_path = dir.join(format!("{case_id}.json"));
        let journal_path = dir.join(format!("{case_id}.journal"));
        let mut snapshot = match std::fs::read(&snapshot_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                let aside = snapshot_path.with_extension("json.broken");
                eprintln!(
                    "casegate: the resume state {} is damaged; set aside as {}",
                    snapshot_path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(&snapshot_path, &aside);
                Snapshot::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(io(&snapshot_path, e)),
        };
        if snapshot.version == 1 {
            let files = std::mem::take(&mut snapshot.files);
            snapshot.files = files
                .into_iter()
                .map(|(path, e)| (crate::hex::encode(path.as_bytes()), e))
                .collect();
        }
        if let Ok(text) = std::fs::read_to_string(&journal_path) {
            for line in text.lines() {
                if let Ok(JournalLine { key, entry }) = serde_json::from_str(line) {
                    snapshot.files.insert(key, entry);
                }
            }
        }
        snapshot.version = VERSION;
        snapshot.case_id = case_id.to_owned();
        let store = StateStore {
            receipt_path: dir.join(format!("{case_id}-receipt.csv")),
            journal: Mutex::new(append_only(&journal_path).map_err(|e| io(&journal_path, e))?),
            snapshot_path,
            journal_path,
            snapshot: Mutex::new(snapshot),
            _lock: lock,
        };
        store.fold()?;
        Ok(store)
    }

    pub fn get(&self, path: &Path) -> Option<Entry> {
        self.snapshot.lock().ok()?.files.get(&key(path)).cloned()
    }

    /// Records a change: kept in memory and appended to the journal (one
    /// write, so a kill leaves the line whole or absent). A new upload's
    /// record is synced: lost to a power cut, it would make the next run
    /// create a second upload for the same file, holding case quota until
    /// it expires. A lost `Complete` only costs asking the gateway again.
    pub fn record(&self, path: &Path, entry: Entry) -> Result<(), StateError> {
        let key = key(path);
        let mut line = serde_json::to_vec(&JournalLine {
            key: key.clone(),
            entry: entry.clone(),
        })?;
        line.push(b'\n');
        let durable = entry.state == Phase::Uploading;
        if let Ok(mut snapshot) = self.snapshot.lock() {
            snapshot.files.insert(key, entry);
        }
        let mut journal = self.journal.lock().map_err(|_| StateError::Poisoned)?;
        journal
            .write_all(&line)
            .and_then(|()| if durable { journal.sync_data() } else { Ok(()) })
            .map_err(|e| io(&self.journal_path, e))
    }

    /// Writes the whole state atomically and empties the journal.
    pub fn fold(&self) -> Result<(), StateError> {
        let bytes = {
            let snapshot = self.snapshot.lock().map_err(|_| StateError::Poisoned)?;
            serde_json::to_vec_pretty(&*snapshot)?
        };
        replace_secret_file(&self.snapshot_path, &bytes).map_err(|e| io(&self.snapshot_path, e))?;
        let journal = self.journal.lock().map_err(|_| StateError::Poisoned)?;
        journal
            .set_len(0)
            .and_then(|()| journal.sync_all())
            .map_err(|e| io(&self.journal_path, e))
    }

    /// Where the receipt CSV goes: next to the state.
    pub fn receipt_path(&self) -> PathBuf {
        self.receipt_path.clone()
    }

    #[cfg(test)]
    pub fn snapshot_path(&self) -> &Path {
        &self.snapshot_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: Phase) -> Entry {
        Entry {
            size: 5,
            mtime_ns: 7,
            upload_url: Some("/tus/up_1".into()),
            state,
            sha256: None,
        }
    }

    #[test]
    fn journal_survives_a_kill_and_is_folded() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), "case_x").unwrap();
        store
            .record(Path::new("/a"), entry(Phase::Uploading))
            .unwrap();
        store
            .record(Path::new("/b"), entry(Phase::Complete))
            .unwrap();
        drop(store); // killed: no fold
        let journal = dir.path().join("case_x.journal");
        let mut torn = std::fs::read(&journal).unwrap();
        torn.extend_from_slice(b"{\"key\":\"2f63\",\"ent");
        std::fs::write(&journal, torn).unwrap();
        let store = StateStore::open(dir.path(), "case_x").unwrap();
        assert_eq!(store.get(Path::new("/a")), Some(entry(Phase::Uploading)));
        assert_eq!(store.get(Path::new("/b")), Some(entry(Phase::Complete)));
        assert_eq!(store.get(Path::new("/c")), None);
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
        std::fs::write(store.snapshot_path(), b"{not json").unwrap();
        drop(store);
        let store = StateStore::open(dir.path(), "case_x").unwrap();
        assert_eq!(store.get(Path::new("/a")), None);
        assert!(dir.path().join("case_x.json.broken").exists());
    }

    #[test]
    fn one_run_per_case_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateStore::open(dir.path(), "case_x").unwrap();
        let Err(second) = StateStore::open(dir.path(), "case_x") else {
            panic!("two runs at once");
        };
        assert!(matches!(second, StateError::AlreadyRunning), "{second}");
        assert!(StateStore::open(dir.path(), "case_y").is_ok());
        drop(first);
        assert!(StateStore::open(dir.path(), "case_x").is_ok());
    }

    #[test]
    fn paths_that_are_not_utf8_are_kept() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let gbk = Path::new(std::ffi::OsStr::from_bytes(b"/usb/\xb2\xa1\xc0\xed.pdf"));
        let store = StateStore::open(dir.path(), "case_x").unwrap();
        store.record(gbk, entry(Phase::Complete)).unwrap();
        drop(store);
        let store = StateStore::open(dir.path(), "case_x").unwrap();
        assert_eq!(store.get(gbk), Some(entry(Phase::Complete)));
    }

    #[test]
    fn a_version_1_state_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = serde_json::json!({"version": 1, "case_id": "case_x", "token_sha256": "ab",
            "files": {"/a": entry(Phase::Complete)}});
        std::fs::write(dir.path().join("case_x.json"), v1.to_string()).unwrap();
        let store = StateStore::open(dir.path(), "case_x").unwrap();
        assert_eq!(store.get(Path::new("/a")), Some(entry(Phase::Complete)));
    }
}
