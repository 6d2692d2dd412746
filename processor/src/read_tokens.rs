//! Per-device read tokens. A device's readings and its owner are personal
//! data (a 5 s power trace shows when a home is occupied), so reading them
//! needs the admin token or the token of that one device, which an operator
//! gives its owner (`wattstream device token --id`).
//!
//! A token is `HMAC-SHA256(secret, "wattstream-read-v1" || device id)`, hex:
//! nothing is stored per token, any processor with the secret checks it in
//! constant time, and replacing the secret file (`DATA_DIR/read-token-secret`,
//! 0600, made on first start) revokes every token at once.

use std::path::Path;

use ring::hmac;
use wattstream_sdk::fsutil::{WriteOptions, write_atomic};

const DOMAIN: &[u8] = b"wattstream-read-v1";

pub struct ReadTokens {
    key: hmac::Key,
}

impl ReadTokens {
    /// Loads the secret from `data_dir`, making it on first start.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("read-token-secret");
        if !path.exists() {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            match write_atomic(&path, &secret, WriteOptions::SECRET) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
        }
        let secret = std::fs::read(&path)?;
        anyhow::ensure!(secret.len() == 32, "{} is not a 32-byte secret", path.display());
        Ok(ReadTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    fn message(device_id: &str) -> Vec<u8> {
        [DOMAIN, device_id.as_bytes()].concat()
    }

    /// The read token of `device_id` (40 lowercase hex).
    pub fn token_for(&self, device_id: &str) -> String {
        hex::encode(hmac::sign(&self.key, &Self::message(device_id)))
    }

    /// A fingerprint of the secret (an HMAC of a fixed message, which says
    /// nothing of the secret): equal on processors that share it.
    pub fn fingerprint(&self) -> String {
        hex::encode(hmac::sign(&self.key, b"wattstream-read-v1 fingerprint"))
    }

    /// Whether `token` is `device_id`'s read token.
    pub fn check(&self, device_id: &str, token: &str) -> bool {
        let Ok(tag) = hex::decode(token) else {
            return false;
        };
        hmac::verify(&self.key, &Self::message(device_id), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_device_only_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("ab".repeat(20), "cd".repeat(20));
        let tokens = ReadTokens::open(dir.path()).unwrap();
        let t = tokens.token_for(&a);
        assert!(tokens.check(&a, &t));
        assert!(!tokens.check(&b, &t), "another device's token");
        assert!(!tokens.check(&a, &t[..62]) && !tokens.check(&a, "zz"));
        assert!(
            ReadTokens::open(dir.path()).unwrap().check(&a, &t),
            "same secret after a restart"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("read-token-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert!(
            !ReadTokens::open(other.path()).unwrap().check(&a, &t),
            "another processor's secret"
        );
    }
}
