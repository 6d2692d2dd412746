//! A page worked out before its turn at the write lock (SQLite), and what
//! happens when the ledger moves before it is written: another writer (a
//! second process on the store) accrued the same credits, or an epoch was
//! sealed. Either way the page is worked out again under the lock: no credit
//! entered twice, none in an epoch that is already sealed.

use super::fixture::{Fixture, Kind, T0};
use crate::rewards::{ACCRUE_PAGE, Rewards, stored};

/// Prepares a page of at most `limit` credits on one connection, runs
/// `meanwhile`, then writes the page on another: what `accrue` does, with a gap in which another process acts.
fn prepare_then_write(
    f: &Fixture,
    rewards: &Rewards,
    limit: i64,
    meanwhile: impl FnOnce(),
) -> super::super::accrual::Page {
    let prepared = f
        .project
        .snapshot(|db| f.with(|c| rewards.prepare_page(c, db, limit)))
        .unwrap()
        .unwrap();
    meanwhile();
    f.project
        .snapshot(|db| f.with(|c| rewards.write_prepared(c, db, prepared, limit)))
        .unwrap()
        .unwrap()
}

#[test]
fn a_page_prepared_before_another_writer_took_its_credits_enters_none_of_them_twice() {
    let f = Fixture::new(Kind::Sqlite);
    f.add_credits(1, &[3], 5, T0);
    let (mine, other) = (f.open().unwrap(), f.open().unwrap());
    let page = prepare_then_write(&f, &mine, ACCRUE_PAGE, || {
        assert_eq!(f.accrue(&other).unwrap(), 5, "the other writer takes them all");
    });
    assert_eq!((page.read, page.added), (0, 0), "nothing left after the cursor");
    assert_eq!(mine.head().unwrap().seq, 5, "five entries, not ten");
    let entries = f.with(|c| stored::device_entries(c, &[3; 20])).unwrap();
    assert_eq!(entries.len(), 5);
    assert!(f.verify().unwrap().is_ok());
    assert_eq!(f.accrue(&mine).unwrap(), 0);
}

#[test]
fn a_page_prepared_before_its_epoch_was_sealed_lands_in_the_next_open_epoch() {
    let f = Fixture::new(Kind::Sqlite);
    let rewards = f.open().unwrap();
    let epoch = T0 as u64 / super::fixture::config().epoch_s;
    // Device 1 has an entry in the epoch, so it can be sealed; device 2's
    // credits, in the same epoch, are still being prepared when it is.
    f.add_credits(1, &[1], 1, T0);
    f.accrue(&rewards).unwrap();
    f.add_credits(10, &[2], 2, T0 + 5);
    let page = prepare_then_write(&f, &rewards, ACCRUE_PAGE, || {
        assert_eq!(rewards.seal_due(T0 as u64 + 1000).unwrap(), vec![epoch]);
    });
    assert_eq!((page.read, page.added), (2, 2));
    let entries = f.with(|c| stored::device_entries(c, &[2; 20])).unwrap();
    let epochs: Vec<u64> = entries.iter().map(|(e, _)| e.epoch).collect();
    assert_eq!(epochs, vec![epoch + 1, epoch + 1], "not in the sealed epoch");
    assert!(f.verify().unwrap().is_ok());
}

#[test]
fn a_page_nothing_moved_under_is_written_as_it_was_prepared() {
    let f = Fixture::new(Kind::Sqlite);
    f.add_credits(1, &[4, 5], 3, T0);
    let rewards = f.open().unwrap();
    let page = prepare_then_write(&f, &rewards, ACCRUE_PAGE, || {});
    assert_eq!((page.read, page.added), (6, 6));
    assert_eq!(rewards.head().unwrap().seq, 6);
    assert_eq!(rewards.through_event().unwrap(), Some(6));
    assert!(f.verify().unwrap().is_ok());
    assert_eq!(f.accrue(&rewards).unwrap(), 0, "the cursor moved with it");
}

/// `rewards.page_lock_ms` sizes the pages: writing a page of 500 credits (some
/// 1,500 statements and a commit) takes more than 1 ms and far less than a
/// second, so the next page is smaller under a 1 ms lock and stays whole
/// under a 1,000 ms one.
#[test]
fn the_configured_page_lock_sizes_the_next_page() {
    use std::sync::atomic::Ordering::Relaxed;
    for ms in [1, 1000] {
        let f = Fixture::new(Kind::Sqlite);
        f.add_credits(1, &[6], ACCRUE_PAGE, T0);
        let config = crate::config::RewardsConfig {
            page_lock_ms: ms,
            ..super::fixture::config()
        };
        let rewards = f.open_with(config).unwrap();
        assert_eq!(rewards.page.load(Relaxed), ACCRUE_PAGE, "the first page is whole");
        assert_eq!(f.accrue(&rewards).unwrap(), ACCRUE_PAGE as usize);
        let next = rewards.page.load(Relaxed);
        if ms == 1 {
            assert!(next < ACCRUE_PAGE, "page_lock_ms = 1: {next}");
        } else {
            assert_eq!(next, ACCRUE_PAGE, "page_lock_ms = 1000");
        }
    }
}

/// A full page may have left credits behind: the ledger says it is complete
/// through the worker's last event (what `bench` counts) only after a page
/// that was not full.
#[test]
fn a_full_page_does_not_claim_the_ledger_is_complete() {
    let f = Fixture::new(Kind::Sqlite);
    f.add_credits(1, &[7], 10, T0);
    let rewards = f.open().unwrap();
    let page = prepare_then_write(&f, &rewards, 10, || {});
    assert_eq!((page.read, page.added), (10, 10));
    assert_eq!(rewards.through_event().unwrap(), None);
    assert_eq!(f.accrue(&rewards).unwrap(), 0);
    assert_eq!(rewards.through_event().unwrap(), Some(10));
}
