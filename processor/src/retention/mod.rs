//! Retention: what a processor may forget, and forgets on its own, so a fleet's
//! store does not grow without end (10,000 meters send 7.2 M readings an hour).
//!
//! Removed once older than `store.retention_days` (0 keeps everything):
//! - **events** whose applets have run (at or before the default project's
//!   cursor) and whose epoch is sealed (their credits are in the signed
//!   ledger), and what the project database kept about them (`_ws_seen`,
//!   `_ws_calls`);
//! - **credits** the ledger has taken (at or before its credits cursor);
//! - **applet failures** of every project;
//! - **applet transactions** that ended (confirmed, reverted or given up),
//!   of every project: one still on its way is kept however old.
//!
//! And compiled applet modules in the cache that no deployed applet uses any
//! more, once a day old.
//!
//! Never removed: ledger entries and seals (the audit trail `rewards verify`
//! walks), devices, and the newest row of `events` and `_ws_credits`. The
//! last matters: neither table uses AUTOINCREMENT, so SQLite hands out
//! `MAX(rowid) + 1` and an emptied table would start again at 1, below the
//! cursors that say what was processed; new rows would be skipped.
//!
//! Events are deleted in transactions that each take a turn at the store's
//! write lock with the ingest writer and the ledger ([`crate::store::turns`]),
//! sized to [`LOCK_BUDGET`] from the pace of the one before (between
//! [`MIN_BATCH`] and [`BATCH`] rows), so an ingest group waits for at most one
//! batch. At a fleet's rate retention deletes as many events as ingest adds,
//! so its batches meet ingest all the time: without turns, SQLite's unfair
//! lock let a batch in whenever the writer slept in its busy handler, and a
//! fixed batch of 5,000 events held the lock about 250 ms on this project's
//! build machine, idle (a copy of a `bench` store: 80 to 95 ms of deletes in
//! the two per-device indexes, 150 to 170 ms to commit the pages they
//! dirtied; 200 events: 2.5 and 2.8 ms). In the store's process a batch is
//! deleted on the store's writing connection, lent with the turn; retention's
//! own connection (which reads, and writes only for an offline tool) asks the
//! store's checkpoint thread for checkpoints, as the ledger's does, instead
//! of running them in its own commits. Project databases are deleted from in
//! batches of [`BATCH`] between the applet worker's. `rewards replay` needs
//! the whole stream and says so once events were removed
//! (`ledger_meta.events_removed_upto`).
//!
//! This module is the SQLite store's pass; [`pg`] is PostgreSQL's.

pub mod pg;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::applets::db::ProjectDb;
use crate::applets::projects::Projects;
use crate::applets::slot::DbSlot;
use crate::rewards::{last_sealed as ledger_last_sealed, meta as ledger_meta};
use crate::store::OtherWriters;
use crate::store::turns::{TurnOf, Turns};

/// Most rows deleted per transaction.
pub const BATCH: i64 = 5000;
/// Fewest events deleted per transaction on the store (a commit costs its
/// fsync whatever its size), and the first batch's size.
pub const MIN_BATCH: i64 = 100;
/// The store's write lock one batch of events should hold: what an ingest
/// group waits for at most, as for a ledger page (`rewards.page_lock_ms`,
/// 5 by default).
pub const LOCK_BUDGET: Duration = Duration::from_millis(5);

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub events: u64,
    pub seen: u64,
    pub credits: u64,
    pub failures: u64,
    /// Applet transactions that reached their end (confirmed, reverted,
    /// given up) before the cutoff.
    pub txs: u64,
    pub cache_files: u64,
}

/// The outbox rows retention removes: ended, and older than `?1` (a
/// transaction still on its way is kept, however old).
pub const TXS_DONE_BEFORE: &str = "state IN ('confirmed', 'reverted', 'failed') AND at < ?1";

