//! Reads of the ledger the dashboard shows: every balance at once (the fleet
//! page sorts by it), a device's rewards per epoch, the newest seals with
//! their totals. Each is one snapshot of the ledger, read off the async
//! runtime by the caller, and bounded: a page of epochs, never the whole
//! history.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use wattstream_sdk::DeviceId;
use wattstream_sdk::wire::SealView;

use super::Rewards;
use super::stored;
use crate::store::sql::{Tx, Val};

/// The most epochs one answer holds.
pub const MAX_EPOCHS: u32 = 200;

/// A device's credits in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceEpoch {
    pub epoch: u64,
    /// Token units, decimal (a u128 does not fit a JSON number).
    pub units: String,
    /// The same in tokens (1e18 units), for charts.
    pub tokens: f64,
    /// Whether a seal covers this epoch (its total can no longer change).
    pub sealed: bool,
}

/// A sealed epoch with what it paid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochSummary {
    #[serde(flatten)]
    pub seal: SealView,
    /// Devices credited in the epoch.
    pub devices: u64,
    /// Units credited in the epoch, decimal.
    pub total_units: String,
    pub total_tokens: f64,
}

fn tokens(units: u128) -> f64 {
    units as f64 / 1e18
}

impl Rewards {
    /// `rewards.epoch_s`.
    pub fn epoch_s(&self) -> u64 {
        self.config.epoch_s
    }

    /// Every address's balance, keyed by device id (lowercase hex, no `0x`).
    pub fn balances(&self) -> anyhow::Result<HashMap<String, u128>> {
        let rows = self
            .conns
            .read(|c| stored::address_amounts(c, "SELECT address, balance FROM ledger_balances", &[]))?;
        Ok(rows.into_iter().map(|(a, b)| (hex::encode(a), b)).collect())
    }

    /// The device's credits per epoch, newest first, at most `limit` epochs.
    pub fn device_epochs(&self, id: &DeviceId, limit: u32) -> anyhow::Result<Vec<DeviceEpoch>> {
        let address = stored::address_text(&id.0);
        let limit = limit.clamp(1, MAX_EPOCHS);
        let (rows, sealed) = self.conns.read(|c| -> anyhow::Result<_> {
            let tx = Tx::read(c)?;
            let rows = tx.rows(
                "SELECT epoch, total FROM ledger_totals WHERE address = ?1 ORDER BY epoch DESC LIMIT ?2",
                &[Val::Text(address.clone()), Val::Int(limit.into())],
            )?;
            let rows = rows
                .iter()
                .map(|r| Ok((r[0].int(0)? as u64, r[1].amount(1)?)))
                .collect::<Result<Vec<_>, crate::store::sql::SqlError>>()?;
            Ok((rows, stored::seal_of(&*tx, None)?.map(|s| s.epoch)))
        })?;
        Ok(rows
            .into_iter()
            .map(|(epoch, units)| DeviceEpoch {
                epoch,
                units: units.to_string(),
                tokens: tokens(units),
                sealed: sealed.is_some_and(|s| epoch <= s),
            })
            .collect())
    }

    /// The newest `limit` seals with their totals, newest first.
    pub fn epochs(&self, limit: u32) -> anyhow::Result<Vec<EpochSummary>> {
        let limit = limit.clamp(1, MAX_EPOCHS);
        let (seals, totals) = self.conns.read(|c| -> anyhow::Result<_> {
            let tx = Tx::read(c)?;
            let seals = stored::seals_newest(&*tx, limit)?;
            let (Some(newest), Some(oldest)) = (seals.first(), seals.last()) else {
                return Ok((seals, BTreeMap::new()));
            };
            let mut totals: BTreeMap<u64, (u64, u128)> = BTreeMap::new();
            for r in tx.rows(
                "SELECT epoch, total FROM ledger_totals WHERE epoch >= ?1 AND epoch <= ?2",
                &[Val::Int(oldest.epoch as i64), Val::Int(newest.epoch as i64)],
            )? {
                let t = totals.entry(r[0].int(0)? as u64).or_default();
                t.0 += 1;
                t.1 = t.1.saturating_add(r[1].amount(1)?);
            }
            Ok((seals, totals))
        })?;
        Ok(seals
            .into_iter()
            .map(|s| {
                let (devices, units) = totals.get(&s.epoch).copied().unwrap_or_default();
                EpochSummary {
                    seal: s.view(),
                    devices,
                    total_units: units.to_string(),
                    total_tokens: tokens(units),
                }
            })
            .collect())
    }
}
