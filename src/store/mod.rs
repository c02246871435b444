//! Object storage for ciphertext. This layer starts with the local directory
//! backend's readiness check; the `ObjectStore` trait with fs and S3
//! backends arrives with resumable uploads.

use std::path::{Path, PathBuf};

/// The `fs` backend's root directory.
#[derive(Debug, Clone)]
pub struct FsRoot(PathBuf);

impl FsRoot {
    /// Creates the directory (mode 0700) if needed.
    pub fn open(path: &Path) -> std::io::Result<FsRoot> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        Ok(FsRoot(path.to_owned()))
    }

    /// Ready when the directory exists and accepts a write.
    pub async fn check(&self) -> std::io::Result<()> {
        let probe = self.0.join(".readyz");
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}
