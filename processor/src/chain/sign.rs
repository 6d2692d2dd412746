//! Signing an applet's transaction with a chain's key, within its gas and
//! fee caps, without sending it: the sender (`chain::sender`) stores the
//! bytes before it broadcasts them. And `send_now`, for `wattstream applet
//! run --chain`, where there is no outbox.

use std::future::IntoFuture;
use std::time::Duration;

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::Provider;
use anyhow::Context;

use super::adapter::{Conn, TxRequest};

/// `f` on `rt` within 30 s, its error named by `what`. Blocks: call from a
/// thread outside the async runtime.
pub(crate) fn block_on<T, E: std::fmt::Display>(
    rt: &tokio::runtime::Handle,
    what: &str,
    f: impl IntoFuture<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    let within = Duration::from_secs(30);
    let f = f.into_future();
    match rt.block_on(async { tokio::time::timeout(within, f).await }) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::anyhow!("{what}: {e}")),
        Err(_) => Err(anyhow::anyhow!("{what}: no answer within {within:?}")),
    }
}

/// Signs `(to, value, data)` (as stored: `0x` hex, decimal wei, `0x` hex)
/// with `nonce`, within the chain's gas and fee caps: the raw transaction
/// and its hash. Nothing is sent.
pub(crate) fn sign(
    conn: &Conn,
    rt: &tokio::runtime::Handle,
    (to, value, data): (&str, &str, &str),
    nonce: u64,
) -> anyhow::Result<(Vec<u8>, B256)> {
    let (p, cfg) = (&conn.signer, &conn.config);
    let to: alloy::primitives::Address = to.parse().context("the stored `to`")?;
    let value = U256::from_str_radix(value, 10).context("the stored value")?;
    let data = hex::decode(data.trim_start_matches("0x")).context("the stored data")?;
    let mut req = TxRequest::default()
        .with_from(conn.address)
        .with_to(to)
        .with_value(value)
        .with_input(Bytes::from(data))
        .with_nonce(nonce)
        .with_chain_id(conn.id);
    let gas = block_on(rt, "eth_estimateGas", p.estimate_gas(req.clone()))?;
    anyhow::ensure!(
        gas <= cfg.max_gas,
        "the transaction needs {gas} gas, more than max_gas = {}",
        cfg.max_gas
    );
    req.set_gas_limit(gas);
    let cap = cfg
        .max_fee_gwei
        .map_or(u128::MAX, |g| u128::from(g).saturating_mul(1_000_000_000));
    match block_on(rt, "fees", p.estimate_eip1559_fees()) {
        Ok(f) => {
            req.set_max_fee_per_gas(f.max_fee_per_gas.min(cap));
            req.set_max_priority_fee_per_gas(f.max_priority_fee_per_gas.min(cap));
        }
        // No base fee: a legacy gas price.
        Err(_) => {
            let price = block_on(rt, "eth_gasPrice", p.get_gas_price())?;
            req.set_gas_price(price.min(cap));
        }
    }
    let envelope = block_on(rt, "signing", req.build(&conn.wallet))?;
    Ok((envelope.encoded_2718(), *envelope.tx_hash()))
}

/// Signs and sends `tx` now and waits for its receipt (`wattstream applet
/// run --chain`, where no outbox exists): its hash, block and status.
pub fn send_now(
    conn: &Conn,
    rt: &tokio::runtime::Handle,
    tx: &super::adapter::TxIntent,
) -> anyhow::Result<(B256, u64, bool)> {
    let p = &conn.signer;
    let nonce = block_on(
        rt,
        "eth_getTransactionCount",
        p.get_transaction_count(conn.address).pending(),
    )?;
    let (raw, hash) = sign(conn, rt, (&tx.to, &tx.value, &tx.data), nonce)?;
    let pending = block_on(rt, "eth_sendRawTransaction", p.send_raw_transaction(&raw))?;
    let receipt = block_on(rt, "waiting for the receipt", pending.get_receipt())?;
    Ok((hash, receipt.block_number.unwrap_or(0), receipt.status()))
}
