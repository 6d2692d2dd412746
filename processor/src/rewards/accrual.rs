//! Accrual: moving applet credits into the ledger, a page per transaction,
//! sized by [`super::pace`]. Its own file because it is the ledger's hot path
//! (every credit of every event passes here) and the part that shares the
//! store's write lock with ingest.
//!
//! On SQLite a page is worked out before its turn at the write lock and only
//! written during it ([`Rewards::prepare_page`], [`Rewards::write_prepared`]):
//! reading the credits, the balances, totals and entries they touch, and
//! hashing the new entries took about half of a page's time, and every
//! ingest group that came while a page held the lock waited for all of it
//! (the open-loop run at half load: the lock's waits were the latency's
//! tail). Invariant: a prepared page is written only onto the ledger it was
//! worked out from. Everything it read is derived from the entries, the seals
//! and the credits cursor, so the write re-reads the head `(seq, hash)`, the
//! newest seal and the cursor under the lock, and when any of them moved
//! (another process wrote the ledger meanwhile) it works the page out again
//! there, as before: never a stale balance, never a credit entered twice.

use rusqlite::Connection;
use wattstream_rewards::{Book, Credit, Entry};

use super::pace::page_after;
use super::{Credits, LEDGER_LOCK, Rewards, book, queue, stored};
use crate::store::sql::{Sql, SqlError, Tx};

impl Rewards {
    /// Moves every new credit from the project database into the ledger, a
    /// page at a time (at most [`super::ACCRUE_PAGE`], as many as fit in
    /// `rewards.page_lock_ms`: [`page_after`]), each page (entries, balances, totals
    /// and the credits cursor) in one transaction: accrual keeps up with
    /// ingest instead of taking a fixed number of credits per tick. The
    /// project database is read from a snapshot ([`crate::applets::slot::DbSlot::snapshot`]), so
    /// accrual never holds up the applet worker. Returns the entries added.
    pub fn accrue(&self, from: &Credits<'_>) -> anyhow::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut added = 0;
        loop {
            let limit = self.page.load(Relaxed);
            let began = std::time::Instant::now();
            let page = match from {
                Credits::Project(slot) => slot.snapshot(|db| {
                    self.conns.book_in_two(
                        |c| self.prepare_page(c, db, limit),
                        |c, prepared| self.write_prepared(c, db, prepared, limit),
                    )
                })??,
                Credits::Queue(project) => self.conns.book(|c| self.accrue_queue_page(c, project, limit))?,
            };
            added += page.added;
            let next = page_after(limit, page.read, page.took, self.config.page_lock());
            self.page.store(next, Relaxed);
            // `us`: the write lock held; `all_us`: the whole page, its
            // preparation and its wait for a turn included.
            tracing::debug!(
                read = page.read,
                us = page.took.as_micros() as u64,
                all_us = began.elapsed().as_micros() as u64,
                next,
                "accrued a page"
            );
            if (page.read as i64) < limit {
                return Ok(added);
            }
        }
    }

