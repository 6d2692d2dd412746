//! How many credits an accrual page takes. Each page is one transaction on
//! the store and holds its write lock; the ingest writer takes turns with the
//! ledger ([`crate::store::turns`]), so an ingest group waits for at most one
//! page, and a page's length is what accrual adds to ingest latency. Pages are
//! sized to a time budget from the pace of the page before, not to a count:
//! the same 500 credits took 5 ms on an idle processor and 25 to 65 ms under
//! load (the open-loop run at half load, `RUST_LOG=wattstream_processor=debug`:
//! "accrued a page" and "a group waited for its turn"), and a fixed 500 put
//! 48 to 190 ms on its p99.

use std::time::Duration;

/// Most credits moved into the ledger per transaction. Each page holds the
/// store's write lock, so ingest waits for it: pages of 5,000 put 136 ms on
/// the open-loop p99 at half load, pages of 500 75 ms (`wattstream bench`,
/// README "Performance").
pub(crate) const ACCRUE_PAGE: i64 = 500;
/// Fewest credits per page: a page's commit (and fsync) costs the same
/// whatever its size.
pub(crate) const MIN_PAGE: i64 = 50;
/// The next page's size after a page of `limit` read `read` credits in
/// `took`: as many as fit in `budget` (`rewards.page_lock_ms`) at that page's
/// pace, between [`MIN_PAGE`] and [`ACCRUE_PAGE`], changed at most twofold at
/// a time (one slow commit does not shrink it to the floor). A page too small
/// to tell keeps the size.
///
/// The budget is the most an ingest group waits for the ledger. Since a page
/// is worked out before its turn ([`super::accrual`]) the lock covers only its
/// writes, about 30 us a credit under load. At half load (the open-loop run,
/// `RUST_LOG=wattstream_processor::store=debug`) 8 ms pages made the groups
/// that met one wait 8 ms at the median and up to 50; 3 ms pages 6 and 26, but
/// more groups met one (the open-loop p50 rose by about a millisecond); 2 ms
/// pages (50 credits, the floor) cost sustained throughput. The default, 5,
/// kept the p50 where it was (README, "Performance").
pub(crate) fn page_after(limit: i64, read: usize, took: Duration, budget: Duration) -> i64 {
    within(limit, read, took, budget, (MIN_PAGE, ACCRUE_PAGE))
}

/// The same rule for any writer that takes turns at the store's write lock
/// in transactions of rows (retention's batches too): the next size after
/// `done` rows of a transaction of `limit` took `took`, between `min` and
/// `max`.
pub(crate) fn within(
    limit: i64,
    done: usize,
    took: Duration,
    budget: Duration,
    (min, max): (i64, i64),
) -> i64 {
    let done = done as i64;
    if done < min || took.is_zero() {
        return limit;
    }
    let fit = (done as f64 * budget.as_secs_f64() / took.as_secs_f64()) as i64;
    fit.clamp(limit / 2, limit.saturating_mul(2)).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// A 3 ms budget.
    const B: Duration = Duration::from_millis(3);

    #[test]
    fn a_page_slower_than_the_budget_makes_the_next_one_smaller() {
        // 500 in 24 ms: 62 fit in 3 ms, but at most halved at once.
        assert_eq!(page_after(500, 500, 24 * MS, B), 250);
        assert_eq!(page_after(250, 250, 6 * MS, B), 125);
        // Never below the floor, however slow.
        assert_eq!(page_after(60, 60, 1000 * MS, B), MIN_PAGE);
    }

    #[test]
    fn a_page_faster_than_the_budget_makes_the_next_one_larger_up_to_the_most() {
        assert_eq!(page_after(100, 100, MS, B), 200);
        assert_eq!(page_after(400, 400, MS, B), ACCRUE_PAGE);
    }

    #[test]
    fn a_page_too_small_to_tell_keeps_the_size() {
        // Caught up with a handful of credits: its commit is most of its time.
        assert_eq!(page_after(300, 3, 9 * MS, B), 300);
        assert_eq!(page_after(300, 0, Duration::ZERO, B), 300);
    }

    #[test]
    fn another_writer_s_batches_keep_to_their_own_bounds() {
        // Retention: 100 to 5,000 rows. 100 in 50 ms: 10 fit in 5 ms, but
        // never below its floor; 100 in 1 ms: doubled.
        let bounds = (100, 5000);
        assert_eq!(within(100, 100, 50 * MS, 5 * MS, bounds), 100);
        assert_eq!(within(100, 100, MS, 5 * MS, bounds), 200);
        assert_eq!(within(4000, 4000, MS, 5 * MS, bounds), 5000);
    }
}
