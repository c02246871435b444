//! The master key (key-encryption key, KEK), versioned. Case keys are
//! wrapped under it; `keys rotate` adds a version and rewraps case keys.
//!
//! The local implementation reads a file of lines `<version> <base64url key>`
//! (mode 0600; `#` comments allowed). A KMS can implement
//! [`KeyEncryptionKey`] instead without touching callers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::{Zeroize, Zeroizing};

use super::{DecryptError, aead};
use crate::fsutil;
use crate::random as rng;

/// A key wrapped under one master key version.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: u32,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WrappedKey(v{}, {} bytes)",
            self.kek_version,
            self.bytes.len()
        )
    }
}

/// Wraps and unwraps keys. `aad` binds what is wrapped (ids, purpose); the
/// implementation adds the key version itself.
pub trait KeyEncryptionKey: Send + Sync + 'static {
    /// The newest version held.
    fn current_version(&self) -> u32;
    fn wrap(&self, key: &[u8; 32], aad: &[u8]) -> WrappedKey;
    /// Wraps under `version`, if it is held (several gateways sharing the
    /// keys wrap under the version the database names as active).
    fn wrap_under(&self, version: u32, key: &[u8; 32], aad: &[u8]) -> Option<WrappedKey>;
    fn unwrap(&self, wrapped: &WrappedKey, aad: &[u8])
    -> Result<Zeroizing<[u8; 32]>, DecryptError>;
}

/// Master key versions held in memory, zeroized on drop.
pub struct LocalMasterKeys {
    versions: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for LocalMasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LocalMasterKeys(versions {:?})",
            self.versions.keys().collect::<Vec<_>>()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key file {0}")]
    Permissions(String),
    #[error("master key file {path}: {message}")]
    Format { path: String, message: KeyFileError },
    #[error("master key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Why a master key file's text does not parse. `line N` counts entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("line {0}: expected `<version> <base64url key>`")]
    Syntax(usize),
    #[error("line {0}: version must be a positive integer")]
    Version(usize),
    #[error("line {0}: key is not base64url")]
    NotBase64url(usize),
    #[error("line {0}: key must be 32 bytes")]
    KeyLength(usize),
    #[error("line {0}: version {1} appears twice")]
    DuplicateVersion(usize, u32),
    #[error("no key in file")]
    NoKey,
}

/// The wrapping associated data with the master key version appended.
pub(super) fn version_aad(aad: &[u8], version: u32) -> Vec<u8> {
    let mut out = aad.to_vec();
    out.extend_from_slice(b"kek-version:");
    out.extend_from_slice(version.to_string().as_bytes());
    out.push(0);
    out
}

impl LocalMasterKeys {
    /// Loads the key file, creating it with one fresh version if missing.
    /// Refuses a file that group or others can read.
    pub fn load_or_create(path: &Path) -> Result<LocalMasterKeys, MasterKeyError> {
        let shown = path.display().to_string();
        if !path.exists() {
            let keys = LocalMasterKeys::generate();
            fsutil::create_secret_file(path, keys.serialize().as_bytes()).map_err(|source| {
                MasterKeyError::Io {
                    path: shown.clone(),
                    source,
                }
            })?;
            return Ok(keys);
        }
        LocalMasterKeys::load(path)
    }

