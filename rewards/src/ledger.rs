//! The ledger: credits in, hash-chained entries and signed seals out. The
//! processor keeps one of these in step with its store; replay builds a fresh
//! one from re-run applets and compares the seals.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use wattstream_sdk::proof::{SealView, seal_message};
use wattstream_sdk::{DeviceKey, PublicKey, Signature, VerifyPath};

use crate::book::{Book, leaves};
use crate::merkle::{Leaf, Tree};

/// A mint an applet made, tied to the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub event_id: i64,
    pub applet: String,
    pub applet_hash: String,
    /// Position among the applet's mints for this event.
    pub idx: u32,
    pub address: [u8; 20],
    pub amount: u128,
    /// The event's timestamp (window end), Unix seconds.
    pub timestamp: u64,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub epoch: u64,
    pub address: [u8; 20],
    pub amount: u128,
    pub event_id: i64,
    pub applet: String,
    pub applet_hash: String,
    pub idx: u32,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

impl Entry {
    /// The canonical bytes (crate docs).
    pub fn canonical(&self) -> Vec<u8> {
        format!(
            "wattstream-entry-v1\n{}\n{}\n0x{}\n{}\n{}\n{}\n{}\n{}\n",
            self.seq,
            self.epoch,
            hex::encode(self.address),
            self.amount,
            self.event_id,
            self.applet,
            self.applet_hash,
            self.idx
        )
        .into_bytes()
    }

    /// `SHA-256(prev || canonical)`.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.prev);
        h.update(self.canonical());
        h.finalize().into()
    }
}

/// A sealed epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub epoch: u64,
    /// The last entry the seal covers (0: none).
    pub upto_seq: u64,
    pub head: [u8; 32],
    pub root: [u8; 32],
    pub signature: [u8; 64],
    /// The processor's public key, SEC1 hex.
    pub public_key: String,
    /// The epoch length and per-device cap in force when the epoch was
    /// sealed (`None` for seals stored before they were recorded): a later
    /// change of the configuration applies to later epochs only.
    pub epoch_s: Option<u64>,
    pub cap: Option<u128>,
}

impl Seal {
    /// Whether the signature holds under the seal's own key.
    pub fn signature_ok(&self) -> bool {
        let Ok(key) = PublicKey::from_hex(&self.public_key) else {
            return false;
        };
        VerifyPath::Fast
            .verify(
                &key,
                &seal_message(self.epoch, self.upto_seq, &self.head, &self.root),
                &Signature(self.signature),
            )
            .is_ok()
    }

    /// As the API shows it.
    pub fn view(&self) -> SealView {
        SealView {
            epoch: self.epoch,
            upto_seq: self.upto_seq,
            head: hex::encode(self.head),
            root: hex::encode(self.root),
            signature: hex::encode(self.signature),
            public_key: self.public_key.clone(),
        }
    }
}

/// The ledger in memory: every entry and seal, and a [`Book`] that holds every
/// total and balance. Replay and the tests use it; the processor keeps its
/// ledger in the store and runs the same [`Book`] rule page by page.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub epoch_s: u64,
    /// Most units a device earns per epoch.
    pub cap: u128,
    pub entries: Vec<Entry>,
    pub seals: Vec<Seal>,
    book: Book,
    /// The newest seal's tree, built once when it is sealed (or resumed), so
    /// a proof is O(log n) and not a rebuild from every entry.
    latest_tree: Option<Tree>,
    /// Whether `entries` keeps every entry ([`Ledger::without_entries`] does not).
    keep: bool,
    /// The last entry made, when entries are not kept.
    last: Option<Entry>,
    /// Entries made.
    entered: u64,
}

impl Ledger {
    pub fn new(epoch_s: u64, cap: u128) -> Self {
        let book = Book::new(epoch_s, cap);
        Ledger {
            epoch_s: book.epoch_s,
            cap,
            entries: Vec::new(),
            seals: Vec::new(),
            book,
            latest_tree: None,
            keep: true,
            last: None,
            entered: 0,
        }
    }

    /// A ledger that keeps no entries, only what the accrual rule and the
    /// seals need (a balance per address, the totals of open epochs): replay
    /// of a long stream in memory that does not grow with it. Credits must
    /// come once each (see [`Ledger::forget_seen`]).
    pub fn without_entries(epoch_s: u64, cap: u128) -> Self {
        Ledger {
            keep: false,
            ..Ledger::new(epoch_s, cap)
        }
    }

