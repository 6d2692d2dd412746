//! Recomputing a ledger from its stored entries and seals: the chain, the cap,
//! and every seal's head, root and signature. The first thing that does not hold
//! is named.

use std::collections::BTreeMap;

use wattstream_sdk::PublicKey;

use crate::ledger::{Entry, Ledger, Seal};
use crate::merkle::Tree;

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("entry {seq}: {reason}")]
    Entry { seq: u64, reason: String },
    #[error("epoch {epoch}: {reason}")]
    Seal { epoch: u64, reason: String },
}

/// Verifies everything; `processor` pins the key seals must be signed with.
/// `cap` applies to epochs not sealed yet; a sealed epoch is held to the cap
/// recorded in its seal.
pub fn verify_ledger(
    entries: &[Entry],
    seals: &[Seal],
    cap: u128,
    processor: Option<&PublicKey>,
) -> Result<(), Tamper> {
    let mut prev = [0u8; 32];
    let mut totals: BTreeMap<(u64, [u8; 20]), u128> = BTreeMap::new();
    let sealed_caps: BTreeMap<u64, u128> = seals.iter().filter_map(|s| Some((s.epoch, s.cap?))).collect();
    // Seals by the entries they cover: a later entry may not land in an epoch
    // sealed before it (late credits go to the oldest open epoch).
    let mut by_coverage: Vec<&Seal> = seals.iter().collect();
    by_coverage.sort_by_key(|s| s.upto_seq);
    let (mut next_seal, mut sealed_max): (usize, Option<u64>) = (0, None);
    for (i, e) in entries.iter().enumerate() {
        while let Some(s) = by_coverage.get(next_seal).filter(|s| s.upto_seq < e.seq) {
            sealed_max = sealed_max.max(Some(s.epoch));
            next_seal += 1;
        }
        let bad = |reason: &str| Tamper::Entry {
            seq: e.seq,
            reason: reason.to_string(),
        };
        if e.seq != i as u64 + 1 {
            return Err(bad("sequence number out of order"));
        }
        if e.prev != prev {
            return Err(bad("previous hash does not match the entry before"));
        }
        if e.hash != e.compute_hash() {
            return Err(bad("hash does not match its contents"));
        }
        if sealed_max.is_some_and(|m| e.epoch <= m) {
            return Err(bad("credited to an epoch that was already sealed"));
        }
        let t = totals.entry((e.epoch, e.address)).or_default();
        *t = t.saturating_add(e.amount);
        if *t > sealed_caps.get(&e.epoch).copied().unwrap_or(cap) {
            return Err(bad("device total in the epoch is above the cap"));
        }
        prev = e.hash;
    }
    let mut last_epoch: Option<u64> = None;
    for s in seals {
        let bad = |reason: &str| Tamper::Seal {
            epoch: s.epoch,
            reason: reason.to_string(),
        };
        if last_epoch.is_some_and(|l| s.epoch <= l) {
            return Err(bad("sealed out of order"));
        }
        last_epoch = Some(s.epoch);
        let head = match s.upto_seq {
            0 => [0u8; 32],
            n => entries
                .get(n as usize - 1)
                .map(|e| e.hash)
                .ok_or_else(|| bad("covers entries that do not exist"))?,
        };
        if head != s.head {
            return Err(bad("chain head does not match the entries"));
        }
        if Tree::build(Ledger::leaves(entries, s.upto_seq, s.epoch), s.epoch).root() != s.root {
            return Err(bad("Merkle root does not match the entries"));
        }
        if !s.signature_ok() {
            return Err(bad("signature does not verify"));
        }
        if let Some(p) = processor
            && PublicKey::from_hex(&s.public_key).ok().as_ref() != Some(p)
        {
            return Err(bad("signed by another key than the processor's"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Credit;
    use wattstream_sdk::DeviceKey;
    use wattstream_sdk::proof::{ProofView, verify};

    fn sample(key: &DeviceKey) -> Ledger {
        let mut l = Ledger::new(10, 1_000);
        for i in 0..30u8 {
            l.credit(&Credit {
                event_id: i as i64,
                applet: "tiered".into(),
                applet_hash: "h".into(),
                idx: 0,
                address: [i % 4; 20],
                amount: 7 + i as u128,
                timestamp: i as u64 * 2,
            });
            if i % 10 == 9 {
                l.seal(i as u64 / 5, key);
            }
        }
        l
    }

    #[test]
    fn an_honest_ledger_verifies_and_its_proofs_check() {
        let key = DeviceKey::generate();
        let l = sample(&key);
        verify_ledger(&l.entries, &l.seals, l.cap, Some(key.public_key())).unwrap();
        let seal = l.seals.last().unwrap();
        let tree = l.tree(seal);
        for d in 0..4u8 {
            let (leaf, steps) = tree.proof(&[d; 20]).unwrap();
            let proof = ProofView {
                address: format!("0x{}", hex::encode(leaf.address)),
                epoch_total: leaf.epoch_total.to_string(),
                balance: leaf.balance.to_string(),
                steps,
            };
            verify(&seal.view(), &proof, key.public_key()).unwrap();
            // One changed byte, or another key, and it does not.
            let mut forged = proof.clone();
            forged.balance = (leaf.balance + 1).to_string();
            assert!(verify(&seal.view(), &forged, key.public_key()).is_err());
            assert!(verify(&seal.view(), &proof, DeviceKey::generate().public_key()).is_err());
        }
    }

    #[test]
    fn a_credit_into_an_already_sealed_epoch_is_named_even_with_a_consistent_chain() {
        let key = DeviceKey::generate();
        let l = sample(&key);
        let first = &l.seals[0];
        let mut entries = l.entries.clone();
        let i = first.upto_seq as usize; // the first entry after the first seal
        entries[i].epoch = first.epoch;
        // Re-chain from there, as a forger with write access to the store would.
        for j in i..entries.len() {
            entries[j].prev = if j == 0 { [0; 32] } else { entries[j - 1].hash };
            entries[j].hash = entries[j].compute_hash();
        }
        match verify_ledger(&entries, &l.seals, u128::MAX, None) {
            Err(Tamper::Entry { seq, reason }) => {
                assert_eq!(seq, entries[i].seq);
                assert!(reason.contains("already sealed"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_changed_entry_or_seal_is_named() {
        let key = DeviceKey::generate();
        let l = sample(&key);
        for i in 0..l.entries.len() {
            let mut entries = l.entries.clone();
            entries[i].amount += 1;
            match verify_ledger(&entries, &l.seals, u128::MAX, None) {
                Err(Tamper::Entry { seq, .. }) => assert_eq!(seq, entries[i].seq),
                other => panic!("entry {i}: {other:?}"),
            }
        }
        for i in 0..l.seals.len() {
            let mut seals = l.seals.clone();
            seals[i].root[0] ^= 1;
            assert!(
                matches!(verify_ledger(&l.entries, &seals, l.cap, None), Err(Tamper::Seal { epoch, .. }) if epoch == seals[i].epoch)
            );
            let mut seals = l.seals.clone();
            let other = DeviceKey::generate();
            let forged = Ledger::resume(10, 1000, l.entries.clone(), Vec::new());
            let mut forged = forged;
            seals[i] = forged.seal(seals[i].epoch, &other).clone();
            assert!(verify_ledger(&l.entries, &seals, l.cap, Some(key.public_key())).is_err());
        }
    }
}