    pub fn load(path: &Path) -> Result<LocalMasterKeys, MasterKeyError> {
        let shown = path.display().to_string();
        fsutil::check_private(path).map_err(|e| MasterKeyError::Permissions(e.to_string()))?;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| MasterKeyError::Io {
                    path: shown.clone(),
                    source,
                })?,
            );
        LocalMasterKeys::parse(&text).map_err(|message| MasterKeyError::Format {
            path: shown,
            message,
        })
    }

    /// Parses the key file format; `;` may separate entries instead of
    /// newlines (the single-line environment variable form). `line N` in
    /// errors counts entries.
    pub fn parse(text: &str) -> Result<LocalMasterKeys, KeyFileError> {
        let mut versions = BTreeMap::new();
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split(';'));
        for (n, line) in entries.enumerate() {
            let (line, n) = (line.trim(), n + 1);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (version, encoded) = line.split_once(' ').ok_or(KeyFileError::Syntax(n))?;
            let version: u32 = version
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or(KeyFileError::Version(n))?;
            let mut raw = URL_SAFE_NO_PAD
                .decode(encoded.trim())
                .map_err(|_| KeyFileError::NotBase64url(n))?;
            if raw.len() != 32 {
                raw.zeroize();
                return Err(KeyFileError::KeyLength(n));
            }
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&raw);
            raw.zeroize();
            if versions.insert(version, key).is_some() {
                return Err(KeyFileError::DuplicateVersion(n, version));
            }
        }
        if versions.is_empty() {
            return Err(KeyFileError::NoKey);
        }
        Ok(LocalMasterKeys { versions })
    }

    fn generate() -> LocalMasterKeys {
        let mut versions = BTreeMap::new();
        versions.insert(1, Zeroizing::new(rng::array::<32>()));
        LocalMasterKeys { versions }
    }

    /// The file's text; holds secrets, so it is zeroized when dropped.
    pub fn serialize(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from(
            "# casegate master key versions: <version> <base64url 32-byte key>. Keep secret; back up (escrow) separately from the database.\n",
        ));
        for (v, k) in &self.versions {
            out.push_str(&format!("{v} {}\n", URL_SAFE_NO_PAD.encode(k.as_ref())));
        }
        out
    }

    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    /// Adds a new version and makes it current.
    pub fn add_version(&mut self) -> u32 {
        let next = self.current_version() + 1;
        self.versions
            .insert(next, Zeroizing::new(rng::array::<32>()));
        next
    }

    /// Forgets a version (after every case key was rewrapped off it).
    pub fn retire(&mut self, version: u32) -> bool {
        version != self.current_version() && self.versions.remove(&version).is_some()
    }
}

impl KeyEncryptionKey for LocalMasterKeys {
    fn current_version(&self) -> u32 {
        self.versions.keys().next_back().copied().unwrap_or(0)
    }

    fn wrap(&self, key: &[u8; 32], aad: &[u8]) -> WrappedKey {
        let version = self.current_version();
        self.wrap_under(version, key, aad)
            .unwrap_or_else(|| unreachable!("a loaded key set always has a current version"))
    }

