//! The envelopes in `tests/vectors/envelopes.jsonl` were signed by an independent
//! implementation (Python `cryptography`, `scripts/make-vectors.py`). Each must get the right signature
//! verdict from both verification paths:
//! - `accept` and `duplicate` cases carry good signatures;
//! - a `reject` case from a device that is not in `devices.json` is refused for
//!   registration, not signature, so its signature must verify too;
//! - every other `reject` case must fail, in parsing or in verification, on both.

use std::path::PathBuf;

use serde_json::Value;
use wattstream_sdk::{Envelope, VerifyPath};

fn vectors_dir() -> PathBuf {
    std::env::var_os("WATTSTREAM_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"))
}

#[test]
fn signed_vectors_get_the_right_signature_verdict() {
    let dir = vectors_dir();
    let devices: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("devices.json")).expect("devices.json"))
            .unwrap();
    let registered: Vec<String> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_lowercase())
        .collect();
    let cases = std::fs::read_to_string(dir.join("envelopes.jsonl")).expect("envelopes.jsonl");
    let mut checked = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let name = case["name"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let body = case["body"].as_str().unwrap();
        let parsed = Envelope::parse(body.as_bytes());
        let verdicts = VerifyPath::ALL.map(|p| parsed.as_ref().map(|e| e.verify(p).is_ok()).unwrap_or(false));
        let unregistered = parsed
            .as_ref()
            .map(|e| !registered.contains(&e.public_key().to_hex()))
            .unwrap_or(false);
        let want = expect != "reject" || unregistered;
        assert_eq!(
            verdicts,
            [want, want],
            "case {name} (expect {expect}): {:?}",
            parsed.err()
        );
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} cases read");
}
