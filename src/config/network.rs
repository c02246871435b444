//! An IP network in configuration: CIDR notation (`10.0.0.0/8`,
//! `2001:db8::/32`) or a single address (`192.0.2.10`, `::1`). Used for
//! `server.trusted_proxies`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Whether `ip` is in the network. An IPv4 address written as
    /// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports
    /// it) is the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `value` with all but its first `prefix` of `bits` bits cleared.
fn masked(value: u128, prefix: u8, bits: u8) -> u128 {
    let host_bits = u32::from(bits - prefix);
    value
        .checked_shr(host_bits)
        .unwrap_or(0)
        .checked_shl(host_bits)
        .unwrap_or(0)
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNetwork, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (e.g. 10.0.0.0/8)"))?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => Some(p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        let network = IpNetwork { addr, prefix };
        let value = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if masked(value, prefix, bits) != value {
            return Err(format!(
                "{text:?} has host bits set: write the network's first address"
            ));
        }
        Ok(network)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpNetwork, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_and_single_addresses() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(net("192.0.2.10").contains(ip("192.0.2.10")));
        assert!(!net("192.0.2.10").contains(ip("192.0.2.11")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(net("::/0").contains(ip("fe80::1")));
        assert_eq!(net("::ffff:10.0.0.0/8"), net("10.0.0.0/8"));
    }

    #[test]
    fn mistakes_are_named() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "example.com",
            "10.0.0.0/8/8",
            "::/129",
            " 10.0.0.1",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad:?}");
        }
    }

    /// As operators write it: a TOML array in the file or the environment;
    /// a mistake stops the start naming the key.
    #[test]
    fn trusted_proxies_from_env_and_their_mistakes() {
        let load = |value: &str| {
            crate::config::Config::load(
                None,
                [(
                    "CASEGATE_SERVER__TRUSTED_PROXIES".to_owned(),
                    value.to_owned(),
                )],
            )
        };
        let c = load(r#"["10.0.0.0/24", "2001:db8::1"]"#).unwrap();
        let proxies = &c.server.trusted_proxies;
        assert_eq!(proxies.len(), 2);
        assert!(proxies[0].contains(ip("10.0.0.200")));
        for bad in [r#"["10.0.0.1/24"]"#, r#"["proxy.example"]"#, "10.0.0.0/24"] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains("server.trusted_proxies"), "{bad}: {err}");
        }
    }
}
