//! Integration tests: the real server, real TLS, a client as users have.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod address_shares;
mod audit_alerts;
mod audit_disclosures;
mod audit_log;
mod audit_proofs;
mod cases;
mod centres;
mod checkpoint_copies;
mod chunk_size;
mod clients;
mod common;
mod connections;
mod crash;
mod denial_floods;
mod dicomweb;
mod dicomweb_clients;
mod dicomweb_frames;
mod dicomweb_leases;
mod dicomweb_refusals;
mod download_resume;
mod fault_db;
mod fault_gateway;
mod fault_kill;
mod fault_s3;
mod faults;
mod fetch;
mod fetch_adopt;
mod fetch_harness;
mod fetch_hostile;
mod fetch_jobs;
mod fetch_names;
mod grants;
mod hostile;
mod keys;
mod proxy_protocol;
mod races;
mod replicas;
mod replicas_harness;
mod reply;
mod reply_cli;
mod reply_refusals;
mod restore;
mod role_matrix;
mod s3;
mod sealed_etag;
mod startup;
mod tus;
mod upload_browser;
mod upload_cli;
mod upload_cli_harness;
mod upload_leases;
mod upload_page;

#[path = "../support/mod.rs"]
mod support;
