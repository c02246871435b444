//! The SHA-256 of a file being sent, computed as its bytes go out (the
//! receipt's local value). SHA-256 cannot be rewound, so after a break,
//! where the gateway kept fewer bytes than were read, the hash must be
//! taken again up to the gateway's offset. Marks (the hash state every
//! [`MARK_EVERY`] bytes) let a retry continue from the latest mark at or
//! before that offset: a 1 GB file broken at 900 MB re-reads a few MiB
//! from the CD, not 900 MB.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};

use ring::digest::{Context, SHA256};

/// A mark every this many bytes: at most this much is read twice.
const MARK_EVERY: u64 = 8 << 20;

pub struct Hashing {
    /// Bytes hashed so far, from the file's start.
    pos: u64,
    ctx: Context,
    /// (position, hash state there), ascending.
    marks: Vec<(u64, Context)>,
}

/// Shared between the PATCH body stream and its sender.
pub type Hasher = Arc<Mutex<Hashing>>;

impl Hashing {
    pub fn new() -> Hasher {
        Arc::new(Mutex::new(Hashing {
            pos: 0,
            ctx: Context::new(&SHA256),
            marks: Vec::new(),
        }))
    }

    /// A copy of `hasher`'s state for the next PATCH: the body stream of
    /// a broken one may still be dropping in the background, and must not
    /// add its bytes to the hash the retry goes on with.
    pub fn fork(hasher: &Hasher) -> Hasher {
        let copy = hasher.lock().map(|h| Hashing {
            pos: h.pos,
            ctx: h.ctx.clone(),
            marks: h.marks.clone(),
        });
        match copy {
            Ok(copy) => Arc::new(Mutex::new(copy)),
            Err(_) => Hashing::new(),
        }
    }

    /// The next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
        self.pos += bytes.len() as u64;
        let last = self.marks.last().map_or(0, |(p, _)| *p);
        if self.pos - last >= MARK_EVERY {
            self.marks.push((self.pos, self.ctx.clone()));
        }
    }

    /// The SHA-256 of everything hashed so far (lowercase hex).
    pub fn hex(&self) -> String {
        crate::hex::encode(self.ctx.clone().finish().as_ref())
    }

    /// The latest known state at or before `offset`.
    fn best_before(&self, offset: u64) -> (u64, Context) {
        if self.pos <= offset {
            return (self.pos, self.ctx.clone());
        }
        self.marks
            .iter()
            .rev()
            .find(|(p, _)| *p <= offset)
            .cloned()
            .unwrap_or_else(|| (0, Context::new(&SHA256)))
    }
}

/// Brings `hashing` to exactly `offset` bytes of `path`, reading only what
/// lies between its best state and `offset`. The gateway's offset never
/// goes back within one upload, so marks before it are dropped.
pub async fn hash_to(path: &Path, hashing: &Hasher, offset: u64) -> std::io::Result<()> {
    let (from, ctx) = hashing
        .lock()
        .map_err(|_| std::io::Error::other("hash state poisoned"))?
        .best_before(offset);
    let ctx = hash_range(path, from, offset, ctx).await?;
    let mut h = hashing
        .lock()
        .map_err(|_| std::io::Error::other("hash state poisoned"))?;
    h.pos = offset;
    h.ctx = ctx;
    h.marks.clear();
    Ok(())
}

/// SHA-256 of the file's first `len` bytes (read from disk).
pub async fn hash_prefix(path: &Path, len: u64) -> std::io::Result<Context> {
    hash_range(path, 0, len, Context::new(&SHA256)).await
}

/// `ctx` continued with the file's bytes `from..to`.
async fn hash_range(path: &Path, from: u64, to: u64, ctx: Context) -> std::io::Result<Context> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut ctx = ctx;
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(from))?;
        let want = to.saturating_sub(from);
        let mut file = file.take(want);
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            read += n as u64;
        }
        if read != want {
            return Err(std::io::Error::other(
                "the file got shorter while it was being sent",
            ));
        }
        Ok(ctx)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        crate::hex::encode(ring::digest::digest(&SHA256, data).as_ref())
    }

    #[tokio::test]
    async fn a_retry_continues_from_a_mark_and_gets_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let hashing = Hashing::new();
        // A PATCH read 19 MiB, the gateway kept 12 MiB.
        for piece in data[..19 << 20].chunks(256 << 10) {
            hashing.lock().unwrap().update(piece);
        }
        assert_eq!(hashing.lock().unwrap().marks.len(), 2);
        assert_eq!(hashing.lock().unwrap().best_before(12 << 20).0, 8 << 20);
        hash_to(&path, &hashing, 12 << 20).await.unwrap();
        assert_eq!(hashing.lock().unwrap().hex(), sha(&data[..12 << 20]));
        hashing.lock().unwrap().update(&data[12 << 20..]);
        assert_eq!(hashing.lock().unwrap().hex(), sha(&data));
        // Gone: a new upload from 0.
        hash_to(&path, &hashing, 0).await.unwrap();
        assert_eq!(hashing.lock().unwrap().hex(), sha(b""));
    }
}
