//! The plaintext SHA-256 of one PATCH, computed on a blocking thread beside
//! the request's task: TLS and sealing run on the runtime while the hash
//! runs on the other core. Frames reach it through a bounded channel
//! without being copied (`Bytes` is shared), so at most `IN_FLIGHT` frames
//! wait. If the thread is lost, so is the running hash: completion then
//! re-reads the object, as after a restart.

use bytes::Bytes;
use ring::digest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames waiting for the hashing thread at most.
const IN_FLIGHT: usize = 2;

pub struct PlainHasher {
    frames: Option<mpsc::Sender<Bytes>>,
    done: JoinHandle<digest::Context>,
}

impl PlainHasher {
    /// Goes on from `running` (the hash of the bytes stored before).
    pub fn start(running: digest::Context) -> PlainHasher {
        let (frames, mut rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
        let done = tokio::task::spawn_blocking(move || {
            let mut running = running;
            while let Some(frame) = rx.blocking_recv() {
                running.update(&frame);
            }
            running
        });
        PlainHasher {
            frames: Some(frames),
            done,
        }
    }

    /// Hands the next plaintext frame over, waiting while `IN_FLIGHT` do.
    pub async fn update(&mut self, frame: Bytes) {
        if let Some(frames) = &self.frames
            && frames.send(frame).await.is_err()
        {
            self.frames = None;
        }
    }

    /// The hash of everything handed over (`None` if the thread was lost).
    pub async fn finish(mut self) -> Option<digest::Context> {
        let lost = self.frames.take().is_none();
        let running = self.done.await.ok()?;
        (!lost).then_some(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_what_it_is_handed_in_order() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut start = digest::Context::new(&digest::SHA256);
        start.update(&data[..1000]);
        let mut hasher = PlainHasher::start(start);
        for frame in data[1000..].chunks(4093) {
            hasher.update(Bytes::copy_from_slice(frame)).await;
        }
        let got = hasher.finish().await.unwrap().finish();
        assert_eq!(
            got.as_ref(),
            digest::digest(&digest::SHA256, &data).as_ref()
        );
    }
}
