//! The key hierarchy against the committed vectors in
//! tests/vectors/keys-v1.json, through the public API only: the master key
//! file parses (or fails for its `reason`), case keys unwrap under it with
//! the keyring, file keys unwrap under those case keys to the listed bytes,
//! and every negative vector fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use casegate::crypto::master::KeyFileError;
use casegate::crypto::{CaseKey, Keyring, LocalMasterKeys, WrappedKey};
use casegate::ids::{CaseId, FileId};
use serde_json::Value;

fn unhex(v: &Value) -> Vec<u8> {
    casegate::hex::decode(v.as_str().unwrap()).unwrap()
}

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/keys-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn of_kind<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == kind)
        .collect()
}

fn keyring(doc: &Value) -> Keyring {
    let keys = LocalMasterKeys::parse(doc["master_key_file"].as_str().unwrap()).unwrap();
    Keyring::new(Arc::new(keys))
}

fn case_key(keyring: &Keyring, v: &Value) -> Result<CaseKey, casegate::crypto::DecryptError> {
    keyring.case_key(
        &CaseId::parse(v["case_id"].as_str().unwrap()).unwrap(),
        &WrappedKey {
            kek_version: v["kek_version"].as_u64().unwrap() as u32,
            bytes: unhex(&v["wrapped"]),
        },
    )
}

#[test]
fn case_keys_unwrap_or_fail() {
    let doc = doc();
    let keyring = keyring(&doc);
    let cases = of_kind(&doc, "case_key");
    assert!(cases.iter().any(|v| v["expect"] == "ok"));
    for v in cases {
        let name = &v["name"];
        match v["expect"].as_str().unwrap() {
            "ok" => assert!(case_key(&keyring, v).is_ok(), "{name}"),
            _ => {
                assert!(v["reason"].is_string(), "{name} has a reason");
                assert!(case_key(&keyring, v).is_err(), "{name} must fail");
            }
        }
    }
}

#[test]
fn file_keys_unwrap_under_their_case_key_or_fail() {
    let doc = doc();
    let keyring = keyring(&doc);
    let cases = of_kind(&doc, "case_key");
    for v in of_kind(&doc, "file_key") {
        let name = &v["name"];
        // The case key is the one a positive case vector unwraps to.
        let source = cases
            .iter()
            .find(|c| c["expect"] == "ok" && c["case_key"] == v["case_key"])
            .unwrap();
        let case_key = case_key(&keyring, source).unwrap();
        let opened = keyring.file_key(
            &case_key,
            &CaseId::parse(v["case_id"].as_str().unwrap()).unwrap(),
            &FileId::parse(v["file_id"].as_str().unwrap()).unwrap(),
            unhex(&v["key_id"]).try_into().unwrap(),
            &unhex(&v["wrapped"]),
        );
        match v["expect"].as_str().unwrap() {
            "ok" => assert_eq!(
                opened.unwrap().secret().as_slice(),
                unhex(&v["file_key"]),
                "{name}"
            ),
            _ => {
                assert!(v["reason"].is_string(), "{name} has a reason");
                assert!(opened.is_err(), "{name} must fail");
            }
        }
    }
}

/// The parse error each negative key file vector's `reason` names.
fn expected_error(reason: &str) -> fn(&KeyFileError) -> bool {
    match reason {
        "no_key" => |e| *e == KeyFileError::NoKey,
        "bad_syntax" => |e| matches!(e, KeyFileError::Syntax(_)),
        "bad_version" => |e| matches!(e, KeyFileError::Version(_)),
        "key_not_base64url" => |e| matches!(e, KeyFileError::NotBase64url(_)),
        "key_not_32_bytes" => |e| matches!(e, KeyFileError::KeyLength(_)),
        "duplicate_version" => |e| matches!(e, KeyFileError::DuplicateVersion(..)),
        other => panic!("key file vector with unknown reason {other:?}"),
    }
}

#[test]
fn key_files_parse_or_fail_for_their_reason() {
    let doc = doc();
    for v in of_kind(&doc, "key_file") {
        let name = &v["name"];
        let parsed = LocalMasterKeys::parse(v["text"].as_str().unwrap());
        match v["expect"].as_str().unwrap() {
            "ok" => {
                let versions: Vec<u32> = v["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(parsed.unwrap().versions(), versions, "{name}");
            }
            _ => {
                let reason = v["reason"].as_str().unwrap();
                let err = parsed.expect_err(name.as_str().unwrap());
                assert!(
                    expected_error(reason)(&err),
                    "{name}: {reason}, got {err:?}"
                );
            }
        }
    }
}
