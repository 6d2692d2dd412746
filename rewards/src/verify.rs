//! Recomputing a ledger from its stored entries and seals: the chain, the cap,
//! and every seal's head, root and signature. The first thing that does not hold
//! is named.
//!
//! [`Verifier`] takes the entries as a stream, so checking a ledger of any
//! length holds only one balance per address and the totals of the epochs not
//! yet sealed, never the entries. It can start from a checkpoint (a seal
//! verified before, with the balances its leaves carry): that is how a
//! processor checks at startup only what was written since.

use std::collections::{BTreeMap, HashMap};

use wattstream_sdk::PublicKey;

use crate::book::leaves;
use crate::ledger::{Entry, Seal};
use crate::merkle::Tree;

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("entry {seq}: {reason}")]
    Entry { seq: u64, reason: String },
    #[error("epoch {epoch}: {reason}")]
    Seal { epoch: u64, reason: String },
    /// A row kept beside the entries (a balance, a total, a seal's leaves)
    /// that the entries do not give.
    #[error("{what}: {reason}")]
    Derived { what: String, reason: String },
}

/// Where a verification resumes: the state of the ledger right after the seal
/// of `epoch` (which covers entries up to `seq`, whose hash is `hash`).
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub epoch: u64,
    pub seq: u64,
    pub hash: [u8; 32],
    /// Every address's balance at `seq` (the seal's leaves).
    pub balances: HashMap<[u8; 20], u128>,
    /// Totals at `seq` of epochs after `epoch` (credits entered before the seal
    /// into the next epochs).
    pub open_totals: HashMap<(u64, [u8; 20]), u128>,
}

/// A streaming verifier: [`Verifier::push`] every entry in order, then
/// [`Verifier::finish`].
pub struct Verifier<'k> {
    cap: u128,
    processor: Option<&'k PublicKey>,
    /// Seals not checked yet, by the entries they cover.
    seals: Vec<Seal>,
    next_seal: usize,
    sealed_caps: BTreeMap<u64, u128>,
    sealed_max: Option<u64>,
    seq: u64,
    prev: [u8; 32],
    totals: HashMap<(u64, [u8; 20]), u128>,
    balances: HashMap<[u8; 20], u128>,
    entries: u64,
    /// When kept: the tree of every seal checked, until taken.
    trees: Option<Vec<(Seal, Tree)>>,
}

impl<'k> Verifier<'k> {
    /// From the start of the ledger. `cap` applies to epochs not sealed yet; a
    /// sealed epoch is held to the cap recorded in its seal; `processor` pins
    /// the key seals must be signed with.
    pub fn new(seals: Vec<Seal>, cap: u128, processor: Option<&'k PublicKey>) -> Self {
        Self::resume(Checkpoint::default(), None, seals, cap, processor)
    }

    /// From a checkpoint (`None`: the start); `seals` are those after it.
    pub fn resume(
        from: Checkpoint,
        sealed: Option<u64>,
        mut seals: Vec<Seal>,
        cap: u128,
        processor: Option<&'k PublicKey>,
    ) -> Self {
        let sealed_caps = seals.iter().filter_map(|s| Some((s.epoch, s.cap?))).collect();
        seals.sort_by_key(|s| (s.upto_seq, s.epoch));
        Verifier {
            cap,
            processor,
            seals,
            next_seal: 0,
            sealed_caps,
            sealed_max: sealed,
            seq: from.seq,
            prev: from.hash,
            totals: from.open_totals,
            balances: from.balances,
            entries: 0,
            trees: None,
        }
    }

    /// Keeps the tree of each seal checked, for [`Verifier::take_trees`] (a
    /// store rebuilding its seals' leaves from the entries).
    pub fn keep_trees(mut self) -> Self {
        self.trees = Some(Vec::new());
        self
    }

