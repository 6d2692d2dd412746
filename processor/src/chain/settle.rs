//! `wattstream rewards settle`: puts on chain what the store has sealed and
//! the chain does not have yet. The store is the truth; the chain is brought
//! up to it, so running settle again (after a crash, or on a schedule) sends
//! only what is missing:
//!
//! 1. **Owners by epoch.** For each device, who owns it from which epoch on:
//!    the spans its bindings records prove (`onboarding::record`), or, for a
//!    device registered by the admin with an EVM address as its owner and no
//!    records, that address from the start (nobody else ever owned it). The
//!    distributor is asked for all of them in calls of [`BATCH`] (`ownersAt`);
//!    from a device's first span it answers differently, that device's spans
//!    are sent, in order, in transactions of [`BATCH`] changes (`setOwners`).
//!    Devices with no EVM owner are left out: their totals stay unclaimable,
//!    because a payout never goes to a device's key hash.
//! 2. **Roots.** Each sealed epoch whose root the distributor does not hold
//!    (`rootOf` is zero) is published (`settle`), oldest first. Owners go
//!    first so a claim made right after a root lands pays the right owner.

use alloy::primitives::{Address, FixedBytes};
use alloy::providers::DynProvider;
use anyhow::Context;

use super::contracts::EpochDistributor;
use crate::onboarding::record::{Span, verify_chain};
use crate::store::sql::{Sql, Val};

/// What the store says must be on chain.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(epoch, root)` of every seal, oldest first.
    pub roots: Vec<(u64, [u8; 32])>,
    /// Devices with an EVM owner, and who owns them from which epoch.
    pub owners: Vec<DeviceOwners>,
}

/// A device's owners by epoch.
#[derive(Debug, PartialEq, Eq)]
pub struct DeviceOwners {
    pub device: [u8; 20],
    /// `(from epoch, owner)`, oldest first; the zero address after an unbinding.
    pub spans: Vec<(u64, Address)>,
}

/// What one settle run sent.
#[derive(Debug, Default)]
pub struct Sent {
    /// `(epoch, transaction hash)` of each root published.
    pub roots: Vec<(u64, String)>,
    /// `(device, from epoch, owner, transaction hash)` of each owner change.
    pub owners: Vec<(String, u64, Address, String)>,
}

fn evm(owner: &str) -> Option<Address> {
    let hex = owner.strip_prefix("0x")?;
    if hex.len() != 40 {
        return None;
    }
    owner.parse().ok()
}

/// Reads the plan from a store.
pub fn plan(c: &dyn Sql) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    for s in crate::rewards::stored::seals_after(c, None)? {
        plan.roots.push((s.epoch, s.root));
    }
    let devices = c.rows("SELECT device_id, owner FROM devices ORDER BY device_id", &[])?;
    for d in devices {
        let id = d[0].text(0)?.to_string();
        let Some(address) = wattstream_sdk::DeviceId::from_hex(&id) else {
            continue;
        };
        let records = crate::onboarding::store::records(c, &id)?;
        let spans: Vec<Span> = if records.is_empty() {
            let owner = match &d[1] {
                Val::Text(t) => Some(t.clone()),
                _ => None,
            };
            owner
                .into_iter()
                .map(|o| Span {
                    from_epoch: 0,
                    owner: Some(o),
                })
                .collect()
        } else {
            verify_chain(&id, &records).with_context(|| format!("device {id}'s bindings do not verify"))?
        };
        let evm_spans: Vec<(u64, Address)> = spans
            .iter()
            .filter_map(|s| match &s.owner {
                None => Some((s.from_epoch, Address::ZERO)),
                Some(o) => evm(o).map(|a| (s.from_epoch, a)),
            })
            .collect();
        if evm_spans.iter().any(|(_, a)| *a != Address::ZERO) {
            plan.owners.push(DeviceOwners {
                device: address.0,
                spans: evm_spans,
            });
        }
    }
    Ok(plan)
}

/// Owner changes per `setOwners` transaction, and `(device, epoch)` pairs
/// per `ownersAt` call: a fleet's first settlement has a change per device,
/// and one transaction (or call) each would take hours on a real chain.
pub const BATCH: usize = 200;

