//! Writes of dropped `fs` writers that are still running. A writer hands
//! each batch to a blocking thread; when a request fails mid-way and drops
//! its writer, that write cannot be called back and goes on. It is kept
//! here, by file, and waited for before anyone else touches the file: the
//! PATCH that dropped the writer before it lets go of the upload's lease,
//! the next writer before it truncates to the durable point (a late write
//! landing after that would put unacknowledged bytes inside the object),
//! a termination or abort before it deletes the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use super::writer::WriteDone;

/// The running writes of dropped writers, by file; shared by every clone
/// of the store and every writer it opened.
#[derive(Clone, Default)]
pub(super) struct AbandonedWrites(Arc<Mutex<HashMap<PathBuf, JoinHandle<WriteDone>>>>);

impl AbandonedWrites {
    /// Takes over the write in flight of a writer of `path` being dropped.
    /// A poisoned map loses the handle: the write still runs, only nothing
    /// waits for it.
    pub(super) fn adopt(&self, path: PathBuf, task: JoinHandle<WriteDone>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(path, task);
        }
    }

    /// Waits until no write of a dropped writer of `path` is still running.
    pub(super) async fn settle(&self, path: &Path) {
        let late = match self.0.lock() {
            Ok(mut map) => map.remove(path),
            Err(_) => None,
        };
        if let Some(task) = late {
            // Its outcome does not matter, only that it is over.
            let _ = task.await;
        }
    }
}
