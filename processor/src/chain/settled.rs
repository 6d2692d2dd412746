//! Whether a sealed epoch is settled on chain, as the dashboard's epochs
//! page shows it: the distributor's `rootOf(epoch)` read with an `eth_call`
//! (bounded by a timeout) and compared with the seal's root. A root on chain
//! that differs from the seal is shown as such, not as settled: that is the
//! one answer an operator must act on.

use std::time::Duration;

use alloy::primitives::Address;
use serde::Serialize;

use super::adapter::Conn;
use super::contracts::EpochDistributor;

/// An epoch's state on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Settlement {
    /// The distributor holds this seal's root: owners can claim.
    Settled,
    /// No root for the epoch yet (`rewards settle` has not sent it).
    NotSettled,
    /// The distributor holds another root.
    RootDiffers { on_chain: String },
    /// The chain did not answer.
    Unknown { error: String },
}

/// The settlement of `epoch`, whose seal's root is `root` (hex).
pub async fn settlement(
    conn: &Conn,
    distributor: Address,
    epoch: u64,
    root: &str,
    within: Duration,
) -> Settlement {
    let d = EpochDistributor::new(distributor, &conn.signer);
    match tokio::time::timeout(within, d.rootOf(epoch).call()).await {
        Err(_) => Settlement::Unknown {
            error: format!("chain {} did not answer within {within:?}", conn.id),
        },
        Ok(Err(e)) => Settlement::Unknown {
            error: format!("rootOf({epoch}) on chain {}: {e}", conn.id),
        },
        Ok(Ok(on_chain)) if on_chain.is_zero() => Settlement::NotSettled,
        Ok(Ok(on_chain)) if hex::encode(on_chain) == root.trim_start_matches("0x") => Settlement::Settled,
        Ok(Ok(on_chain)) => Settlement::RootDiffers {
            on_chain: hex::encode(on_chain),
        },
    }
}
