//! A small real tmpfs for disk-full faults, which needs root (CI runs as
//! root and sets `CASEGATE_REQUIRE_MOUNT=1`; elsewhere a test using it says
//! it skipped).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs, unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            assert!(
                std::env::var_os("CASEGATE_REQUIRE_MOUNT").is_none(),
                "CASEGATE_REQUIRE_MOUNT is set but a tmpfs cannot be mounted"
            );
            eprintln!("SKIPPED disk-full test: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes `path` until the disk is full; returns the bytes written.
pub fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for size in [1 << 20, 64 << 10, 4 << 10, 512] {
        let block = vec![0x5au8; size];
        while f.write_all(&block).is_ok() {
            written += size as u64;
        }
    }
    let _ = f.sync_all();
    written
}
