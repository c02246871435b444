//! PROXY protocol version 2 (HAProxy's binary header, sent by a TCP load
//! balancer before the TLS bytes it passes through): the real client's
//! address for audit entries and rate limits. Read only on connections from
//! `server.trusted_proxies`, and required there; nobody else's header is
//! believed (to the TLS handshake it is garbage, and the connection fails).
//!
//! The header: a 12-byte signature, a version/command byte (`0x21` PROXY,
//! `0x20` LOCAL: the balancer's own connection, e.g. a health check), a
//! family/transport byte (`0x11` TCP over IPv4, `0x21` TCP over IPv6,
//! `0x00` unspecified), the length of the rest (u16, big-endian), then the
//! source and destination addresses and ports and optional TLVs, which are
//! skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family, length.
pub const FIXED_LEN: usize = 16;
/// The most a header may add after its fixed part (addresses and TLVs).
/// HAProxy's largest (UNIX addresses, SSL and authority TLVs) stays far
/// below it.
pub const MAX_BODY: usize = 1024;

/// Whom a proxied connection is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A client whose connection the balancer relays.
    Client(SocketAddr),
    /// The balancer itself (LOCAL command, or an unspecified address
    /// family): the connection's own peer address stands.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol v2 signature")]
    Signature,
    #[error("unsupported PROXY protocol version or command byte {0:#04x}")]
    VersionCommand(u8),
    #[error("unsupported PROXY address family or transport byte {0:#04x}")]
    Family(u8),
    #[error("PROXY header length {0} over the {MAX_BODY} bytes accepted")]
    TooLong(usize),
    #[error("PROXY header too short for its addresses")]
    Short,
    #[error("reading the PROXY header: {0}")]
    Read(String),
}

/// The length of what follows the fixed part, from the fixed part.
pub fn body_len(fixed: &[u8; FIXED_LEN]) -> Result<usize, ProxyError> {
    if fixed[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_BODY {
        return Err(ProxyError::TooLong(len));
    }
    Ok(len)
}

/// Decodes a whole header: the fixed part and exactly the body it
/// announces.
pub fn decode(header: &[u8]) -> Result<Source, ProxyError> {
    let fixed: &[u8; FIXED_LEN] = header
        .get(..FIXED_LEN)
        .and_then(|f| f.try_into().ok())
        .ok_or(ProxyError::Short)?;
    let len = body_len(fixed)?;
    let body = &header[FIXED_LEN..];
    if body.len() != len {
        return Err(ProxyError::Short);
    }
    match fixed[12] {
        0x20 => return Ok(Source::Local),
        0x21 => {}
        other => return Err(ProxyError::VersionCommand(other)),
    }
    let source = match fixed[13] {
        0x00 => return Ok(Source::Local),
        0x11 => {
            let b: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Short)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([b[8], b[9]]))
        }
        0x21 => {
            let b: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Short)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([b[32], b[33]]),
            )
        }
        other => return Err(ProxyError::Family(other)),
    };
    Ok(Source::Client(source))
}

/// Reads exactly one header from the start of `stream`, nothing past it
/// (the TLS handshake follows).
pub async fn read(stream: &mut (impl AsyncRead + Unpin)) -> Result<Source, ProxyError> {
    let mut header = vec![0u8; FIXED_LEN];
    let read_err = |e: std::io::Error| ProxyError::Read(e.to_string());
    stream.read_exact(&mut header).await.map_err(read_err)?;
    let fixed: [u8; FIXED_LEN] = header[..].try_into().map_err(|_| ProxyError::Short)?;
    let len = body_len(&fixed)?;
    header.resize(FIXED_LEN + len, 0);
    stream
        .read_exact(&mut header[FIXED_LEN..])
        .await
        .map_err(read_err)?;
    decode(&header)
}

/// A PROXY protocol v2 header as HAProxy sends it (tests and the fuzz
/// seeds): PROXY command, TCP, `client` → `server`.
pub fn encode(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    match (client.ip().to_canonical(), server.ip().to_canonical()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.octets());
            out.extend_from_slice(&s.octets());
        }
        (c, s) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(s).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&server.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn ipv4_and_ipv6_clients_and_nothing_read_past_the_header() {
        for (client, server) in [
            ("203.0.113.7:51234", "10.0.0.5:8443"),
            ("[2001:db8::7]:443", "[2001:db8::1]:8443"),
        ] {
            let mut bytes = encode(addr(client), addr(server));
            bytes.extend_from_slice(b"\x16\x03\x01 TLS follows");
            let mut stream = &bytes[..];
            assert_eq!(read(&mut stream).await, Ok(Source::Client(addr(client))));
            assert_eq!(stream, b"\x16\x03\x01 TLS follows");
        }
    }

    #[test]
    fn local_unspecified_and_tlvs() {
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(decode(&local), Ok(Source::Local));
        let mut unspec = SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0, 3, 1, 2, 3]);
        assert_eq!(decode(&unspec), Ok(Source::Local));
        // TLVs after the addresses are skipped.
        let mut with_tlv = encode(addr("192.0.2.1:1000"), addr("192.0.2.2:443"));
        with_tlv[15] += 7;
        with_tlv.extend_from_slice(&[0x02, 0, 4, b'h', b'o', b's', b't']);
        assert_eq!(
            decode(&with_tlv),
            Ok(Source::Client(addr("192.0.2.1:1000")))
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        let good = encode(addr("192.0.2.1:1000"), addr("192.0.2.2:443"));
        let mut cases: Vec<(Vec<u8>, ProxyError)> = Vec::new();
        let mut sig = good.clone();
        sig[3] ^= 1;
        cases.push((sig, ProxyError::Signature));
        // Version 1 text, and version 2 with an unknown command.
        cases.push((
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 443\r\n".to_vec(),
            ProxyError::Signature,
        ));
        let mut command = good.clone();
        command[12] = 0x22;
        cases.push((command, ProxyError::VersionCommand(0x22)));
        let mut version = good.clone();
        version[12] = 0x11;
        cases.push((version, ProxyError::VersionCommand(0x11)));
        for family in [0x12, 0x31, 0x22, 0x10] {
            let mut f = good.clone();
            f[13] = family;
            cases.push((f, ProxyError::Family(family)));
        }
        // Announces fewer bytes than its addresses need.
        let mut short = good[..FIXED_LEN].to_vec();
        short[15] = 4;
        short.extend_from_slice(&[1, 2, 3, 4]);
        cases.push((short, ProxyError::Short));
        let mut long = good.clone();
        long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        cases.push((long, ProxyError::TooLong(65535)));
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes), Err(expected), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn a_truncated_header_is_a_read_error() {
        let good = encode(addr("192.0.2.1:1000"), addr("192.0.2.2:443"));
        for cut in [0, 5, 16, good.len() - 1] {
            let mut stream = &good[..cut];
            assert!(
                matches!(read(&mut stream).await, Err(ProxyError::Read(_))),
                "{cut}"
            );
        }
    }
}