    fn wrap_under(&self, version: u32, key: &[u8; 32], aad: &[u8]) -> Option<WrappedKey> {
        let kek = self.versions.get(&version)?;
        Some(WrappedKey {
            kek_version: version,
            bytes: aead::seal(kek, &version_aad(aad, version), key),
        })
    }

    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, DecryptError> {
        let kek = self
            .versions
            .get(&wrapped.kek_version)
            .ok_or(DecryptError)?;
        let plain = Zeroizing::new(aead::open(
            kek,
            &version_aad(aad, wrapped.kek_version),
            &wrapped.bytes,
        )?);
        let mut out = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(DecryptError);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

/// The master key file as the server uses it: reloaded when it changes on
/// disk, so `casegate keys rotate` can run while the gateway serves. New
/// keys are wrapped under the newest version the file holds; a wrapped key
/// naming a version not yet loaded triggers a reload before failing.
pub struct MasterKeyFile {
    path: std::path::PathBuf,
    loaded: std::sync::RwLock<(LocalMasterKeys, Option<std::time::SystemTime>)>,
}

impl fmt::Debug for MasterKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKeyFile({})", self.path.display())
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl MasterKeyFile {
    pub fn open(path: &Path) -> Result<MasterKeyFile, MasterKeyError> {
        let keys = LocalMasterKeys::load_or_create(path)?;
        Ok(MasterKeyFile {
            path: path.to_owned(),
            loaded: std::sync::RwLock::new((keys, modified(path))),
        })
    }

    fn read<R>(&self, f: impl FnOnce(&LocalMasterKeys) -> R) -> R {
        match self.loaded.read() {
            Ok(guard) => f(&guard.0),
            Err(poisoned) => f(&poisoned.into_inner().0),
        }
    }

    /// Reloads if the file changed (or always, with `force`). A file that
    /// became unreadable or invalid keeps the loaded keys and is logged.
    fn refresh(&self, force: bool) {
        let now = modified(&self.path);
        let stale = match self.loaded.read() {
            Ok(guard) => force || guard.1 != now,
            Err(_) => true,
        };
        if !stale {
            return;
        }
        match LocalMasterKeys::load(&self.path) {
            Ok(keys) => {
                let mut guard = match self.loaded.write() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *guard = (keys, now);
            }
            Err(e) => {
                tracing::error!(error = %e, "master key file changed but cannot be loaded; keeping loaded versions")
            }
        }
    }
}

impl KeyEncryptionKey for MasterKeyFile {
    fn current_version(&self) -> u32 {
        self.refresh(false);
        self.read(|k| k.current_version())
    }

    fn wrap(&self, key: &[u8; 32], aad: &[u8]) -> WrappedKey {
        self.refresh(false);
        self.read(|k| k.wrap(key, aad))
    }

    fn wrap_under(&self, version: u32, key: &[u8; 32], aad: &[u8]) -> Option<WrappedKey> {
        self.refresh(!self.read(|k| k.versions.contains_key(&version)));
        self.read(|k| k.wrap_under(version, key, aad))
    }

    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, DecryptError> {
        if !self.read(|k| k.versions.contains_key(&wrapped.kek_version)) {
            self.refresh(true);
        }
        self.read(|k| k.unwrap(wrapped, aad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let mut keys = LocalMasterKeys::load_or_create(&path).unwrap();
        let wrapped = keys.wrap(&[9u8; 32], b"case_x");
        let again = LocalMasterKeys::load_or_create(&path).unwrap();
        assert_eq!(*again.unwrap(&wrapped, b"case_x").unwrap(), [9u8; 32]);
        assert!(again.unwrap(&wrapped, b"case_y").is_err());

        assert_eq!(keys.add_version(), 2);
        let w2 = keys.wrap(&[1u8; 32], b"a");
        assert_eq!(w2.kek_version, 2);
        // A wrapped key relabelled with another version does not unwrap.
        let relabelled = WrappedKey {
            kek_version: 1,
            bytes: w2.bytes.clone(),
        };
        assert!(keys.unwrap(&relabelled, b"a").is_err());
        assert!(!keys.retire(2));
        assert!(keys.retire(1));
        assert!(keys.unwrap(&wrapped, b"case_x").is_err());
        assert!(!format!("{keys:?}").contains(&URL_SAFE_NO_PAD.encode([9u8; 32])));
    }

    #[test]
    fn file_reloads_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let served = MasterKeyFile::open(&path).unwrap();
        // Another process rotates: new version written atomically.
        let mut rotating = LocalMasterKeys::load(&path).unwrap();
        rotating.add_version();
        let wrapped_v2 = rotating.wrap(&[5u8; 32], b"x");
        std::thread::sleep(std::time::Duration::from_millis(20));
        fsutil::replace_secret_file(&path, rotating.serialize().as_bytes()).unwrap();
        assert_eq!(*served.unwrap(&wrapped_v2, b"x").unwrap(), [5u8; 32]);
        assert_eq!(served.wrap(&[1u8; 32], b"y").kek_version, 2);
    }

    #[test]
    fn env_form_with_semicolons() {
        let k = LocalMasterKeys::parse("1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE;2 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI").unwrap();
        assert_eq!(k.versions(), vec![1, 2]);
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "",
            "1 short",
            "x AAAA",
            "0 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(LocalMasterKeys::parse(bad).is_err(), "{bad:?}");
        }
    }
}
