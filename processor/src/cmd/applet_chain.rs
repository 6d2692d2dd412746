//! `wattstream applet run --chain ID=URL --chain-key PATH`: one module run
//! against real chains. Its `ws_call_contract` calls reach the node during
//! the run; the transactions its `ws_send_tx` leaves are signed and sent once
//! the run has succeeded (as a processor sends them once the event commits),
//! and each is waited for until its receipt.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use wattstream_processor::chain::adapter::{ChainConfig, Chains, TxIntent};

/// The chains of `--chain`, and the runtime their requests run on (kept
/// alive as long as they are used).
pub fn open(
    chain: &[(u64, String)],
    key: Option<PathBuf>,
) -> Result<Option<(Arc<Chains>, tokio::runtime::Runtime)>> {
    let Some(key) = key.filter(|_| !chain.is_empty()) else {
        return Ok(None);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let configs: BTreeMap<u64, ChainConfig> = chain
        .iter()
        .map(|(id, url)| (*id, ChainConfig::at(url, key.clone())))
        .collect();
    let chains = Chains::open(&configs, rt.handle().clone())?;
    Ok(Some((Arc::new(chains), rt)))
}

/// Sends each transaction and prints its hash, block and status; 1 when one
/// reverted.
pub fn send(chains: &Chains, txs: &[TxIntent]) -> Result<i32> {
    let mut code = 0;
    for tx in txs {
        let conn = chains
            .get(tx.chain_id)
            .ok_or_else(|| anyhow::anyhow!("no --chain {}", tx.chain_id))?;
        let (hash, block, ok) = wattstream_processor::chain::sign::send_now(conn, chains.handle(), tx)?;
        let status = if ok { "ok" } else { "reverted" };
        println!(
            "sent     chain {} tx {hash} in block {block}: {status}",
            tx.chain_id
        );
        if !ok {
            code = 1;
        }
    }
    Ok(code)
}