    /// The seals checked since the last call, with their trees.
    pub fn take_trees(&mut self) -> Vec<(Seal, Tree)> {
        self.trees.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The next entry.
    pub fn push(&mut self, e: &Entry) -> Result<(), Tamper> {
        self.check_seals(e.seq)?;
        let bad = |reason: &str| Tamper::Entry {
            seq: e.seq,
            reason: reason.to_string(),
        };
        if e.seq != self.seq + 1 {
            return Err(bad("sequence number out of order"));
        }
        if e.prev != self.prev {
            return Err(bad("previous hash does not match the entry before"));
        }
        if e.hash != e.compute_hash() {
            return Err(bad("hash does not match its contents"));
        }
        if self.sealed_max.is_some_and(|m| e.epoch <= m) {
            return Err(bad("credited to an epoch that was already sealed"));
        }
        let t = self.totals.entry((e.epoch, e.address)).or_default();
        *t = t.saturating_add(e.amount);
        if *t > self.sealed_caps.get(&e.epoch).copied().unwrap_or(self.cap) {
            return Err(bad("device total in the epoch is above the cap"));
        }
        let b = self.balances.entry(e.address).or_default();
        *b = b.saturating_add(e.amount);
        self.seq = e.seq;
        self.prev = e.hash;
        self.entries += 1;
        Ok(())
    }

    /// Checks the seals left (a seal covering entries that were never pushed
    /// is an error). Returns the entries and seals checked.
    pub fn finish(mut self) -> Result<Finished, Tamper> {
        self.check_seals(u64::MAX)?;
        Ok(Finished {
            entries: self.entries,
            seals: self.next_seal,
            head: (self.seq, self.prev),
            last_sealed: self.sealed_max,
            balances: self.balances,
            totals: self.totals,
            trees: self.trees.unwrap_or_default(),
        })
    }

    /// Checks every seal that covers fewer entries than `before`.
    fn check_seals(&mut self, before: u64) -> Result<(), Tamper> {
        while let Some(s) = self.seals.get(self.next_seal).filter(|s| s.upto_seq < before) {
            let bad = |reason: &str| Tamper::Seal {
                epoch: s.epoch,
                reason: reason.to_string(),
            };
            if self.sealed_max.is_some_and(|m| s.epoch <= m) {
                return Err(bad("sealed out of order"));
            }
            if s.upto_seq > self.seq {
                return Err(bad("covers entries that do not exist"));
            }
            if s.upto_seq < self.seq || s.head != self.prev {
                return Err(bad("chain head does not match the entries"));
            }
            let totals = &self.totals;
            let tree = Tree::build(
                leaves(&self.balances, |a| {
                    totals.get(&(s.epoch, *a)).copied().unwrap_or(0)
                }),
                s.epoch,
            );
            if tree.root() != s.root {
                return Err(bad("Merkle root does not match the entries"));
            }
            if !s.signature_ok() {
                return Err(bad("signature does not verify"));
            }
            if let Some(p) = self.processor
                && PublicKey::from_hex(&s.public_key).ok().as_ref() != Some(p)
            {
                return Err(bad("signed by another key than the processor's"));
            }
            let sealed = s.epoch;
            if let Some(trees) = &mut self.trees {
                trees.push((s.clone(), tree));
            }
            self.sealed_max = Some(sealed);
            // No entry may land in a sealed epoch any more: its totals are done.
            self.totals.retain(|(epoch, _), _| *epoch > sealed);
            self.next_seal += 1;
        }
        Ok(())
    }
}

/// What a verification that held saw.
#[derive(Debug, Clone)]
pub struct Finished {
    pub entries: u64,
    pub seals: usize,
    pub head: (u64, [u8; 32]),
    pub last_sealed: Option<u64>,
    /// Every address's balance at the head.
    pub balances: HashMap<[u8; 20], u128>,
    /// The totals of the epochs not sealed yet.
    pub totals: HashMap<(u64, [u8; 20]), u128>,
    /// Kept trees not taken yet ([`Verifier::keep_trees`]).
    pub trees: Vec<(Seal, Tree)>,
}

/// Verifies everything in memory (see [`Verifier`]).
pub fn verify_ledger(
    entries: &[Entry],
    seals: &[Seal],
    cap: u128,
    processor: Option<&PublicKey>,
) -> Result<(), Tamper> {
    let mut v = Verifier::new(seals.to_vec(), cap, processor);
    for e in entries {
        v.push(e)?;
    }
    v.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Credit, Ledger};
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

    /// The state right after `seal`, as a store has it: the seal's leaves and
    /// the entries before it that went into later epochs.
    fn checkpoint(l: &Ledger, seal: &Seal) -> Checkpoint {
        let tree = l.tree(seal);
        Checkpoint {
            epoch: seal.epoch,
            seq: seal.upto_seq,
            hash: seal.head,
            balances: tree.leaves.iter().map(|x| (x.address, x.balance)).collect(),
            open_totals: l.entries[..seal.upto_seq as usize]
                .iter()
                .filter(|e| e.epoch > seal.epoch)
                .fold(HashMap::new(), |mut m, e| {
                    *m.entry((e.epoch, e.address)).or_default() += e.amount;
                    m
                }),
        }
    }

    #[test]
    fn a_verification_resumed_from_a_seal_checks_what_came_after_it() {
        let key = DeviceKey::generate();
        let l = sample(&key);
        let first = l.seals[0].clone();
        let after: Vec<Seal> = l.seals[1..].to_vec();
        let resumed = |entries: &[Entry]| {
            let mut v = Verifier::resume(
                checkpoint(&l, &first),
                Some(first.epoch),
                after.clone(),
                l.cap,
                Some(key.public_key()),
            );
            for e in &entries[first.upto_seq as usize..] {
                v.push(e)?;
            }
            v.finish()
        };
        let done = resumed(&l.entries).unwrap();
        assert_eq!(done.entries, l.entries.len() as u64 - first.upto_seq);
        assert_eq!(done.seals, after.len());
        assert_eq!(done.head, l.head());
        for a in 0..4u8 {
            assert_eq!(done.balances[&[a; 20]], l.balance(&[a; 20]));
        }
        // A change after the checkpoint is found; one before it is not this
        // check's to find (a full `verify_ledger` does).
        let mut entries = l.entries.clone();
        let last = entries.len() - 1;
        entries[last].amount += 1;
        assert!(matches!(resumed(&entries), Err(Tamper::Entry { .. })));
        let mut entries = l.entries.clone();
        entries[0].amount += 1;
        assert!(resumed(&entries).is_ok());
        assert!(verify_ledger(&entries, &l.seals, l.cap, None).is_err());
    }

    #[test]
    fn a_seal_that_covers_fewer_entries_than_an_earlier_epoch_is_out_of_order() {
        let key = DeviceKey::generate();
        let l = sample(&key);
        let mut seals = l.seals.clone();
        // Epoch numbers swapped between the first two seals, re-signed.
        let (a, b) = (seals[0].epoch, seals[1].epoch);
        let mut early = Ledger::resume(10, 1000, l.entries[..seals[0].upto_seq as usize].to_vec(), vec![]);
        seals[0] = early.seal(b, &key).clone();
        let mut late = Ledger::resume(10, 1000, l.entries[..seals[1].upto_seq as usize].to_vec(), vec![]);
        seals[1] = late.seal(a, &key).clone();
        seals.sort_by_key(|s| s.epoch);
        assert!(matches!(
            verify_ledger(&l.entries, &seals, l.cap, None),
            Err(Tamper::Seal { .. }) | Err(Tamper::Entry { .. })
        ));
    }
}
