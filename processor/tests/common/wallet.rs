//! Owners' wallets for the onboarding tests, from an implementation that is not
//! ours: Python `eth-account` (PyPI), which signs EIP-191 `personal_sign` as
//! wallets do. `scripts/test.sh` installs it in `target/eth-venv` and names
//! its interpreter in `WATTSTREAM_TEST_PYTHON`. A test that needs it and
//! cannot run it fails, naming what is missing: it never passes without
//! having signed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const SIGNER: &str = r#"
import json, sys
from eth_account import Account
from eth_account.messages import encode_defunct
out = []
for key, message in json.load(sys.stdin):
    account = Account.from_key(key)
    signed = Account.sign_message(encode_defunct(text=message), private_key=key)
    out.append({"address": account.address, "signature": "0x" + bytes(signed.signature).hex()})
json.dump(out, sys.stdout)
"#;

fn python() -> PathBuf {
    let path = std::env::var_os("WATTSTREAM_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/eth-venv/bin/python3"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs eth-account in target/eth-venv) \
         or set WATTSTREAM_TEST_PYTHON to a Python with eth-account",
        path.display()
    );
    path
}

/// A test wallet: a fixed private key, its checksummed address.
#[derive(Clone, Debug)]
pub struct Wallet {
    pub key: String,
    pub address: String,
}

impl Wallet {
    /// The wallet whose private key is the byte `n` repeated (n ≥ 1).
    pub fn numbered(n: u8) -> Wallet {
        let key = format!("0x{}", format!("{n:02x}").repeat(32));
        let address = sign_all(&[(key.as_str(), "address")])[0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        Wallet { key, address }
    }

    /// `personal_sign(message)`: 0x + r‖s‖v hex.
    pub fn sign(&self, message: &str) -> String {
        let out = sign_all(&[(self.key.as_str(), message)]);
        assert_eq!(out[0]["address"], self.address.as_str());
        out[0]["signature"].as_str().unwrap().to_string()
    }

    pub fn lower(&self) -> String {
        self.address.to_ascii_lowercase()
    }
}

/// Signs each `(private key, message)` in one Python run.
pub fn sign_all(pairs: &[(&str, &str)]) -> Vec<Value> {
    let mut child = Command::new(python())
        .args(["-c", SIGNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start Python");
    let input = json!(pairs.iter().map(|(k, m)| json!([k, m])).collect::<Vec<_>>());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "eth-account failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
