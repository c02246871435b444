//! casegate: a TLS gateway for confidential second-opinion medical records.
//!
//! Layers, with imports pointing down only:
//! `cli` (binary verbs) → `server` (listeners, application) → `http` (route
//! table, auth, thin handlers) → `service`, `upload` (business rules, their
//! transactions and audit entries) → `audit`, `db`, `crypto`, `store` →
//! `config`, `clock`, `ids`, `token`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod fsutil;
pub mod hex;
pub mod http;
pub mod ids;
pub mod logging;
pub mod manifest;
pub mod random;
pub mod rotation;
pub mod server;
pub mod service;
pub mod store;
pub mod text;
pub mod tls;
pub mod token;
pub mod upload;

pub use server::Application;