/// One pass at `now` (Unix seconds). `store`: the ingest writer's turns and
/// checkpoint thread when it runs in this process (none: SQLite's lock and
/// its own checkpoints, as for an offline tool).
pub fn run_once(
    data_dir: &Path,
    projects: &Projects,
    default_project: &str,
    (retention_days, epoch_s): (u64, u64),
    now: u64,
    store: Option<&OtherWriters>,
) -> anyhow::Result<Removed> {
    let mut removed = Removed::default();
    if retention_days > 0 {
        let cutoff = now.saturating_sub(retention_days * 86_400) as i64;
        let c = crate::rewards::writing_conn(&crate::store::db_path(data_dir), store)?;
        let project = projects.get(default_project);
        let processed = match &project {
            Some(p) => p.db.read(ProjectDb::cursor)??,
            None => None,
        };
        let sealed_until = ledger_last_sealed(&c)?.map(|e| (e as i64 + 1) * epoch_s as i64);
        if let (Some(processed), Some(sealed_until)) = (processed, sealed_until) {
            let turns = store.map(|s| &*s.turns);
            removed.events = remove_events(&c, turns, processed, cutoff, sealed_until)?;
        }
        let upto = ledger_meta(&c, "events_removed_upto")?.unwrap_or(0);
        let accrued = ledger_meta(&c, "credits_rowid")?.unwrap_or(0);
        if let Some(p) = &project {
            removed.seen = batched(&p.db, "_ws_seen", "event_id <= ?1", params![upto])?;
            batched(&p.db, "_ws_calls", "event_id <= ?1", params![upto])?;
            removed.credits = batched(
                &p.db,
                "_ws_credits",
                "rowid <= ?1 AND timestamp < ?2 AND rowid < (SELECT MAX(rowid) FROM _ws_credits)",
                params![accrued, cutoff],
            )?;
        }
        for name in projects.names() {
            if let Some(p) = projects.get(&name) {
                removed.failures += batched(&p.db, "_ws_failures", "at < ?1", params![cutoff])?;
                removed.txs += batched(&p.db, "_ws_txs", TXS_DONE_BEFORE, params![cutoff])?;
            }
        }
    }
    removed.cache_files = remove_stale_cache(&data_dir.join("applet-cache"), projects, now)?;
    Ok(removed)
}

/// Deletes the events the module docs allow, a batch per turn at the write
/// lock; records the highest id removed.
///
/// Which events a batch deletes is read before its turn: every condition
/// only admits more events as time goes on (the cursors grow, nobody else
/// deletes the newest event), so the ids read still qualify when the turn
/// comes; one another process deleted meanwhile is not counted.
fn remove_events(
    c: &Connection,
    turns: Option<&Turns>,
    processed: i64,
    cutoff: i64,
    sealed_until: i64,
) -> rusqlite::Result<u64> {
    let mut total = 0;
    let mut batch = MIN_BATCH;
    loop {
        let ids: Vec<i64> = c
            .prepare_cached(
                "SELECT id FROM events WHERE id <= ?1 AND received_at < ?2 AND timestamp < ?3
                 AND id < (SELECT MAX(id) FROM events) ORDER BY id LIMIT ?4",
            )?
            .query_map(params![processed, cutoff, sealed_until, batch], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let Some(&last) = ids.last() else {
            return Ok(total);
        };
        let turn = turns.map(|t| t.take(TurnOf::Retention));
        let began = Instant::now();
        // The store's writing connection when its turns lend it.
        let shared = turn.as_ref().and_then(|t| t.conn());
        let tx = Transaction::new_unchecked(shared.as_deref().unwrap_or(c), TransactionBehavior::Immediate)?;
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
        for id in &ids {
            total += delete.execute([id])? as u64;
        }
        drop(delete);
        tx.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('events_removed_upto', ?1)
             ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
            [last],
        )?;
        tx.commit()?;
        let took = began.elapsed();
        drop(shared);
        drop(turn);
        batch = crate::rewards::pace::within(batch, ids.len(), took, LOCK_BUDGET, (MIN_BATCH, BATCH));
    }
}

/// `DELETE FROM table WHERE cond` in a project database, [`BATCH`] rows at a
/// time; the database goes back to its slot between batches, so the applet
/// worker waits for one batch at most.
fn batched(slot: &DbSlot, table: &str, cond: &str, p: impl rusqlite::Params + Copy) -> anyhow::Result<u64> {
    let sql =
        format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {cond} LIMIT {BATCH})");
    let mut total = 0;
    loop {
        let n = slot.read(|db| db.conn().execute(&sql, p))?? as u64;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Compiled modules in `dir` that no stored applet uses, last written over a
/// day ago.
fn remove_stale_cache(dir: &Path, projects: &Projects, now: u64) -> anyhow::Result<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let deployed: std::collections::HashSet<String> = projects.definitions().with(|c| {
        c.rows("SELECT hash FROM applets", &[])?
            .iter()
            .map(|r| Ok(r[0].text(0)?.to_string()))
            .collect()
    })?;
    let day_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(now.saturating_sub(86_400));
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(hash), Some("cwasm")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < day_ago);
        if old && !deployed.contains(hash) {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
