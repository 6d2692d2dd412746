//! The chains applets reach through `ws_send_tx` and `ws_call_contract`
//! (W3bstream's chain adapter). Each is configured as `[chains.ID]`: a node's
//! JSON-RPC URL and the processor's secp256k1 key for that chain (a `0x` hex
//! file, mode 0600, never logged), with a fee and gas policy.
//!
//! A call (`ws_call_contract`) is an `eth_call`, made during the applet call
//! and bounded by the applet's deadline. A transaction (`ws_send_tx`) is never
//! sent from inside the wasm call: it is an intent the call leaves
//! ([`TxIntent`]), stored with the event's other effects in the project's
//! outbox (`chain::outbox`) and sent by the chain's sender
//! (`chain::sender`) after they commit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use serde::Deserialize;

/// A transaction or call as the node takes it.
pub type TxRequest = <alloy::network::Ethereum as alloy::network::Network>::TransactionRequest;

/// `[chains.ID]` in the processor's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// A node's JSON-RPC URL (`http://` or `https://`).
    pub rpc: String,
    /// File holding the processor's private key for this chain (`0x` + 64 hex,
    /// mode 0600).
    pub key_file: PathBuf,
    /// Blocks a transaction must be under (its own included) before it counts
    /// as confirmed.
    #[serde(default = "defaults::confirmations")]
    pub confirmations: u64,
    /// Most a transaction pays per gas, in gwei (EIP-1559 max fee, or the gas
    /// price on a chain without EIP-1559); none: what the node suggests.
    #[serde(default)]
    pub max_fee_gwei: Option<u64>,
    /// Most gas one transaction may use: a transaction whose estimate is
    /// higher is not sent (it is retried, then given up).
    #[serde(default = "defaults::max_gas")]
    pub max_gas: u64,
    /// Tries to sign a transaction (estimate, fees) before it is given up;
    /// the wait between tries doubles from 1 s up to 5 minutes.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Milliseconds between the sender's passes over the outbox.
    #[serde(default = "defaults::poll_ms")]
    pub poll_ms: u64,
}

mod defaults {
    pub fn confirmations() -> u64 {
        1
    }
    pub fn max_gas() -> u64 {
        2_000_000
    }
    pub fn max_attempts() -> u32 {
        20
    }
    pub fn poll_ms() -> u64 {
        500
    }
}

impl ChainConfig {
    /// A chain at `rpc` with the key in `key_file` and every default.
    pub fn at(rpc: &str, key_file: PathBuf) -> ChainConfig {
        ChainConfig {
            rpc: rpc.to_string(),
            key_file,
            confirmations: defaults::confirmations(),
            max_fee_gwei: None,
            max_gas: defaults::max_gas(),
            max_attempts: defaults::max_attempts(),
            poll_ms: defaults::poll_ms(),
        }
    }
}

/// A transaction an applet asked for: what `ws_send_tx` read, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TxIntent {
    pub chain_id: u64,
    /// `0x` + 40 hex, lower case.
    pub to: String,
    /// Wei, decimal.
    pub value: String,
    /// `0x` + hex.
    pub data: String,
}

/// Most calldata one transaction or call may carry.
pub const MAX_DATA: usize = 32 << 10;

#[derive(Deserialize)]
struct TxJson {
    to: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    data: String,
}

/// The `to` of a transaction or call JSON (`{"to": …, "value": …, "data": …}`,
/// W3bstream's form), and its calldata.
pub fn parse(json: &[u8]) -> Result<(Address, U256, Vec<u8>), String> {
    let tx: TxJson = serde_json::from_slice(json).map_err(|e| format!("bad transaction JSON: {e}"))?;
    let to: Address = tx
        .to
        .trim()
        .parse()
        .map_err(|_| format!("`to` is not an address: {:?}", tx.to))?;
    let value = tx.value.trim();
    let value = if value.is_empty() {
        U256::ZERO
    } else if let Some(h) = value.strip_prefix("0x") {
        U256::from_str_radix(h, 16).map_err(|_| format!("`value` is not a number: {value:?}"))?
    } else {
        U256::from_str_radix(value, 10).map_err(|_| format!("`value` is not a number: {value:?}"))?
    };
    let data = tx.data.trim();
    let data =
        hex::decode(data.strip_prefix("0x").unwrap_or(data)).map_err(|_| "`data` is not hex".to_string())?;
    if data.len() > MAX_DATA {
        return Err(format!("`data` is {} bytes, more than {MAX_DATA}", data.len()));
    }
    Ok((to, value, data))
}