/// The owner changes the distributor lacks, in order: for each device, its
/// spans from the first one the chain answers differently. (From there on
/// every span is sent: once an earlier one changes, what `ownerAt` answers
/// for a later epoch changes too, so the chain's answers before the change
/// cannot tell which later spans are already there.)
async fn owner_changes(
    d: &EpochDistributor::EpochDistributorInstance<&DynProvider>,
    plan: &Plan,
) -> anyhow::Result<Vec<(Address, u64, Address)>> {
    let spans: Vec<(Address, u64, Address)> = plan
        .owners
        .iter()
        .flat_map(|o| {
            o.spans
                .iter()
                .map(move |(from, owner)| (Address::from(o.device), *from, *owner))
        })
        .collect();
    let mut on_chain = Vec::with_capacity(spans.len());
    for chunk in spans.chunks(BATCH) {
        let devices = chunk.iter().map(|s| s.0).collect();
        let epochs = chunk.iter().map(|s| s.1).collect();
        on_chain.extend(d.ownersAt(devices, epochs).call().await?);
    }
    Ok(missing(&spans, &on_chain))
}

/// The spans to send, given what the chain answers for each span's epoch
/// before anything is sent (see [`owner_changes`]).
fn missing(spans: &[(Address, u64, Address)], on_chain: &[Address]) -> Vec<(Address, u64, Address)> {
    let mut changes = Vec::new();
    let mut differs: Option<Address> = None;
    for (span, now) in spans.iter().zip(on_chain) {
        if differs != Some(span.0) && *now != span.2 {
            differs = Some(span.0);
        }
        if differs == Some(span.0) {
            changes.push(*span);
        }
    }
    changes
}

/// Sends what `plan` has and the distributor at `distributor` does not.
pub async fn settle(provider: &DynProvider, distributor: Address, plan: &Plan) -> anyhow::Result<Sent> {
    let d = EpochDistributor::new(distributor, provider);
    let mut sent = Sent::default();
    for chunk in owner_changes(&d, plan).await?.chunks(BATCH) {
        let receipt = d
            .setOwners(
                chunk.iter().map(|c| c.0).collect(),
                chunk.iter().map(|c| c.2).collect(),
                chunk.iter().map(|c| c.1).collect(),
            )
            .send()
            .await?
            .get_receipt()
            .await?;
        anyhow::ensure!(receipt.status(), "setOwners reverted");
        let tx = receipt.transaction_hash.to_string();
        for (device, from, owner) in chunk {
            sent.owners.push((device.to_string(), *from, *owner, tx.clone()));
        }
    }
    for (epoch, root) in &plan.roots {
        if *root == [0; 32] {
            continue; // an epoch sealed with no leaves: nothing to claim
        }
        if d.rootOf(*epoch).call().await? != FixedBytes::ZERO {
            continue;
        }
        let receipt = d
            .settle(*epoch, FixedBytes::from(*root))
            .send()
            .await?
            .get_receipt()
            .await?;
        anyhow::ensure!(receipt.status(), "settle of epoch {epoch} reverted");
        sent.roots.push((*epoch, receipt.transaction_hash.to_string()));
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_first_span_the_chain_lacks_every_later_span_of_that_device_is_sent() {
        let (dev, other) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
        // Claimed by A at 5, unbound at 9, claimed by A again at 12; the chain has
        // nothing. Before anything is sent the chain answers "nobody" for epoch 9,
        // which is what the unbinding says: it must still be sent, after A@5.
        let spans = [(dev, 5, a), (dev, 9, Address::ZERO), (dev, 12, a), (other, 3, b)];
        let empty = [Address::ZERO; 4];
        assert_eq!(missing(&spans, &empty), spans.to_vec());
        // Everything there: nothing is sent (a second settle).
        assert_eq!(missing(&spans, &[a, Address::ZERO, a, b]), vec![]);
        // The chain has the first claim only: the rest of that device goes.
        assert_eq!(missing(&spans, &[a, a, a, b]), spans[1..3].to_vec());
    }
}
