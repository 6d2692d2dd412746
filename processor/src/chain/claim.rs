//! `wattstream rewards claim`: a device owner (or anyone on their behalf)
//! claims a sealed epoch's total from the distributor, carrying the proof the
//! processor serves (`GET /v1/epochs/{n}/proofs/{device}`). The proof is
//! checked here first, against the pinned processor key, exactly as the meter
//! checks it; the contract checks the same path against the root it holds
//! and pays the device's owner in that epoch. A claim already made is not
//! sent again.

use alloy::primitives::{Address, FixedBytes};
use alloy::providers::DynProvider;
use anyhow::{Context, bail};
use wattstream_sdk::PublicKey;
use wattstream_sdk::proof::{ProofView, SealView, verify};

use super::contracts::EpochDistributor;

/// How a claim ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// Sent and mined: the transaction hash.
    Sent(String),
    /// Claimed before (by this or another run).
    Already,
}

fn h32(hex_text: &str) -> anyhow::Result<FixedBytes<32>> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_text.trim_start_matches("0x"), &mut b).context("not a 32-byte hash")?;
    Ok(FixedBytes::from(b))
}

/// The claim call's arguments, from a proof.
#[derive(Debug, Clone)]
pub struct ClaimCall {
    pub device: Address,
    pub epoch_total: u128,
    pub balance: u128,
    pub siblings: Vec<FixedBytes<32>>,
    pub lefts: Vec<bool>,
}

impl ClaimCall {
    pub fn of(proof: &ProofView) -> anyhow::Result<ClaimCall> {
        Ok(ClaimCall {
            device: proof.address.parse().context("proof address")?,
            epoch_total: proof.epoch_total.parse().context("epoch total")?,
            balance: proof.balance.parse().context("balance")?,
            siblings: proof
                .steps
                .iter()
                .map(|s| h32(&s.sibling))
                .collect::<anyhow::Result<Vec<_>>>()?,
            lefts: proof.steps.iter().map(|s| s.left).collect(),
        })
    }
}

/// Checks the proof against `pinned`, then claims `seal.epoch` for its device.
pub async fn claim(
    provider: &DynProvider,
    distributor: Address,
    seal: &SealView,
    proof: &ProofView,
    pinned: &PublicKey,
) -> anyhow::Result<Claimed> {
    verify(seal, proof, pinned).context("the proof does not verify against the processor key")?;
    let call = ClaimCall::of(proof)?;
    let d = EpochDistributor::new(distributor, provider);
    if d.claimed(seal.epoch, call.device).call().await? {
        return Ok(Claimed::Already);
    }
    if d.rootOf(seal.epoch).call().await? != h32(&seal.root)? {
        bail!(
            "epoch {} is not settled on chain with this root: run `wattstream rewards settle` first",
            seal.epoch
        );
    }
    let receipt = d
        .claim(
            seal.epoch,
            call.device,
            call.epoch_total,
            call.balance,
            call.siblings,
            call.lefts,
        )
        .send()
        .await?
        .get_receipt()
        .await?;
    if !receipt.status() {
        bail!("the claim reverted (transaction {})", receipt.transaction_hash);
    }
    Ok(Claimed::Sent(receipt.transaction_hash.to_string()))
}