/// The intent a `ws_send_tx` on `chain_id` leaves.
pub fn intent(chain_id: u64, json: &[u8]) -> Result<TxIntent, String> {
    let (to, value, data) = parse(json)?;
    Ok(TxIntent {
        chain_id,
        to: format!("{to:#x}"),
        value: value.to_string(),
        data: format!("0x{}", hex::encode(data)),
    })
}

/// One configured chain.
pub struct Conn {
    pub id: u64,
    pub config: ChainConfig,
    /// Signs with the chain key; fills gas, fees and chain id.
    pub signer: DynProvider,
    /// The chain key, to sign a transaction without sending it.
    pub wallet: EthereumWallet,
    pub address: Address,
}

/// Every configured chain, and the runtime their requests run on.
pub struct Chains {
    by_id: BTreeMap<u64, Arc<Conn>>,
    rt: tokio::runtime::Handle,
}

impl Chains {
    /// Loads each chain's key (no request is made yet: a node that is down
    /// is the sender's to retry, not a reason to refuse to start).
    pub fn open(configs: &BTreeMap<u64, ChainConfig>, rt: tokio::runtime::Handle) -> anyhow::Result<Chains> {
        let mut by_id = BTreeMap::new();
        for (id, config) in configs {
            let key = super::load_key(&config.key_file)?;
            let address = key.address();
            let wallet = EthereumWallet::from(key.clone());
            let signer = {
                let _guard = rt.enter();
                super::provider(&config.rpc, key)?
            };
            by_id.insert(
                *id,
                Arc::new(Conn {
                    id: *id,
                    config: config.clone(),
                    signer,
                    wallet,
                    address,
                }),
            );
        }
        Ok(Chains { by_id, rt })
    }

    pub fn ids(&self) -> Vec<u64> {
        self.by_id.keys().copied().collect()
    }

    pub fn get(&self, id: u64) -> Option<&Arc<Conn>> {
        self.by_id.get(&id)
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    /// `eth_call` of `data` to `to` on chain `id` at the latest block, within
    /// `within`. Blocks: call from a thread outside the async runtime (the
    /// applet worker's, or a blocking task's).
    pub fn call(&self, id: u64, to: Address, data: Vec<u8>, within: Duration) -> Result<Vec<u8>, String> {
        let conn = self
            .by_id
            .get(&id)
            .ok_or_else(|| format!("no chain {id} is configured"))?;
        let req = TxRequest::default().with_to(to).with_input(Bytes::from(data));
        let call = async { conn.signer.call(req).await };
        match self
            .rt
            .block_on(async { tokio::time::timeout(within, call).await })
        {
            Ok(Ok(out)) => Ok(out.to_vec()),
            Ok(Err(e)) => Err(format!("eth_call on chain {id}: {e}")),
            Err(_) => Err(format!("eth_call on chain {id}: no answer within {within:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_takes_w3bstreams_form_and_refuses_what_cannot_be_sent() {
        let to = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        let tx = format!(r#"{{"to":"{to}","value":"1000","data":"40c10f19"}}"#);
        assert_eq!(
            intent(1337, tx.as_bytes()).unwrap(),
            TxIntent {
                chain_id: 1337,
                to: to.to_ascii_lowercase(),
                value: "1000".into(),
                data: "0x40c10f19".into(),
            }
        );
        let hexvalue = format!(r#"{{"to":"{to}","value":"0x10","data":"0x"}}"#);
        assert_eq!(intent(1, hexvalue.as_bytes()).unwrap().value, "16");
        for (bad, why) in [
            (r#"{"to":"0x12","data":""}"#.to_string(), "address"),
            (format!(r#"{{"to":"{to}","value":"-1"}}"#), "number"),
            (format!(r#"{{"to":"{to}","data":"0xzz"}}"#), "hex"),
            (
                format!(r#"{{"to":"{to}","data":"{}"}}"#, "00".repeat(MAX_DATA + 1)),
                "more than",
            ),
            ("not json".to_string(), "JSON"),
        ] {
            let e = intent(1, bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