    /// Forgets which credits were entered. Only for a source that cannot
    /// present a credit twice (a fresh project database, whose credits are
    /// keyed by event, applet and index): the set would otherwise grow with
    /// every credit.
    pub fn forget_seen(&mut self) {
        self.book.present.clear();
    }

    /// Entries made (also when they are not kept).
    pub fn entered(&self) -> u64 {
        self.entered
    }

    /// A ledger continuing from stored entries and seals (already verified).
    pub fn resume(epoch_s: u64, cap: u128, entries: Vec<Entry>, seals: Vec<Seal>) -> Self {
        let mut l = Ledger::new(epoch_s, cap);
        for e in &entries {
            l.book.present.insert((e.event_id, e.applet.clone(), e.idx));
            *l.book.totals.entry((e.epoch, e.address)).or_default() += e.amount;
            *l.book.balances.entry(e.address).or_default() += e.amount;
            l.book.head = (e.seq, e.hash);
        }
        l.book.last_sealed = seals.last().map(|s| s.epoch);
        l.entered = entries.len() as u64;
        l.entries = entries;
        l.seals = seals;
        l.latest_tree = l.seals.last().map(|s| l.tree(s));
        l
    }

    /// The newest sealed epoch.
    pub fn last_sealed(&self) -> Option<u64> {
        self.book.last_sealed
    }

    /// The chain head: `(seq, hash)`; `(0, zeros)` when empty.
    pub fn head(&self) -> (u64, [u8; 32]) {
        self.book.head
    }

    /// Enters a credit ([`Book::credit`]). Returns the new entry, or `None`
    /// when it was seen before or nothing was left under the cap.
    pub fn credit(&mut self, c: &Credit) -> Option<&Entry> {
        let e = self.book.credit(c)?;
        self.entered += 1;
        if self.keep {
            self.entries.push(e);
            self.entries.last()
        } else {
            self.last = Some(e);
            self.last.as_ref()
        }
    }

    /// Leaves as of entry `upto_seq` for `epoch`, recomputed from `entries`.
    pub fn leaves(entries: &[Entry], upto_seq: u64, epoch: u64) -> Vec<Leaf> {
        let mut by: BTreeMap<[u8; 20], (u128, u128)> = BTreeMap::new();
        for e in entries.iter().take_while(|e| e.seq <= upto_seq) {
            let v = by.entry(e.address).or_default();
            v.1 = v.1.saturating_add(e.amount);
            if e.epoch == epoch {
                v.0 = v.0.saturating_add(e.amount);
            }
        }
        by.into_iter()
            .map(|(address, (epoch_total, balance))| Leaf {
                address,
                epoch_total,
                balance,
            })
            .collect()
    }

    /// The tree of a seal, recomputed from the entries.
    pub fn tree(&self, seal: &Seal) -> Tree {
        Tree::build(Self::leaves(&self.entries, seal.upto_seq, seal.epoch), seal.epoch)
    }

    /// Seals `epoch` (which must be newer than the last sealed one) over every
    /// entry so far, signed with `key`.
    pub fn seal(&mut self, epoch: u64, key: &DeviceKey) -> &Seal {
        let book = &self.book;
        let tree = Tree::build(
            leaves(&book.balances, |a| {
                book.totals.get(&(epoch, *a)).copied().unwrap_or(0)
            }),
            epoch,
        );
        let seal = sign_seal(
            epoch,
            self.book.head,
            &tree,
            self.epoch_s,
            self.cap,
            key,
            self.last_sealed(),
        );
        self.book.last_sealed = Some(epoch);
        // No credit can land in a sealed epoch any more: its totals are done.
        self.book.totals.retain(|(e, _), _| *e > epoch);
        self.latest_tree = Some(tree);
        self.seals.push(seal);
        self.seals.last().expect("just pushed")
    }

    /// Balance of `address` over every entry.
    pub fn balance(&self, address: &[u8; 20]) -> u128 {
        self.book.balances.get(address).copied().unwrap_or(0)
    }

    /// The tree of the newest seal (the one proofs are served from).
    pub fn latest_tree(&self) -> Option<&Tree> {
        self.latest_tree.as_ref()
    }
}

