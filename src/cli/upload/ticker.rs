//! A sign of life during long quiet work before anything is sent: walking
//! and reading a slow CD, or hashing files to compare with the gateway can
//! take minutes, and a silent terminal looks like a hang. At most one line
//! every few seconds, and none at all when the work is quick.

use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(3);

pub struct Ticker {
    what: &'static str,
    last: Instant,
}

impl Ticker {
    /// `what` starts the line: "reading the files", "checking file types".
    pub fn new(what: &'static str) -> Ticker {
        Ticker {
            what,
            last: Instant::now(),
        }
    }

    /// `done` files so far (of `total`, when known).
    pub fn tick(&mut self, done: usize, total: Option<usize>) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        match total {
            Some(total) => eprintln!(
                "{}… {} of {} files",
                self.what,
                thousands(done),
                thousands(total)
            ),
            None => eprintln!("{}… {} files", self.what, thousands(done)),
        }
    }
}

/// `1200` as "1,200".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1200), "1,200");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
