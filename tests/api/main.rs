//! Integration tests: the real server, real TLS, a client as users have.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod cases;
mod centres;
mod clients;
mod common;
mod connections;
mod crash;
mod fetch;
mod fetch_harness;
mod fetch_hostile;
mod fetch_names;
mod grants;
mod hostile;
mod keys;
mod role_matrix;
mod s3;
mod startup;
mod tus;

#[path = "../support/mod.rs"]
mod support;
