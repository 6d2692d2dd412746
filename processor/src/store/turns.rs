//! Fair turns at the store's write lock among this process's writers: the
//! ingest writer's groups and the ledger's pages take one each, first come
//! first served.
//!
//! SQLite's write lock is not fair. A connection that finds it taken sleeps in
//! its busy handler and tries again; the ledger, which accrues page after page
//! until it has caught up, took the lock back within microseconds of releasing
//! it, so the ingest writer slept through every page of a catch-up: 90 to 190
//! ms with nothing acknowledged (the open-loop run at half load, logged with
//! `RUST_LOG=wattstream_processor::store=debug`: "a slow group" with its
//! `lock_ms`). With a turn each, a group waits for at most the one page or
//! group ahead of it, and SQLite's lock is free whenever a turn begins (other
//! processes, such as a `rewards replay`, still meet the busy handler). The
//! writer gathers its group once its turn has begun, so what arrives during
//! the wait joins it ([`super::writer`]).
//!
//! Invariants: tickets are served in the order taken; a [`Turn`] ends when it
//! is dropped, whatever the outcome of the transaction it covered, so a failed
//! group or page never keeps the others out. One writer may jump the queue
//! ([`Turns::take_first`]): the checkpoint thread restarting the WAL, whose
//! turn must copy whatever was committed while it waited (a wait behind the
//! queue made that copy, and so its turn, 10 to 40 ms long).
//!
//! **One connection writes in every turn** ([`Turn::conn`]): the ingest
//! writer's groups, the ledger's pages and retention's batches all run on
//! the store's one writing connection, handed over with the turn. In WAL mode
//! a connection drops its whole page cache when it finds that another
//! connection committed since its last transaction; with a connection each,
//! every ledger page emptied the ingest writer's cache and every group the
//! ledger's, so each turn began by reading its B-tree pages back from the
//! OS (a fifth of the writer thread's time in the sustained profile, behind
//! `pread` and the WAL index lookups). One connection keeps its cache across
//! turns; it is given a larger one ([`WRITE_CACHE_KIB`]) to hold the
//! per-device index pages a fleet touches. Invariant: a turn begins with the
//! connection outside any transaction (a writer that failed half-way and
//! left one open has it rolled back, and logged, by the next turn).
//!
//! Every turn's wait and hold go to `/metrics`
//! (`wattstream_store_turn_wait_seconds` and `..._held_seconds`, by writer):
//! how long requests wait behind the ledger is visible without a special
//! build.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use rusqlite::Connection;

use crate::metrics::Metrics;
pub use crate::metrics::turns::TurnOf;

/// The page cache of the store's writing connection, KiB (SQLite's default
/// is 2,000). Measured in the sustained run at 10,000 devices (two to six
/// runs each, `wattstream bench --only verify --only ingest`): at 2,000 the
/// shared connection saved nothing (the writer thread 40-44 µs of CPU per
/// event, as before); at 8 MiB the writer took 33-35 µs; at 32 MiB the
/// same, but each commit then spent longer trimming the cache
/// (`pcache1TruncateUnsafe` walks its hash table: 3 % of the samples, on
/// the ledger's commits) and the tokio threads took 7 µs more per event.
pub const WRITE_CACHE_KIB: i64 = 8 * 1024;
/// Prepared statements the writing connection keeps.
const STATEMENTS_CACHED: usize = 128;

#[derive(Default)]
pub struct Turns {
    state: Mutex<State>,
    cv: Condvar,
    metrics: Arc<Metrics>,
    /// The store's writing connection, lent to each turn ([`Turn::conn`]).
    conn: OnceLock<Mutex<Connection>>,
}

#[derive(Default)]
struct State {
    /// The next ticket to hand out, and the one whose turn is next or now.
    next: u64,
    serving: u64,
    /// A turn is running.
    running: bool,
    /// A turn that jumps the queue is waiting or running.
    first: bool,
}

/// A writer's turn; the next one starts when it is dropped.
pub struct Turn<'a> {
    turns: &'a Turns,
    who: TurnOf,
    began: Instant,
    first: bool,
}

