//! The one source of randomness: the operating system's CSPRNG via ring.
//! At the bottom of the crate so ids and tokens can draw from it without
//! depending on `crypto`.

use ring::rand::{SecureRandom, SystemRandom};

/// Fills `buf` with random bytes.
///
/// ring fails only where the OS has no CSPRNG at all; continuing without
/// randomness would mint guessable keys and tokens, so that is fatal.
pub fn fill(buf: &mut [u8]) {
    #[allow(
        clippy::panic,
        reason = "minting keys and tokens without randomness would be worse than stopping"
    )]
    if SystemRandom::new().fill(buf).is_err() {
        panic!("operating system random number generator unavailable");
    }
}

/// A fresh array of random bytes.
pub fn array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}