/// The seal of `epoch` over the chain up to `head`, whose leaves make `tree`:
/// what the in-memory ledger and a store both sign. `last_sealed` is the
/// newest epoch sealed before; epochs are sealed in order.
pub fn sign_seal(
    epoch: u64,
    head: (u64, [u8; 32]),
    tree: &Tree,
    epoch_s: u64,
    cap: u128,
    key: &DeviceKey,
    last_sealed: Option<u64>,
) -> Seal {
    assert!(
        last_sealed.is_none_or(|s| epoch > s),
        "epochs are sealed in order"
    );
    let (upto_seq, head) = head;
    let root = tree.root();
    let signature = key.sign(&seal_message(epoch, upto_seq, &head, &root)).0;
    Seal {
        epoch,
        upto_seq,
        head,
        root,
        signature,
        public_key: key.public_key().to_hex(),
        epoch_s: Some(epoch_s),
        cap: Some(cap),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A credit of `amount` for the address of 20 `address` bytes.
    pub(crate) fn credit(event_id: i64, address: u8, amount: u128, timestamp: u64) -> Credit {
        Credit {
            event_id,
            applet: "rewards".into(),
            applet_hash: "ab".into(),
            idx: 0,
            address: [address; 20],
            amount,
            timestamp,
        }
    }

    #[test]
    fn credits_chain_and_never_enter_twice() {
        let mut l = Ledger::new(3600, u128::MAX);
        assert!(l.credit(&credit(1, 1, 10, 100)).is_some());
        assert!(
            l.credit(&credit(1, 1, 10, 100)).is_none(),
            "same event, applet, index"
        );
        assert!(l.credit(&credit(2, 1, 5, 200)).is_some());
        assert_eq!(l.entries[1].prev, l.entries[0].hash);
        assert_eq!(l.balance(&[1; 20]), 15);
    }

    #[test]
    fn the_cap_holds_per_device_per_epoch() {
        let mut l = Ledger::new(3600, 25);
        for i in 0..10 {
            l.credit(&credit(i, 1, 10, 100 + i as u64));
        }
        assert_eq!(l.balance(&[1; 20]), 25);
        l.credit(&credit(100, 1, 10, 3700));
        assert_eq!(l.balance(&[1; 20]), 35, "a new epoch, a new cap");
        l.credit(&credit(101, 2, 10, 100));
        assert_eq!(l.balance(&[2; 20]), 10, "per device");
    }

    #[test]
    fn late_credits_go_to_the_oldest_open_epoch() {
        let key = DeviceKey::generate();
        let mut l = Ledger::new(10, u128::MAX);
        l.credit(&credit(1, 1, 10, 5));
        l.seal(0, &key);
        let e = l.credit(&credit(2, 1, 10, 7)).unwrap();
        assert_eq!(e.epoch, 1);
        assert!(l.seals[0].signature_ok());
    }

    #[test]
    fn kept_balances_and_the_kept_tree_match_a_rebuild_from_every_entry() {
        let key = DeviceKey::generate();
        let mut l = Ledger::new(10, 50);
        let mut x = 7u64;
        for event in 1..400i64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let address = (x >> 60) as u8;
            l.credit(&credit(event, address, u128::from((x >> 40) % 20), event as u64));
            if event % 97 == 0 {
                let epoch = l.entries.last().unwrap().epoch;
                if l.last_sealed().is_none_or(|s| epoch > s) {
                    l.seal(epoch, &key);
                }
            }
        }
        let check = |l: &Ledger| {
            for a in 0..16u8 {
                let scanned: u128 = l
                    .entries
                    .iter()
                    .filter(|e| e.address == [a; 20])
                    .map(|e| e.amount)
                    .sum();
                assert_eq!(l.balance(&[a; 20]), scanned, "address {a}");
            }
            let seal = l.seals.last().expect("some epochs were sealed");
            let kept = l.latest_tree().expect("a kept tree");
            assert_eq!(kept.root(), seal.root);
            assert_eq!(kept.root(), l.tree(seal).root());
        };
        check(&l);
        let resumed = Ledger::resume(10, 50, l.entries.clone(), l.seals.clone());
        check(&resumed);
    }

    #[test]
    fn a_ledger_without_entries_seals_the_same_roots() {
        let key = DeviceKey::generate();
        let (mut kept, mut lean) = (Ledger::new(10, 50), Ledger::without_entries(10, 50));
        for event in 1..300i64 {
            let c = credit(event, (event % 7) as u8, (event % 13) as u128, event as u64);
            let a = kept.credit(&c).cloned();
            assert_eq!(lean.credit(&c).cloned(), a);
            lean.forget_seen();
            if event % 50 == 0 {
                let epoch = kept.head().0.max(1) / 10;
                if kept.last_sealed().is_none_or(|s| epoch > s) {
                    assert_eq!(kept.seal(epoch, &key).root, lean.seal(epoch, &key).root);
                }
            }
        }
        assert_eq!(lean.entered(), kept.entries.len() as u64);
        assert!(lean.entries.is_empty());
        assert!(kept.seals.len() >= 3);
    }
}
