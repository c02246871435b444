//! casegate: a TLS gateway for confidential second-opinion medical records.
//!
//! The map of the crate, one line a module, from the top floor down.
//! Imports only point down (`tests/layers.rs` checks it), so a module can be
//! read knowing only the ones below it. docs/architecture.md draws the same
//! floors and follows one upload's and one download's bytes through them.
//!
//! | floor | module | what it is |
//! |---|---|---|
//! | 10 | [`cli`] | the `casegate` verbs (clap), mapped onto library calls |
//! | 9 | [`server`] | the application: both TLS listeners, connection limits, drain |
//! | 8 | [`http`] | one route table ([`http::endpoint`]), auth layer, CORS, thin handlers, one error → HTTP mapping, the embedded upload page |
//! | 7 | [`service`] | business rules: cases, centres, grants (one liveness rule), downloads, audit export, checkpoints, proofs |
//! | 6 | [`upload`] | tus semantics without HTTP: create, PATCH pipeline, complete, expire |
//! | 6 | [`rotation`] | master key rotation: add a version, rewrap case keys |
//! | 5 | [`bootstrap`] | what a start needs: data dir, master key, certificates, migrated database |
//! | 5 | [`manifest`] | the case manifest (coordinator and patient views) |
//! | 4 | [`db`] | the metadata database: one repository per concept, migrations |
//! | 3 | [`store`] | ciphertext objects: `fs` and `s3` backends behind one `ObjectStore` |
//! | 3 | [`crypto`] | key hierarchy via one [`crypto::Keyring`]; object format v1 ([`crypto::format`]) |
//! | 3 | [`tls`] | server configurations, the centre client verifier, dev certificates |
//! | 3 | [`audit`] | the audit entry model and its canonical JSON line; its Merkle tree, signed checkpoints, offline verification |
//! | 2 | [`ids`] | opaque ids (`case_…`, `file_…`, …), parsed once at the boundary |
//! | 2 | [`token`] | bearer tokens: random, shown once, stored as SHA-256 |
//! | 1 | [`config`] | layered configuration: defaults, TOML file, environment |
//! | 1 | [`clock`] | injected time and [`clock::Timestamp`], the one time type |
//! | 1 | [`hex`], [`random`], [`text`], [`fsutil`], [`logging`] | lowercase hex; the CSPRNG; neutralising names; owner-only files; stderr logging |
//!
//! Where one change goes:
//! - a route: its line in `http/endpoint.rs` (method, path, listener, role,
//!   audit action) and its handler in `http/`;
//! - a grant rule: `service/grants/mod.rs` (`check_live`, used at a
//!   centre's first request and by every running download's re-check);
//! - a store backend: a file in `store/` and its variant in `store/mod.rs`
//!   (`ObjectStore`, `ObjectWriter`), checked by `tests/store_conformance.rs`;
//! - a format version: `crypto/format/` (`header.rs` reads the version; the
//!   one `Encryptor` and one `Decryptor` are the only writer and reader);
//! - a config key: `config/mod.rs` and `config/casegate.toml`.
#![forbid(unsafe_code)]
#![warn(clippy::too_many_lines)]

pub mod cli;

pub mod server;

pub mod http;

pub mod service;

pub mod rotation;
pub mod upload;

pub mod bootstrap;
pub mod manifest;

pub mod db;

pub mod audit;
pub mod crypto;
pub mod store;
pub mod tls;

pub mod ids;
pub mod token;

pub mod clock;
pub mod config;
pub mod fsutil;
pub mod hex;
pub mod logging;
pub mod random;
pub mod text;

pub use server::Application;
