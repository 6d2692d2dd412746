//! EVM chains: where sealed rewards settle. A processor that settles holds a
//! secp256k1 key (a file with the private key as `0x` hex, mode 0600, never
//! logged) and talks to a node over JSON-RPC with alloy: EIP-1559 fees where
//! the chain has them, nonces and gas filled by alloy's recommended fillers,
//! each transaction waited for until its receipt.
//!
//! - [`contracts`]: the token and the epoch distributor (Solidity in
//!   `rewards/contracts/`, compiled artifacts committed);
//! - [`settle`]: what a store says must be on chain (sealed roots, owners by
//!   epoch) and publishing what is not there yet, idempotently;
//! - [`claim`]: a device owner's claim of one epoch, with the proof the meter
//!   verifies;
//! - [`adapter`]: `[chains.ID]`, the chains applets call and send to;
//! - [`outbox`]: the transactions applets left, in each project's database;
//! - [`sender`]: sends them, once each, after their events commit;
//! - [`sign`]: one transaction signed within the chain's caps.

pub mod adapter;
pub mod claim;
pub mod contracts;
pub mod outbox;
pub mod sender;
pub mod settle;
pub mod settled;
pub mod sign;

use std::path::Path;

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

/// Where the contracts are: what `wattstream chain deploy` prints.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AddressBook {
    pub chain_id: u64,
    pub token: Address,
    pub distributor: Address,
    /// The key that may settle (and is both contracts' admin).
    pub settler: Address,
    pub epoch_s: u64,
}

/// Deploys the token and the distributor with `me` as admin and settler, and
/// lets the distributor mint.
pub async fn deploy(
    p: &DynProvider,
    me: Address,
    name: &str,
    symbol: &str,
    epoch_s: u64,
) -> anyhow::Result<AddressBook> {
    use anyhow::Context;
    use contracts::{EpochDistributor, WattToken};
    let chain_id = p.get_chain_id().await.context("the chain does not answer")?;
    let token = WattToken::deploy(p, name.to_string(), symbol.to_string(), me)
        .await
        .context("deploying the token")?;
    let distributor = EpochDistributor::deploy(p, *token.address(), epoch_s, me, me)
        .await
        .context("deploying the distributor")?;
    let role = token.MINTER_ROLE().call().await?;
    let receipt = token
        .grantRole(role, *distributor.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    anyhow::ensure!(receipt.status(), "granting the distributor MINTER_ROLE reverted");
    Ok(AddressBook {
        chain_id,
        token: *token.address(),
        distributor: *distributor.address(),
        settler: me,
        epoch_s,
    })
}

/// Why a chain key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the chain key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the chain key {path} is readable by others (mode {mode:o}): chmod 600 it")]
    Mode { path: String, mode: u32 },
    #[error("the chain key {path} is not a 0x-prefixed 32-byte hex secp256k1 key")]
    Malformed { path: String },
}

/// Reads a chain key file: `0x` + 64 hex digits, owner-only permissions.
pub fn load_key(path: &Path) -> Result<PrivateKeySigner, KeyError> {
    let shown = path.display().to_string();
    let read = |source| KeyError::Read {
        path: shown.clone(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Mode { path: shown, mode });
        }
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let hex = text.trim();
    let malformed = || KeyError::Malformed { path: shown.clone() };
    let body = hex.strip_prefix("0x").ok_or_else(malformed)?;
    if body.len() != 64 {
        return Err(malformed());
    }
    body.parse::<PrivateKeySigner>().map_err(|_| malformed())
}

fn url(rpc: &str) -> anyhow::Result<alloy::transports::http::reqwest::Url> {
    // reqwest is built without a default TLS provider (https:// RPCs): ring, as everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    rpc.parse()
        .map_err(|e| anyhow::anyhow!("--rpc {rpc} is not a URL: {e}"))
}

/// A provider that signs with `key` and fills nonce, gas, fees and chain id.
pub fn provider(rpc: &str, key: PrivateKeySigner) -> anyhow::Result<DynProvider> {
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(key))
        .connect_http(url(rpc)?)
        .erased())
}

/// A provider that only reads.
pub fn reader(rpc: &str) -> anyhow::Result<DynProvider> {
    Ok(ProviderBuilder::new().connect_http(url(rpc)?).erased())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";

    fn file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join("k");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_chain_key_must_be_owner_only_hex_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_key(&file(dir.path(), &format!("{KEY}\n"), 0o600)).unwrap();
        // ganache's well-known first account for this key.
        assert_eq!(
            key.address().to_string(),
            "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1"
        );
        let e = load_key(&file(dir.path(), KEY, 0o644)).unwrap_err();
        assert!(matches!(e, KeyError::Mode { mode: 0o644, .. }), "{e}");
        for bad in [
            &KEY[2..],
            "0x1234",
            "0xzz3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
        ] {
            let e = load_key(&file(dir.path(), bad, 0o600)).unwrap_err();
            assert!(matches!(e, KeyError::Malformed { .. }), "{bad}: {e}");
            assert!(
                !e.to_string().contains(&KEY[4..20]),
                "the key is never in an error"
            );
        }
    }
}
