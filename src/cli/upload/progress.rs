//! Progress as the patient sees it: on a terminal, one bar per file being
//! sent and a total bar with rate and time remaining (indicatif); when
//! stderr is not a terminal (a log, a test), plain lines instead — one when
//! a file starts and ends, and one per tenth of a large file.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use indicatif::{DecimalBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files at least this big get a line per tenth in plain mode.
const LARGE: u64 = 8 * 1024 * 1024;

pub struct Progress {
    multi: MultiProgress,
    total: ProgressBar,
    plain: bool,
    files: u64,
    done: AtomicU64,
}

impl Progress {
    /// For `files` files of `total_bytes` in all.
    pub fn new(total_bytes: u64, files: u64) -> Arc<Progress> {
        let plain = !std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let total = multi.add(ProgressBar::new(total_bytes));
        total.set_style(style(
            "{prefix:>5} [{bar:40}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} · {eta} left",
        ));
        total.set_prefix("total");
        Arc::new(Progress {
            multi,
            total,
            plain,
            files,
            done: AtomicU64::new(0),
        })
    }

    /// A bar for one file; [`FileBar::start_at`] says where it starts.
    pub fn file(self: &Arc<Progress>, shown: &str, size: u64) -> FileBar {
        let bar = if self.plain {
            ProgressBar::hidden()
        } else {
            let bar = self
                .multi
                .insert_before(&self.total, ProgressBar::new(size));
            bar.set_style(style(
                "{msg:40!} [{bar:30}] {decimal_bytes}/{decimal_total_bytes}",
            ));
            bar
        };
        bar.set_length(size);
        bar.set_message(shown.to_owned());
        FileBar {
            progress: Arc::clone(self),
            bar,
            shown: shown.to_owned(),
            size,
            tenths: AtomicU64::new(0),
            started: AtomicBool::new(false),
        }
    }

    /// A line above the bars (or on its own in plain mode).
    pub fn say(&self, line: &str) {
        if self.plain {
            eprintln!("{line}");
        } else {
            self.multi.suspend(|| eprintln!("{line}"));
        }
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One file's bar; moving it moves the total.
pub struct FileBar {
    progress: Arc<Progress>,
    bar: ProgressBar,
    shown: String,
    size: u64,
    tenths: AtomicU64,
    started: AtomicBool,
}

impl FileBar {
    pub fn advance(&self, n: u64) {
        self.bar.inc(n);
        self.progress.total.inc(n);
        if self.progress.plain && self.size >= LARGE {
            let tenth = self.bar.position() * 10 / self.size.max(1);
            if self.tenths.fetch_max(tenth, Ordering::Relaxed) < tenth && tenth < 10 {
                eprintln!("  {}: {}%", self.shown, tenth * 10);
            }
        }
    }

    /// The gateway holds `offset` bytes: at the start of each try (the
    /// first says what is being sent, later ones where it continues).
    pub fn start_at(&self, offset: u64) {
        let was = self.bar.position();
        self.bar.set_position(offset);
        let total = self.progress.total.position();
        self.progress
            .total
            .set_position((total + offset).saturating_sub(was));
        self.tenths
            .store(offset * 10 / self.size.max(1), Ordering::Relaxed);
        if !self.progress.plain {
            return;
        }
        let first = !self.started.swap(true, Ordering::Relaxed);
        match (first, offset) {
            (true, 0) => eprintln!("sending {} ({})", self.shown, DecimalBytes(self.size)),
            (true, _) => eprintln!(
                "sending {} ({}, continuing from {})",
                self.shown,
                DecimalBytes(self.size),
                DecimalBytes(offset)
            ),
            (false, _) => eprintln!("  {}: continuing from {}", self.shown, DecimalBytes(offset)),
        }
    }

    pub fn done(&self, note: &str) {
        let n = self.progress.done.fetch_add(1, Ordering::Relaxed) + 1;
        let files = self.progress.files;
        if self.progress.plain {
            eprintln!("[{n}/{files}] {note} {}", self.shown);
        }
        self.bar.finish_and_clear();
        self.progress.multi.remove(&self.bar);
    }

    pub fn abandon(&self) {
        self.bar.finish_and_clear();
        self.progress.multi.remove(&self.bar);
    }
}
