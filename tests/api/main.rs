//! Integration tests: the real server, real TLS, a client as users have.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cases;
mod centres;
mod common;
mod connections;
mod hostile;
mod role_matrix;
mod startup;