    /// The newest event through which the applets have run and every credit
    /// is in the ledger, as of the last accrual that caught up.
    pub fn through_event(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.conns.read(|c| book::meta(c, THROUGH))?)
    }

    /// One page of `queue`'s credits (PostgreSQL). Fewer read than a page
    /// means the ledger has caught up.
    fn accrue_queue_page(&self, c: &dyn Sql, queue: &str, limit: i64) -> anyhow::Result<Page> {
        // Before the ledger's transaction, so ingest waits only an instant.
        let settled = queue::settled(c)?;
        let started = std::time::Instant::now();
        let tx = Tx::write(c, LEDGER_LOCK)?;
        let mut done = self.accrue_in(&*tx, queue, settled, limit)?;
        tx.commit()?;
        done.took = started.elapsed();
        Ok(done)
    }

    /// A page of `queue`'s credits inside the ledger's transaction `tx`
    /// (which holds [`LEDGER_LOCK`]).
    pub(crate) fn accrue_in(
        &self,
        tx: &dyn Sql,
        queue: &str,
        settled: i64,
        limit: i64,
    ) -> anyhow::Result<Page> {
        let (credits, below) = queue::take(tx, queue, settled, limit)?;
        let work = self.work_on(tx, credits, None, Some(below - 1))?;
        Ok(write_work(tx, work, limit)?)
    }

    /// The page after `seen`'s credits cursor in the project database `db`,
    /// worked out on the ledger as `tx` reads it (`seen` read there too).
    fn work_out(&self, tx: &dyn Sql, db: &Connection, seen: &Seen, limit: i64) -> anyhow::Result<Work> {
        // The worker writes an event's credits and moves its cursor in one
        // transaction: reading the cursor first, every credit of the events
        // up to it is among those read next.
        let through = stored::worker_cursor(db)?;
        let rows = stored::read_credits(db, seen.cursor.unwrap_or(0), limit)?;
        let taken = rows.last().map(|r| r.0);
        let credits = rows.into_iter().map(|(_, c)| c).collect();
        Ok(self.work_on(tx, credits, taken, through)?)
    }

    /// Loads what `credits` touch and makes their entries.
    fn work_on(
        &self,
        tx: &dyn Sql,
        credits: Vec<Credit>,
        taken: Option<i64>,
        through: Option<i64>,
    ) -> Result<Work, SqlError> {
        let mut ledger = book::load(tx, self.config.epoch_s, self.config.cap_units(), &credits)?;
        let entries = credits
            .iter()
            .filter_map(|c| ledger.credit(c).map(|e| (e, c.timestamp)))
            .collect();
        Ok(Work {
            read: credits.len(),
            ledger,
            entries,
            taken,
            through,
        })
    }

    /// A page of the project database `db`'s credits worked out on a read
    /// snapshot of the ledger, outside the write lock.
    pub(crate) fn prepare_page(&self, c: &dyn Sql, db: &Connection, limit: i64) -> anyhow::Result<Prepared> {
        let tx = Tx::read(c)?;
        let seen = Seen::read(&*tx)?;
        let work = self.work_out(&*tx, db, &seen, limit)?;
        tx.commit()?;
        Ok(Prepared { seen, work })
    }

    /// Writes a prepared page in one transaction, or works it out again
    /// there when the ledger is no longer the one it was prepared on.
    /// `took` is the transaction's time: the write lock's.
    pub(crate) fn write_prepared(
        &self,
        c: &dyn Sql,
        db: &Connection,
        prepared: Prepared,
        limit: i64,
    ) -> anyhow::Result<Page> {
        let started = std::time::Instant::now();
        let tx = Tx::write(c, LEDGER_LOCK)?;
        let now = Seen::read(&*tx)?;
        let work = if now == prepared.seen {
            prepared.work
        } else {
            tracing::debug!("the ledger moved while a page was prepared: working it out again");
            self.work_out(&*tx, db, &now, limit)?
        };
        let mut page = write_work(&*tx, work, limit)?;
        tx.commit()?;
        page.took = started.elapsed();
        Ok(page)
    }
}

/// `ledger_meta` key: the newest project credit (rowid) in the ledger.
const CURSOR: &str = "credits_rowid";

/// What a page works from, as read before the write lock: every ledger row
/// a page reads follows from the entries (the head's hash chains them all),
/// the seals and the credits cursor.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    head: (u64, [u8; 32]),
    last_sealed: Option<u64>,
    cursor: Option<i64>,
}

impl Seen {
    fn read(c: &dyn Sql) -> Result<Seen, SqlError> {
        Ok(Seen {
            head: book::head(c)?,
            last_sealed: book::last_sealed(c)?,
            cursor: book::meta(c, CURSOR)?,
        })
    }
}

/// A page worked out: its credits' book after entering them, and the rows to
/// write.
pub(crate) struct Work {
    read: usize,
    ledger: Book,
    entries: Vec<(Entry, u64)>,
    /// The project credit cursor after this page (none from a queue).
    taken: Option<i64>,
    /// The newest event whose credits are all in hand.
    through: Option<i64>,
}

/// A page worked out outside the write lock, on the ledger as `seen`.
pub(crate) struct Prepared {
    seen: Seen,
    work: Work,
}

/// Writes a page's entries, balances, totals and cursors into `tx`.
fn write_work(tx: &dyn Sql, work: Work, limit: i64) -> Result<Page, SqlError> {
    // A page that is not full took every credit there is: record through
    // which event the ledger is complete (for `bench`, and operators).
    if let Some(through) = work.through.filter(|_| (work.read as i64) < limit)
        && book::meta(tx, THROUGH)? < Some(through)
    {
        book::set_meta(tx, THROUGH, through)?;
    }
    if work.read == 0 {
        return Ok(Page::default());
    }
    book::write(tx, &work.ledger, &work.entries)?;
    if let Some(last) = work.taken {
        book::set_meta(tx, CURSOR, last)?;
    }
    Ok(Page {
        read: work.read,
        added: work.entries.len(),
        took: std::time::Duration::ZERO,
    })
}

/// What one accrual page did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Page {
    /// Credits read (fewer than asked: caught up).
    pub read: usize,
    /// Ledger entries added.
    pub added: usize,
    /// Its transaction's time, from taking the ledger's lock to the commit.
    pub took: std::time::Duration,
}

/// `ledger_meta` key: every event up to this id has run through the applets
/// and its credits are entries.
pub(super) const THROUGH: &str = "through_event";