impl Turns {
    /// Turns whose waits and holds go to `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Turns {
            metrics,
            ..Turns::default()
        }
    }

    /// Makes `conn` the connection every turn writes on (once; it gets
    /// [`WRITE_CACHE_KIB`] of page cache).
    pub fn share(&self, conn: Connection) -> rusqlite::Result<()> {
        conn.pragma_update(None, "cache_size", -WRITE_CACHE_KIB)?;
        // Every writer's statements, kept prepared: rusqlite's 16 would
        // have the ledger's and the ingest writer's evict each other.
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        if self.conn.set(Mutex::new(conn)).is_err() {
            tracing::error!("the store's turns already have a writing connection; the new one is dropped");
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a turn after those already waiting.
    pub fn take(&self, who: TurnOf) -> Turn<'_> {
        let asked = Instant::now();
        let mut s = self.lock();
        let ticket = s.next;
        s.next += 1;
        let mut s = self
            .cv
            .wait_while(s, |s| s.serving != ticket || s.running || s.first)
            .unwrap_or_else(PoisonError::into_inner);
        s.running = true;
        self.began(who, asked, false)
    }

    /// Waits only for the turn running now, if any: the next turn is this
    /// one, before those already waiting (one such turn at a time).
    pub fn take_first(&self, who: TurnOf) -> Turn<'_> {
        let asked = Instant::now();
        let s = self.lock();
        let mut s = self
            .cv
            .wait_while(s, |s| s.first)
            .unwrap_or_else(PoisonError::into_inner);
        s.first = true;
        let mut s = self
            .cv
            .wait_while(s, |s| s.running)
            .unwrap_or_else(PoisonError::into_inner);
        s.running = true;
        self.began(who, asked, true)
    }

    fn began(&self, who: TurnOf, asked: Instant, first: bool) -> Turn<'_> {
        let began = Instant::now();
        self.metrics.turns.record_wait(who, (began - asked).as_secs_f64());
        Turn {
            turns: self,
            who,
            began,
            first,
        }
    }

    /// Turns taken and not yet ended (the one being served included).
    pub fn waiting(&self) -> u64 {
        let s = self.lock();
        s.next - s.serving + u64::from(s.first)
    }
}

