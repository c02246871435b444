//! Object format v1 throughput against raw AES-256-GCM, in one run, on one
//! core. Run: `cargo bench --bench format` (optionally `-- <MiB>`, default
//! 1024). Each figure is the best of three passes over the whole input.
//!
//! 1. raw ring AES-256-GCM seal / open in place over 64 KiB buffers, each
//!    chunk copied in from (or out of) a buffer of the whole input — the
//!    ceiling;
//! 2. format v1 streaming encrypt of the input held in memory, fed in 1 MiB
//!    pieces into a sink that is cleared after each piece (so the
//!    encryptor's own memory is what is measured);
//! 3. format v1 streaming decrypt (the `Decryptor` `fetch` uses): each
//!    sealed chunk read into a reusable buffer (as from a socket or file)
//!    and opened in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use casegate::crypto::FileKey;
use casegate::crypto::format::{Decryptor, Encryptor, HEADER_LEN, Layout, ObjectHeader};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const CHUNK: usize = 64 * 1024;
const PASSES: usize = 3;
const CASE_ID: &str = "case_00112233445566778899aabbccddeeff";
const FILE_ID: &str = "file_00112233445566778899aabbccddeeff";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn best(mut pass: impl FnMut()) -> f64 {
    (0..PASSES)
        .map(|_| {
            let started = Instant::now();
            pass();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn gib_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / (1024.0 * 1024.0 * 1024.0)
}

fn counter_nonce(i: usize) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let total = mib * 1024 * 1024;
    println!("format v1 benchmark: {mib} MiB, chunk 64 KiB, one thread, best of {PASSES}");
    let input: Vec<u8> = (0..total)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut buf = vec![0u8; CHUNK + 16];

    let raw_seal = best(|| {
        for (i, piece) in input.chunks(CHUNK).enumerate() {
            buf[..piece.len()].copy_from_slice(piece);
            let tag = raw_key
                .seal_in_place_separate_tag(counter_nonce(i), Aad::empty(), &mut buf[..piece.len()])
                .unwrap();
            let _ = std::hint::black_box(tag);
        }
    });

    let mut raw_sealed = Vec::with_capacity(total / CHUNK * (CHUNK + 16));
    for (i, piece) in input.chunks(CHUNK).enumerate() {
        let start = raw_sealed.len();
        raw_sealed.extend_from_slice(piece);
        let tag = raw_key
            .seal_in_place_separate_tag(counter_nonce(i), Aad::empty(), &mut raw_sealed[start..])
            .unwrap();
        raw_sealed.extend_from_slice(tag.as_ref());
    }
    let raw_open = best(|| {
        for (i, sealed) in raw_sealed.chunks(CHUNK + 16).enumerate() {
            buf.copy_from_slice(sealed);
            raw_key
                .open_in_place(counter_nonce(i), Aad::empty(), &mut buf)
                .unwrap();
        }
    });
    drop(raw_sealed);

    let key = FileKey::generate();
    let rss_before = rss_kib();
    let mut sink = Vec::with_capacity(2 * 1024 * 1024);
    let mut largest_batch = 0;
    let v1_seal = best(|| {
        let mut enc = Encryptor::new(&key, CASE_ID, FILE_ID).unwrap();
        for piece in input.chunks(1024 * 1024) {
            enc.update(piece, &mut sink);
            largest_batch = largest_batch.max(sink.len());
            sink.clear();
        }
        enc.finish(&mut sink).unwrap();
        sink.clear();
    });
    let rss_growth = rss_kib().saturating_sub(rss_before);

    let mut object = Vec::with_capacity(Layout::new(65536).object_len(total as u64) as usize);
    let mut enc = Encryptor::new(&key, CASE_ID, FILE_ID).unwrap();
    enc.update(&input, &mut object);
    enc.finish(&mut object).unwrap();
    drop(input);
    let header = ObjectHeader::decode(&object).unwrap();
    let len = Layout::new(header.chunk_size)
        .plaintext_len(object.len() as u64)
        .unwrap();
    let decryptor = Decryptor::new(&key, &object, CASE_ID, FILE_ID, len).unwrap();
    let v1_open = best(|| {
        let mut plain_bytes = 0usize;
        let mut body = &object[HEADER_LEN..];
        decryptor
            .read_all(&mut body, |plain| {
                plain_bytes += plain.len();
                Ok(())
            })
            .unwrap();
        assert_eq!(plain_bytes, total);
    });

    let (rs, ro) = (gib_per_s(total, raw_seal), gib_per_s(total, raw_open));
    let (vs, vo) = (gib_per_s(total, v1_seal), gib_per_s(total, v1_open));
    println!("raw AES-256-GCM seal, 64 KiB          {rs:6.2} GiB/s  (baseline)");
    println!("raw AES-256-GCM open, 64 KiB          {ro:6.2} GiB/s  (baseline)");
    println!(
        "format v1 encrypt, streaming          {vs:6.2} GiB/s  = {:.0}% of raw seal",
        100.0 * vs / rs
    );
    println!(
        "format v1 decrypt, streaming          {vo:6.2} GiB/s  = {:.0}% of raw open",
        100.0 * vo / ro
    );
    println!(
        "encryptor memory: RSS grew {rss_growth} KiB over {PASSES} encrypt passes of {mib} MiB (output batches up to {} KiB, cleared each time)",
        largest_batch / 1024
    );
}
