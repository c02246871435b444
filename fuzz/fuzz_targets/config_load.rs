//! Configuration loading (`casegate::config::Config::parse`, what
//! `Config::load` does after reading the file): TOML, then
//! `CASEGATE_<SECTION>__<KEY>` environment overrides, then validation.
//!
//! Input: UTF-8 text split at NUL characters; the first part is the TOML
//! file, every further part `NAME=VALUE` is the variable `CASEGATE_NAME`
//! (so `SERVER__LISTEN=…` overrides `server.listen`).
//!
//! Invariants: a loaded configuration passes its own validation; its Debug
//! output (what a log line or panic would show) does not depend on the S3
//! credentials or the master key, i.e. secrets are redacted whatever their
//! value.
#![no_main]

use std::path::Path;

use casegate::config::Config;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let toml = parts.next().unwrap_or_default();
    let env: Vec<(String, String)> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (format!("CASEGATE_{k}"), v.to_owned()))
        .collect();

    let Ok(config) = Config::parse(Some((Path::new(FILE), toml)), env.clone()) else {
        return;
    };
    if let Err(e) = config.validate() {
        panic!("a loaded configuration fails validation: {e}");
    }
    assert!(config.server.public_url.starts_with("https://"));

    // Same input, other secret values (appended last, so they win unless the
    // input set the same variable under another spelling).
    let mut other = env;
    if config.storage.s3.is_some() {
        other.push((
            "CASEGATE_STORAGE__S3__ACCESS_KEY".into(),
            "zz-other-access".into(),
        ));
        other.push((
            "CASEGATE_STORAGE__S3__SECRET_KEY".into(),
            "zz-other-secret".into(),
        ));
    }
    if config.keys.master_key.is_some() {
        other.push(("CASEGATE_KEYS__MASTER_KEY".into(), "zz-other-master".into()));
    }
    match Config::parse(Some((Path::new(FILE), toml)), other) {
        Ok(again) => assert_eq!(
            format!("{config:?}"),
            format!("{again:?}"),
            "Debug output depends on a secret"
        ),
        Err(e) => panic!("changing only secret values made the config invalid: {e}"),
    }
});
