//! Where log lines go: stderr, written by a thread of its own through a
//! bounded queue. A log that cannot be written — the pipe closed (EPIPE),
//! nobody reads it and it is full, the disk under a redirect is full — never
//! blocks or fails a request: lines that do not fit are dropped and counted,
//! and the count is reported once the log can be written again.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tracing_subscriber::fmt::MakeWriter;

/// Lines queued for the writer thread before new ones are dropped.
const QUEUE: usize = 4096;

/// A `MakeWriter` for tracing-subscriber that never blocks and never fails.
#[derive(Clone)]
pub struct LossyStderr {
    queue: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl LossyStderr {
    /// Starts the writer thread. Falls back to dropping everything if the
    /// thread cannot be started.
    pub fn start() -> LossyStderr {
        let (queue, lines) = sync_channel::<Vec<u8>>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("casegate-log".into())
            .spawn(move || write_lines(lines, &counter, std::io::stderr()));
        if spawned.is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        LossyStderr { queue, dropped }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(lines: Receiver<Vec<u8>>, dropped: &AtomicU64, mut out: impl Write) {
    let mut reported = 0;
    for line in lines {
        let lost = dropped.load(Ordering::Relaxed);
        if lost > reported
            && writeln!(out, "casegate: {} log lines dropped", lost - reported).is_ok()
        {
            reported = lost;
        }
        if out.write_all(&line).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One formatted event; tracing-subscriber writes it whole, then drops it.
pub struct Line {
    buf: Vec<u8>,
    target: LossyStderr,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        match self.target.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.target.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for LossyStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(256),
            target: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails every write, as a closed pipe does.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_sink_counts_lines_and_never_fails_the_caller() {
        let (queue, lines) = sync_channel::<Vec<u8>>(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let target = LossyStderr {
            queue,
            dropped: dropped.clone(),
        };
        for _ in 0..5 {
            let mut w = target.make_writer();
            w.write_all(b"line\n").unwrap();
        }
        // Two queued, three dropped at once because the queue was full.
        assert_eq!(target.dropped(), 3);
        drop(target);
        write_lines(lines, &dropped, Broken);
        assert_eq!(dropped.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn dropped_lines_are_reported_when_writing_works_again() {
        let (queue, lines) = sync_channel::<Vec<u8>>(4);
        let dropped = Arc::new(AtomicU64::new(7));
        queue.send(b"next\n".to_vec()).unwrap();
        drop(queue);
        let mut out = Vec::new();
        write_lines(lines, &dropped, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "casegate: 7 log lines dropped\nnext\n"
        );
    }
}
