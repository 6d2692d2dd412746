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
//! Deletes run in short transactions of [`BATCH`] rows, so the ingest writer
//! is never held up for long. `rewards replay` needs the whole stream and says
//! so once events were removed (`ledger_meta.events_removed_upto`).
//!
//! This module is the SQLite store's pass; [`pg`] is PostgreSQL's.

pub mod pg;

use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};

use crate::applets::db::ProjectDb;
use crate::applets::projects::Projects;
use crate::applets::slot::DbSlot;
use crate::rewards::{last_sealed as ledger_last_sealed, meta as ledger_meta};

/// Rows deleted per transaction.
pub const BATCH: i64 = 5000;

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

/// One pass at `now` (Unix seconds).
pub fn run_once(
    data_dir: &Path,
    projects: &Projects,
    default_project: &str,
    retention_days: u64,
    epoch_s: u64,
    now: u64,
) -> anyhow::Result<Removed> {
    let mut removed = Removed::default();
    if retention_days > 0 {
        let cutoff = now.saturating_sub(retention_days * 86_400) as i64;
        let c = crate::rewards::conn(&crate::store::db_path(data_dir))?;
        let project = projects.get(default_project);
        let processed = match &project {
            Some(p) => p.db.read(ProjectDb::cursor)??,
            None => None,
        };
        let sealed_until = ledger_last_sealed(&c)?.map(|e| (e as i64 + 1) * epoch_s as i64);
        if let (Some(processed), Some(sealed_until)) = (processed, sealed_until) {
            removed.events = remove_events(&c, processed, cutoff, sealed_until)?;
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

/// Deletes the events the module docs allow; records the highest id removed.
fn remove_events(c: &Connection, processed: i64, cutoff: i64, sealed_until: i64) -> rusqlite::Result<u64> {
    let mut total = 0;
    loop {
        let tx = c.unchecked_transaction()?;
        let ids: Vec<i64> = tx
            .prepare_cached(
                "SELECT id FROM events WHERE id <= ?1 AND received_at < ?2 AND timestamp < ?3
                 AND id < (SELECT MAX(id) FROM events) ORDER BY id LIMIT ?4",
            )?
            .query_map(params![processed, cutoff, sealed_until, BATCH], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let Some(&last) = ids.last() else {
            return Ok(total);
        };
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
        for id in &ids {
            delete.execute([id])?;
        }
        drop(delete);
        tx.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('events_removed_upto', ?1)
             ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
            [last],
        )?;
        tx.commit()?;
        total += ids.len() as u64;
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
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const DAYS: u64 = 90;
    const OLD: i64 = (NOW - DAYS * 86_400) as i64 - 1_000;
    const EPOCH_S: u64 = 3600;

    /// A store with a default project whose worker has processed up to
    /// `processed`, epochs sealed up to the one holding `OLD`.
    fn store(processed: i64) -> (tempfile::TempDir, Projects) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::db_path(dir.path());
        let mut c = Connection::open(&db).unwrap();
        crate::store::migrate(&mut c).unwrap();
        c.execute_batch(&format!(
            "INSERT INTO project_env (project, key, value) VALUES ('default', 'k', 'v');
             INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at)
             VALUES ({}, 0, x'', x'', x'', '', 0);",
            OLD as u64 / EPOCH_S
        ))
        .unwrap();
        let projects = Projects::open(&db, dir.path()).unwrap();
        let p = projects.get("default").unwrap();
        p.db.read(|db| {
            db.conn()
                .execute(
                    "INSERT INTO _ws_cursor (id, last_event_id) VALUES (1, ?1)",
                    [processed],
                )
                .unwrap()
        })
        .unwrap();
        (dir, projects)
    }

    fn event(dir: &tempfile::TempDir, id: i64, timestamp: i64, received_at: i64) {
        Connection::open(crate::store::db_path(dir.path()))
            .unwrap()
            .execute(
                "INSERT INTO events (id, device_id, seq, timestamp, dedup_key, sensor_reading, data, signature, received_at)
                 VALUES (?1, 'd', ?1, ?2, ?1, 1.0, '{}', x'', ?3)",
                params![id, timestamp, received_at],
            )
            .unwrap();
    }

    fn ids(dir: &tempfile::TempDir) -> Vec<i64> {
        Connection::open(crate::store::db_path(dir.path()))
            .unwrap()
            .prepare("SELECT id FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn pass(dir: &tempfile::TempDir, projects: &Projects, days: u64) -> Removed {
        run_once(dir.path(), projects, "default", days, EPOCH_S, NOW).unwrap()
    }

    #[test]
    fn old_events_go_only_once_processed_and_sealed_and_never_the_newest() {
        let (dir, projects) = store(4);
        let unsealed = (OLD as u64 / EPOCH_S + 1) as i64 * EPOCH_S as i64;
        event(&dir, 1, OLD, OLD);
        event(&dir, 2, OLD, OLD);
        event(&dir, 3, unsealed, OLD); // its epoch is not sealed
        event(&dir, 4, OLD, NOW as i64 - 10); // received recently
        event(&dir, 5, OLD, OLD); // not processed yet
        assert_eq!(pass(&dir, &projects, 0).events, 0, "0 days keeps everything");
        assert_eq!(pass(&dir, &projects, DAYS).events, 2);
        assert_eq!(ids(&dir), vec![3, 4, 5]);
        projects
            .get("default")
            .unwrap()
            .db
            .read(|db| {
                db.conn()
                    .execute("UPDATE _ws_cursor SET last_event_id = 5", [])
                    .unwrap()
            })
            .unwrap();
        assert_eq!(pass(&dir, &projects, DAYS).events, 0, "5 is the newest row");
        assert_eq!(ids(&dir), vec![3, 4, 5]);
        // A new event does not reuse an id below the cursor.
        event(&dir, 6, NOW as i64, NOW as i64);
        assert_eq!(pass(&dir, &projects, DAYS).events, 1);
        assert_eq!(ids(&dir), vec![3, 4, 6]);
    }

    #[test]
    fn taken_credits_and_old_failures_go_and_the_balance_applets_see_stays() {
        let (dir, projects) = store(0);
        let p = projects.get("default").unwrap();
        let address = format!("0x{}", "ab".repeat(20));
        p.db.read(|db| {
            for i in 1..=4i64 {
                db.conn()
                    .execute(
                        "INSERT INTO _ws_credits (event_id, applet, idx, applet_hash, address, amount, timestamp)
                         VALUES (?1, 'a', 0, 'h', ?2, '1000', ?3)",
                        params![i, address, OLD],
                    )
                    .unwrap();
                db.add_to_balance(&address, 1000).unwrap();
            }
            db.conn()
                .execute_batch(&format!(
                    "INSERT INTO _ws_failures (event_id, applet, code, error, at) VALUES (1, 'a', 1, 'x', {OLD});
                     INSERT INTO _ws_failures (event_id, applet, code, error, at) VALUES (2, 'a', 1, 'x', {NOW});"
                ))
                .unwrap();
            // Old ended transactions go; an old one still on its way and a new one stay.
            db.conn()
                .execute_batch(&format!(
                    "INSERT INTO _ws_txs (event_id, applet, idx, chain_id, to_addr, value, data, state, attempts, next_at, at)
                     VALUES (1, 'a', 0, 1, '0x', '0', '0x', 'confirmed', 0, 0, {OLD}),
                            (1, 'a', 1, 1, '0x', '0', '0x', 'failed', 20, 0, {OLD}),
                            (1, 'a', 2, 1, '0x', '0', '0x', 'signed', 0, 0, {OLD}),
                            (2, 'a', 0, 1, '0x', '0', '0x', 'confirmed', 0, 0, {NOW});"
                ))
                .unwrap();
        })
        .unwrap();
        Connection::open(crate::store::db_path(dir.path()))
            .unwrap()
            .execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('credits_rowid', 3)",
                [],
            )
            .unwrap();
        let r = pass(&dir, &projects, DAYS);
        assert_eq!((r.credits, r.failures, r.txs), (3, 1, 2), "{r:?}");
        let states: Vec<String> =
            p.db.read(|db| {
                let mut st = db
                    .conn()
                    .prepare("SELECT state FROM _ws_txs ORDER BY id")
                    .unwrap();
                st.query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            })
            .unwrap();
        assert_eq!(states, ["signed", "confirmed"]);
        let (left, balance) =
            p.db.read(|db| {
                let left: i64 = db
                    .conn()
                    .query_row("SELECT COUNT(*) FROM _ws_credits", [], |r| r.get(0))
                    .unwrap();
                (left, db.balance(&address).unwrap())
            })
            .unwrap();
        assert_eq!(left, 1, "not taken by the ledger yet");
        assert_eq!(balance, 4000, "balanceOf still counts removed credits");
    }

    #[test]
    fn compiled_modules_no_applet_uses_go_after_a_day() {
        let (dir, projects) = store(0);
        let cache = dir.path().join("applet-cache");
        std::fs::create_dir_all(&cache).unwrap();
        let day_old = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - 2 * 86_400);
        for name in ["gone", "deployed", "fresh"] {
            let f = std::fs::File::create(cache.join(format!("{name}.cwasm"))).unwrap();
            let at = if name == "fresh" {
                SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
            } else {
                day_old
            };
            f.set_modified(at).unwrap();
        }
        Connection::open(crate::store::db_path(dir.path()))
            .unwrap()
            .execute(
                "INSERT INTO applets (project, name, hash, wasm, event_type, handler, limits, position, created_at)
                 VALUES ('default', 'x', 'deployed', x'', 'DEFAULT', 'start', '{}', 0, 0)",
                [],
            )
            .unwrap();
        assert_eq!(pass(&dir, &projects, DAYS).cache_files, 1);
        assert!(!cache.join("gone.cwasm").exists());
        assert!(cache.join("deployed.cwasm").exists() && cache.join("fresh.cwasm").exists());
    }
}
