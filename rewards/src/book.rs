//! The accrual rule (crate docs, "Accrual") on just what one page of credits
//! needs to know about the ledger before it: the chain head, the newest sealed
//! epoch, the epoch totals and balances of the addresses the page touches, and
//! which of its credits were entered before.
//!
//! Why a page and not the whole ledger: a processor's ledger lives in its
//! store, and memory must not grow with the number of events. The store loads
//! a [`Book`] for each page ([`Book::needs`] says what to load), the rule runs
//! here, and the store writes back the entries and the changed totals and
//! balances in one transaction. The in-memory [`crate::Ledger`] (replay,
//! tests) runs the same rule on a book that holds everything, so there is one
//! rule for money, not one per engine.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ledger::{Credit, Entry};
use crate::merkle::Leaf;

/// What identifies a credit: the same one is never entered twice.
pub type CreditKey = (i64, String, u32);

/// The part of the ledger a page of credits reads and changes.
#[derive(Debug, Clone, Default)]
pub struct Book {
    pub epoch_s: u64,
    /// Most units a device earns per epoch.
    pub cap: u128,
    /// `(seq, hash)` of the newest entry; `(0, zeros)` when empty.
    pub head: (u64, [u8; 32]),
    pub last_sealed: Option<u64>,
    /// `(epoch, address)` → units credited (only the pairs loaded).
    pub totals: HashMap<(u64, [u8; 20]), u128>,
    /// address → balance over every entry (only the addresses loaded).
    pub balances: HashMap<[u8; 20], u128>,
    /// Credits already entered (only the keys loaded).
    pub present: HashSet<CreditKey>,
}

/// What a store must load into a [`Book`] before running a page.
#[derive(Debug, Default)]
pub struct Needs {
    pub pairs: Vec<(u64, [u8; 20])>,
    pub addresses: Vec<[u8; 20]>,
    pub keys: Vec<CreditKey>,
}

impl Book {
    pub fn new(epoch_s: u64, cap: u128) -> Self {
        Book {
            epoch_s: epoch_s.max(1),
            cap,
            ..Book::default()
        }
    }

    /// The epoch a credit for an event at `timestamp` lands in: its own, or
    /// the oldest open one when its own is already sealed.
    pub fn epoch_for(&self, timestamp: u64) -> u64 {
        let own = timestamp / self.epoch_s;
        match self.last_sealed {
            Some(sealed) if own <= sealed => sealed + 1,
            _ => own,
        }
    }

    /// The rows `credits` will read, given this book's `last_sealed` (which a
    /// page does not change: sealing happens between pages).
    pub fn needs(&self, credits: &[Credit]) -> Needs {
        let mut n = Needs::default();
        let (mut pairs, mut addresses) = (HashSet::new(), HashSet::new());
        for c in credits {
            if pairs.insert((self.epoch_for(c.timestamp), c.address)) {
                n.pairs.push((self.epoch_for(c.timestamp), c.address));
            }
            if addresses.insert(c.address) {
                n.addresses.push(c.address);
            }
            n.keys.push((c.event_id, c.applet.clone(), c.idx));
        }
        n
    }

    /// Enters a credit: epoch assignment, the cap, no double entry. Returns the
    /// new entry, or `None` when it was entered before or nothing was left
    /// under the cap (zero entries are not written).
    pub fn credit(&mut self, c: &Credit) -> Option<Entry> {
        if !self.present.insert((c.event_id, c.applet.clone(), c.idx)) {
            return None;
        }
        let epoch = self.epoch_for(c.timestamp);
        let total = self.totals.entry((epoch, c.address)).or_default();
        let amount = c.amount.min(self.cap.saturating_sub(*total));
        if amount == 0 {
            return None;
        }
        *total += amount;
        *self.balances.entry(c.address).or_default() += amount;
        let (seq, prev) = self.head;
        let mut e = Entry {
            seq: seq + 1,
            epoch,
            address: c.address,
            amount,
            event_id: c.event_id,
            applet: c.applet.clone(),
            applet_hash: c.applet_hash.clone(),
            idx: c.idx,
            prev,
            hash: [0; 32],
        };
        e.hash = e.compute_hash();
        self.head = (e.seq, e.hash);
        Some(e)
    }
}

/// The leaves of a seal of `epoch`: one per address with a balance, with its
/// total in `epoch` (`totals` is asked per address), sorted by address.
pub fn leaves<'a>(
    balances: impl IntoIterator<Item = (&'a [u8; 20], &'a u128)>,
    epoch_total: impl Fn(&[u8; 20]) -> u128,
) -> Vec<Leaf> {
    let sorted: BTreeMap<[u8; 20], u128> = balances.into_iter().map(|(a, b)| (*a, *b)).collect();
    sorted
        .into_iter()
        .map(|(address, balance)| Leaf {
            address,
            epoch_total: epoch_total(&address),
            balance,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::credit;

    /// A store loads only what a page needs; the outcome must not depend on
    /// how the credits were cut into pages.
    #[test]
    fn pages_loaded_by_needs_give_the_same_entries_as_one_complete_book() {
        let credits: Vec<Credit> = (0..300)
            .map(|i| {
                credit(
                    i % 250,
                    (i * 7 % 11) as u8,
                    3 + (i as u128 * 13) % 9,
                    i as u64 * 3,
                )
            })
            .collect();
        let mut whole = Book::new(60, 40);
        whole.last_sealed = Some(1);
        let expected: Vec<Entry> = credits.iter().filter_map(|c| whole.credit(c)).collect();

        // The "store": complete state, from which each page loads its needs.
        let mut store = Book::new(60, 40);
        store.last_sealed = Some(1);
        let mut got = Vec::new();
        for page in credits.chunks(17) {
            let needs = store.needs(page);
            let mut book = Book {
                head: store.head,
                last_sealed: store.last_sealed,
                ..Book::new(60, 40)
            };
            for p in needs.pairs {
                if let Some(t) = store.totals.get(&p) {
                    book.totals.insert(p, *t);
                }
            }
            for a in needs.addresses {
                if let Some(b) = store.balances.get(&a) {
                    book.balances.insert(a, *b);
                }
            }
            for k in needs.keys {
                if store.present.contains(&k) {
                    book.present.insert(k);
                }
            }
            let entries: Vec<Entry> = page.iter().filter_map(|c| book.credit(c)).collect();
            store.head = book.head;
            store.totals.extend(book.totals);
            store.balances.extend(book.balances);
            store.present.extend(book.present);
            got.extend(entries);
        }
        assert_eq!(got, expected);
        assert!(expected.len() > 100, "the sample credits something");
        assert!(
            expected.iter().all(|e| e.epoch >= 2),
            "nothing into a sealed epoch"
        );
    }

    #[test]
    fn leaves_are_sorted_and_carry_the_epoch_total() {
        let balances = HashMap::from([([9; 20], 5u128), ([1; 20], 7u128)]);
        let l = leaves(&balances, |a| if a[0] == 1 { 3 } else { 0 });
        assert_eq!(l[0].address, [1; 20]);
        assert_eq!((l[0].epoch_total, l[0].balance), (3, 7));
        assert_eq!((l[1].epoch_total, l[1].balance), (0, 5));
    }
}
