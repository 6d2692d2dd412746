//! Accrual: moving applet credits into the ledger, a page per transaction,
//! sized by [`super::pace`]. Its own file because it is the ledger's hot path
//! (every credit of every event passes here) and the part that shares the
//! store's write lock with ingest.

use rusqlite::Connection;

use super::pace::page_after;
use super::{Credits, LEDGER_LOCK, Rewards, book, queue, stored};
use crate::store::sql::{Sql, Tx};

impl Rewards {
    /// Moves every new credit from the project database into the ledger, a
    /// page at a time (at most [`super::ACCRUE_PAGE`], as many as fit in
    /// [`super::pace::PAGE_BUDGET`]: [`page_after`]), each page (entries, balances, totals
    /// and the credits cursor) in one transaction: accrual keeps up with
    /// ingest instead of taking a fixed number of credits per tick. The
    /// project database is read from a snapshot ([`crate::applets::slot::DbSlot::snapshot`]), so
    /// accrual never holds up the applet worker. Returns the entries added.
    pub fn accrue(&self, from: &Credits<'_>) -> anyhow::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut added = 0;
        loop {
            let limit = self.page.load(Relaxed);
            let page = match from {
                Credits::Project(slot) => {
                    slot.snapshot(|db| self.conns.book(|c| self.accrue_page(c, Some(db), "", limit)))??
                }
                Credits::Queue(project) => self.conns.book(|c| self.accrue_page(c, None, project, limit))?,
            };
            added += page.added;
            let next = page_after(limit, page.read, page.took);
            self.page.store(next, Relaxed);
            tracing::debug!(
                read = page.read,
                us = page.took.as_micros() as u64,
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

    /// One page, from the project database when given, else from `queue`'s
    /// credits. Fewer read than a page means the ledger has caught up.
    fn accrue_page(
        &self,
        c: &dyn Sql,
        project: Option<&Connection>,
        queue: &str,
        limit: i64,
    ) -> anyhow::Result<Page> {
        // Before the ledger's transaction, so ingest waits only an instant.
        let settled = match project {
            Some(_) => 0,
            None => queue::settled(c)?,
        };
        let started = std::time::Instant::now();
        let tx = Tx::write(c, LEDGER_LOCK)?;
        let mut done = self.accrue_in(&*tx, project, queue, settled, limit)?;
        tx.commit()?;
        done.took = started.elapsed();
        Ok(done)
    }

    /// A page's work inside the ledger's transaction `tx` (which holds
    /// [`LEDGER_LOCK`]).
    pub(crate) fn accrue_in(
        &self,
        tx: &dyn Sql,
        project: Option<&Connection>,
        queue: &str,
        settled: i64,
        limit: i64,
    ) -> anyhow::Result<Page> {
        let (credits, taken, through) = match project {
            Some(db) => {
                // The worker writes an event's credits and moves its cursor
                // in one transaction: reading the cursor first, every credit
                // of the events up to it is among those read next.
                let through = stored::worker_cursor(db)?;
                let cursor = book::meta(tx, "credits_rowid")?.unwrap_or(0);
                let rows = stored::read_credits(db, cursor, limit)?;
                let last = rows.last().map(|r| r.0);
                (rows.into_iter().map(|(_, c)| c).collect(), last, through)
            }
            None => {
                let (credits, below) = queue::take(tx, queue, settled, limit)?;
                (credits, None, Some(below - 1))
            }
        };
        // A page that is not full took every credit there is: record through
        // which event the ledger is complete (for `bench`, and operators).
        if let Some(through) = through.filter(|_| (credits.len() as i64) < limit)
            && book::meta(tx, THROUGH)? < Some(through)
        {
            book::set_meta(tx, THROUGH, through)?;
        }
        if credits.is_empty() {
            return Ok(Page::default());
        }
        let mut ledger = book::load(tx, self.config.epoch_s, self.config.cap_units(), &credits)?;
        let entries: Vec<_> = credits
            .iter()
            .filter_map(|c| ledger.credit(c).map(|e| (e, c.timestamp)))
            .collect();
        book::write(tx, &ledger, &entries)?;
        if let Some(last) = taken {
            book::set_meta(tx, "credits_rowid", last)?;
        }
        Ok(Page {
            read: credits.len(),
            added: entries.len(),
            took: std::time::Duration::ZERO,
        })
    }
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