impl Turn<'_> {
    /// The store's writing connection for this turn (`None`: the turns have
    /// none, and the writer uses its own), outside any transaction; one
    /// guard at a time (a second call in the same turn would wait forever).
    pub fn conn(&self) -> Option<MutexGuard<'_, Connection>> {
        let c = self
            .turns
            .conn
            .get()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !c.is_autocommit() {
            tracing::error!(writer = ?self.who, "a turn began inside a transaction another writer left open; rolling it back");
            if let Err(e) = c.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rolling back the transaction left open");
            }
        }
        Some(c)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let held = self.began.elapsed().as_secs_f64();
        self.turns.metrics.turns.record_held(self.who, held);
        {
            let mut s = self.turns.lock();
            s.running = false;
            if self.first {
                s.first = false;
            } else {
                s.serving += 1;
            }
        }
        self.turns.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    /// Threads asking for turns while `running` lasts, each after the one
    /// before is waiting (`true`: [`Turns::take_first`]); the order in which
    /// they got them once it ended.
    fn served_in_order(
        turns: &Arc<Turns>,
        running: Turn<'_>,
        askers: &[(&'static str, bool)],
    ) -> Vec<&'static str> {
        let (order_tx, order_rx) = mpsc::channel();
        let mut threads = Vec::new();
        for (n, &(who, first)) in askers.iter().enumerate() {
            let (mine, order_tx) = (turns.clone(), order_tx.clone());
            threads.push(std::thread::spawn(move || {
                let _turn = if first {
                    mine.take_first(TurnOf::Checkpoint)
                } else {
                    mine.take(TurnOf::Ingest)
                };
                order_tx.send(who).unwrap();
            }));
            while turns.waiting() < n as u64 + 2 {
                std::thread::yield_now();
            }
        }
        assert!(
            order_rx.try_recv().is_err(),
            "nobody runs while the first turn lasts"
        );
        drop(running);
        for t in threads {
            t.join().unwrap();
        }
        order_rx.try_iter().collect()
    }

    #[test]
    fn turns_are_served_in_the_order_they_were_taken() {
        let turns = Arc::new(Turns::default());
        let first = turns.take(TurnOf::Ingest);
        let order = served_in_order(
            &turns,
            first,
            &[("0", false), ("1", false), ("2", false), ("3", false)],
        );
        assert_eq!(order, vec!["0", "1", "2", "3"]);
        assert_eq!(turns.waiting(), 0);
    }

    #[test]
    fn a_writer_that_keeps_coming_back_does_not_starve_one_that_waits() {
        // The ledger catching up: page after page. The ingest writer, which
        // asked during the first page, goes next.
        let turns = Arc::new(Turns::default());
        let page = turns.take(TurnOf::Ledger);
        let (ingest_tx, ingest_rx) = mpsc::channel();
        let ingest = {
            let mine = turns.clone();
            std::thread::spawn(move || {
                let _turn = mine.take(TurnOf::Ingest);
                ingest_tx.send(()).unwrap();
            })
        };
        while turns.waiting() < 2 {
            std::thread::yield_now();
        }
        drop(page);
        // The ledger's next page waits for the writer's group.
        let next_page = turns.take(TurnOf::Ledger);
        assert!(
            ingest_rx.try_recv().is_ok(),
            "the writer went before the next page"
        );
        drop(next_page);
        ingest.join().unwrap();
    }

    #[test]
    fn a_turn_taken_first_goes_after_the_running_one_before_those_waiting() {
        let turns = Arc::new(Turns::default());
        let running = turns.take(TurnOf::Ledger);
        let order = served_in_order(
            &turns,
            running,
            &[("group 1", false), ("group 2", false), ("restart", true)],
        );
        assert_eq!(order, vec!["restart", "group 1", "group 2"]);
        assert_eq!(turns.waiting(), 0);
        // The queue goes on as before.
        drop(turns.take(TurnOf::Ingest));
        drop(turns.take_first(TurnOf::Checkpoint));
        assert_eq!(turns.waiting(), 0);
    }

    #[test]
    fn a_waiting_group_never_overtakes_a_turn_taken_first_when_the_running_one_ends() {
        // When the running turn ends, the group waiting and the turn taken
        // first both wake; whichever thread runs first, the group must let
        // the other go. A race, so the scene is played many times (with a
        // group that ignored the turn taken first, it won 1 time in 5).
        for _ in 0..200 {
            let turns = Arc::new(Turns::default());
            let running = turns.take(TurnOf::Ledger);
            let order = served_in_order(&turns, running, &[("group", false), ("restart", true)]);
            assert_eq!(order, vec!["restart", "group"]);
        }
    }

    #[test]
    fn each_turn_s_wait_and_hold_go_to_metrics_by_writer() {
        let metrics = Arc::new(Metrics::default());
        let turns = Arc::new(Turns::new(metrics.clone()));
        let page = turns.take(TurnOf::Ledger);
        let ingest = {
            let mine = turns.clone();
            std::thread::spawn(move || drop(mine.take(TurnOf::Ingest)))
        };
        while turns.waiting() < 2 {
            std::thread::yield_now();
        }
        // The page holds the lock for what is measured: 5 ms, which the
        // group that queued behind it waits too.
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(page);
        ingest.join().unwrap();
        let text = metrics.render();
        for line in [
            "wattstream_store_turn_wait_seconds_bucket{writer=\"ledger\",le=\"0.001\"} 1",
            "wattstream_store_turn_wait_seconds_bucket{writer=\"ingest\",le=\"0.001\"} 0",
            "wattstream_store_turn_wait_seconds_count{writer=\"ingest\"} 1",
            "wattstream_store_turn_held_seconds_bucket{writer=\"ledger\",le=\"0.001\"} 0",
            "wattstream_store_turn_held_seconds_count{writer=\"ledger\"} 1",
            "wattstream_store_turn_held_seconds_count{writer=\"ingest\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn every_turn_writes_on_one_connection_and_begins_outside_any_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("store.db")).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
            .unwrap();
        let turns = Turns::default();
        turns.share(c).unwrap();
        {
            // A ledger page that fails half-way: its transaction left open.
            let page = turns.take(TurnOf::Ledger);
            let c = page.conn().unwrap();
            c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
                .unwrap();
        }
        let group = turns.take(TurnOf::Ingest);
        let c = group.conn().unwrap();
        assert!(c.is_autocommit(), "the next turn begins outside it");
        // On another connection the page's open transaction would hold the
        // write lock, and this would wait for it.
        c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT")
            .unwrap();
        let kept: Vec<i64> = c
            .prepare("SELECT x FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, vec![2], "the half-done page was rolled back");
        let cache: i64 = c.pragma_query_value(None, "cache_size", |r| r.get(0)).unwrap();
        assert_eq!(cache, -WRITE_CACHE_KIB);
    }
}
