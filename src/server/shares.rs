//! Per-address connection shares: how many connections each client address
//! ([`AddressKey`]: IPv4 address, IPv6 /64) holds on one listener, so that
//! no address can take all of the listener's `max_connections`. Checked at
//! accept, before the TLS handshake costs anything; a [`Share`] is given
//! back when its connection ends. The table only holds addresses with open
//! connections, so it is bounded by the connection cap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::http::limiter::AddressKey;

#[derive(Debug)]
pub struct ConnectionShares {
    per_address: usize,
    held: Mutex<HashMap<AddressKey, usize>>,
    refused: AtomicU64,
}

/// One connection's place in its address's share; released on drop.
#[derive(Debug)]
pub struct Share {
    shares: Arc<ConnectionShares>,
    address: AddressKey,
}

impl ConnectionShares {
    pub fn new(per_address: usize) -> Arc<ConnectionShares> {
        Arc::new(ConnectionShares {
            per_address,
            held: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    fn with_held<R>(&self, f: impl FnOnce(&mut HashMap<AddressKey, usize>) -> R) -> R {
        let mut guard = match self.held.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// A place for one more connection from `address`, if its share has
    /// room; else counts the refusal (see [`ConnectionShares::refused`]).
    pub fn take(self: &Arc<Self>, address: AddressKey) -> Option<Share> {
        let taken = self.with_held(|held| {
            let count = held.entry(address).or_insert(0);
            if *count >= self.per_address {
                return false;
            }
            *count += 1;
            true
        });
        if !taken {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Share {
            shares: self.clone(),
            address,
        })
    }

    /// Connections refused for a full share since the listener started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shares.with_held(|held| {
            if let Some(count) = held.get_mut(&self.address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    held.remove(&self.address);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::from(s.parse::<std::net::IpAddr>().unwrap())
    }

    #[test]
    fn a_share_per_address_given_back_on_drop() {
        let shares = ConnectionShares::new(2);
        let (a, b) = (key("192.0.2.1"), key("192.0.2.2"));
        let first = shares.take(a).unwrap();
        let second = shares.take(a).unwrap();
        assert!(shares.take(a).is_none());
        assert!(shares.take(key("2001:db8::1")).is_some());
        let other = shares.take(b).unwrap();
        assert_eq!(shares.refused(), 1);
        drop(first);
        assert!(shares.take(a).is_some());
        drop(second);
        drop(other);
        assert!(
            shares.with_held(|h| h.is_empty()),
            "table holds open connections only"
        );
    }
}
