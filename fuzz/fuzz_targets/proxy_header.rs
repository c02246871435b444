//! The PROXY protocol v2 header a trusted load balancer sends first
//! (`casegate::server::proxy_protocol`). Input: the bytes a connection
//! starts with.
//!
//! Invariants: decoding never panics; a header is accepted only with the
//! v2 signature, a body no longer than `MAX_BODY` and exactly the length
//! it announces; the streaming reader consumes exactly that header and
//! agrees with `decode`; an accepted client address is the one the header
//! carries, and `encode` of it decodes back to it.
#![no_main]

use casegate::server::proxy_protocol::{
    FIXED_LEN, MAX_BODY, SIGNATURE, Source, body_len, decode, encode, read,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode(data);
    if decoded.is_ok() {
        assert!(data.starts_with(&SIGNATURE));
        let fixed: [u8; FIXED_LEN] = data[..FIXED_LEN].try_into().unwrap();
        let len = body_len(&fixed).unwrap();
        assert!(len <= MAX_BODY);
        assert_eq!(data.len(), FIXED_LEN + len);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut stream = data;
    let streamed = runtime.block_on(read(&mut stream));
    if let Ok(source) = &streamed {
        let consumed = data.len() - stream.len();
        assert_eq!(decode(&data[..consumed]).as_ref(), Ok(source));
    }
    if let Ok(Source::Client(client)) = decoded {
        let server = "192.0.2.1:443".parse().unwrap();
        let again = decode(&encode(client, server)).unwrap();
        let Source::Client(back) = again else {
            panic!("{client} did not decode back");
        };
        assert_eq!(back.port(), client.port());
        assert_eq!(back.ip().to_canonical(), client.ip().to_canonical());
    }
});
