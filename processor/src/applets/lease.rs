//! The applet worker on PostgreSQL: any number of processors run a project's
//! chain over the shared stream, each event exactly once, in the order a
//! single processor (and `rewards replay`) would.
//!
//! - **Work is rows, not a cursor.** Ingest writes an `applet_pending` row for
//!   each new event in the event's own transaction. A batch deletes the rows of
//!   the events it ran in the transaction that writes their effects (KV,
//!   paid time, logs, failures, credits for the ledger): a processor killed
//!   mid-batch leaves the rows, and the next lease runs them. A cursor would
//!   not do: a lower event id can commit after a higher one.
//! - **Leases are per device.** A batch takes an advisory lock per device
//!   (`pg_try_advisory_xact_lock`, skipping devices another processor holds)
//!   and runs only those devices' events, oldest first. What an applet keeps
//!   per device (paid time, KV) therefore changes in event order, as it does
//!   with one processor, and never from two processes at once.
//! - **Only final events.** A batch runs events at or below the ledger's
//!   bound on final ids ([`queue::settled`]): an event of the same device that
//!   is still being ingested with a lower id is never overtaken.
//! - **The chain is the stored one.** A batch holds the definitions lock
//!   shared (a deploy takes it alone) and runs only when the chain this
//!   processor loaded is the chain stored; otherwise it asks for a reload
//!   ([`Stale`]). A processor that has not yet heard of a deploy never runs
//!   events with the old chain, nor takes a missing chain for "nothing to do".
//! - **The project's tables** are in its own schema ([`tables::pg_schema`]),
//!   found first on the batch's `search_path`.

use std::sync::Arc;

use wattstream_rewards::PaidTime;

use super::event::{Chain, run_event};
use super::host_db::HostDb;
use super::projects::Project;
use super::runtime::Runtime;
use super::tables;
use super::worker::{BATCH, BatchFailed, LOGS_KEPT, StoredEvent, stored_event};
use crate::metrics::Metrics;
use crate::rewards::queue;
use crate::store::sql::{PgSql, Sql, SqlError, Val};

/// The chain this processor loaded is not the stored one: reload the project
/// and try again.
#[derive(Debug, thiserror::Error)]
#[error("project {0} changed in the store; reloading it")]
pub struct Stale(pub String);

/// Devices one batch leases at most (a fleet's events arrive a device at a
/// time, so a batch of [`BATCH`] events is that many devices).
const DEVICES: usize = BATCH;

/// The PostgreSQL store the worker runs on.
#[derive(Clone)]
pub struct PgWork {
    pub pool: deadpool_postgres::Pool,
    pub rt: tokio::runtime::Handle,
}

/// Makes the project's schema and tables (at the worker's start), one
/// processor at a time (`CREATE … IF NOT EXISTS` races with itself).
pub fn prepare(work: &PgWork, project: &str) -> Result<(), SqlError> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    let tx = crate::store::sql::Tx::write(&c, super::definitions::DEFINITIONS_LOCK)?;
    tables::ensure_pg(&*tx, project)?;
    super::pg_sql::ensure(&*tx, project)?;
    tx.commit()
}

/// Runs `f` in a read-only transaction that finds `project`'s tables first.
pub fn in_schema<T>(
    work: &PgWork,
    project: &str,
    f: impl FnOnce(&dyn Sql) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    let tx = crate::store::sql::Tx::read(&c)?;
    super::host_db::host_path(&*tx, project)?;
    f(&*tx)
}

/// Runs `f` in a transaction that writes in `project`'s tables, committed
/// when `f` succeeds (the chain sender's outbox updates).
pub fn in_schema_write<T>(
    work: &PgWork,
    project: &str,
    f: impl FnOnce(&dyn Sql) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    c.batch("BEGIN")?;
    let tx = crate::store::sql::Tx::adopt(&c);
    super::host_db::host_path(&*tx, project)?;
    let out = f(&*tx)?;
    tx.commit()?;
    Ok(out)
}

/// Events of `project` still to run (the worker's lag).
pub fn lag(work: &PgWork, project: &str) -> Result<u64, SqlError> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    let n = c
        .row(
            "SELECT COUNT(*) FROM applet_pending WHERE project = ?1",
            &[project.into()],
        )?
        .map_or(Ok(0), |r| r[0].int(0))?;
    Ok(n.max(0) as u64)
}

/// One batch: leases devices, runs their final pending events through the
/// chain, and commits effects and the end of their pending rows together.
/// Returns the events it covered. A project that does not exist (nothing
/// deployed yet) has no chain: its events are done without running.
pub fn process(
    work: &PgWork,
    runtime: &Runtime,
    name: &str,
    project: Option<&Arc<Project>>,
    metrics: &Metrics,
    paid: PaidTime,
) -> anyhow::Result<usize> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    let settled = queue::settled(&c)?;
    c.batch("BEGIN")?;
    let chain = stored_chain(&c, name);
    let loaded: Vec<(String, String)> = project
        .map(|p| {
            p.chain("DATA")
                .map(|a| (a.name.clone(), a.hash.clone()))
                .collect()
        })
        .unwrap_or_default();
    match chain {
        Ok(stored) if stored == loaded => {}
        other => {
            c.batch("ROLLBACK")?;
            other?;
            return Err(Stale(name.to_string()).into());
        }
    }
    let Some(project) = project.filter(|_| !loaded.is_empty()) else {
        // No chain stored: nothing runs, so the events are done (a chain
        // deployed later starts at the events after it, as on SQLite).
        let n = c.exec(
            "DELETE FROM applet_pending WHERE project = ?1 AND event_id <= ?2",
            &[name.into(), Val::Int(settled)],
        );
        c.batch(if n.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        return Ok(n? as usize);
    };
    finish(c, &project.name, |db| {
        run_batch(db, runtime, project, metrics, paid, settled)
    })
}

/// Runs `f` on `project`'s database as applet calls see it, in a transaction
/// of its own (the W3bstream event endpoint): committed when `f` succeeds.
pub fn in_project<R>(
    work: &PgWork,
    project: &str,
    f: impl FnOnce(HostDb) -> (HostDb, anyhow::Result<R>),
) -> anyhow::Result<R> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    c.batch("BEGIN")?;
    if let Err(e) = super::host_db::host_path(&c, project) {
        c.batch("ROLLBACK")?;
        return Err(e.into());
    }
    finish(c, project, f)
}

/// Lends the session `c` (in an open transaction) to `f` as the project's
/// database, then commits (or rolls back on error) and resets the session.
/// Applet SQL runs on it: until it is reset it does not go back to the pool,
/// not even when a panic unwinds through here.
fn finish<R>(
    c: PgSql,
    project: &str,
    f: impl FnOnce(HostDb) -> (HostDb, anyhow::Result<R>),
) -> anyhow::Result<R> {
    c.taint();
    let db = HostDb::Postgres {
        conn: c,
        project: project.to_string(),
    };
    let (db, outcome) = f(db);
    let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = db.sql().batch(end);
    // Whatever applet SQL left on the session (settings, temporary tables,
    // advisory locks) goes before the connection serves anything else.
    let reset = db
        .sql()
        .batch("RESET ALL; DISCARD TEMP; SELECT pg_catalog.pg_advisory_unlock_all()");
    if let (Ok(()), HostDb::Postgres { conn, .. }) = (&reset, &db) {
        conn.clean();
    }
    let n = outcome?;
    ended?;
    reset?;
    Ok(n)
}

/// The batch in the open transaction of `db`, which comes back.
fn run_batch(
    db: HostDb,
    runtime: &Runtime,
    project: &Arc<Project>,
    metrics: &Metrics,
    paid: PaidTime,
    settled: i64,
) -> (HostDb, anyhow::Result<usize>) {
    let name = project.name.as_str();
    let events = match start(db.sql(), project, settled) {
        Ok(events) => events,
        Err(e) => return (db, Err(e)),
    };
    let Some(first_event) = events.first().map(|e| e.id) else {
        return (db, Ok(0));
    };
    let chain = Chain::live(runtime, project, metrics, paid);
    let mut db = db;
    let mut result = Ok(());
    for ev in &events {
        let (back, r) = run_event(&chain, db, ev);
        db = back;
        result = r.and_then(|()| {
            db.sql().exec(
                "DELETE FROM applet_pending WHERE project = ?1 AND event_id = ?2",
                &[name.into(), Val::Int(ev.id)],
            )?;
            Ok(())
        });
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| {
        db.sql().exec(
            "DELETE FROM _ws_logs WHERE id <= (SELECT MAX(id) FROM _ws_logs) - ?1",
            &[Val::Int(LOGS_KEPT)],
        )?;
        Ok(events.len())
    });
    let result = result.map_err(|source| BatchFailed::new(first_event, source).into());
    (db, result)
}

/// The batch's events.
fn start(c: &dyn Sql, project: &Project, settled: i64) -> anyhow::Result<Vec<StoredEvent>> {
    let name = project.name.as_str();
    super::host_db::host_path(c, name)?;
    lease(c, name, settled)
}

/// The project's stored `DATA` chain, `(name, hash)` in order, with the
/// definitions lock held shared until the transaction ends.
fn stored_chain(c: &dyn Sql, project: &str) -> anyhow::Result<Vec<(String, String)>> {
    c.exec(
        "SELECT pg_advisory_xact_lock_shared(?1)",
        &[Val::Int(super::definitions::DEFINITIONS_LOCK)],
    )?;
    c.rows(
        "SELECT name, hash FROM applets WHERE project = ?1 AND event_type = 'DATA' ORDER BY position",
        &[project.into()],
    )?
    .iter()
    .map(|r| Ok((r[0].text(0)?.to_string(), r[1].text(1)?.to_string())))
    .collect()
}

/// The oldest final pending events of devices no other processor holds, in
/// event order, at most [`BATCH`]; each device's events are a prefix of its
/// pending ones. Two statements, and they must be two:
///
/// 1. the candidate devices (those of the oldest pending events) and the ones
///    whose lease this transaction gets (`pg_try_advisory_xact_lock` on a hash
///    of project and device);
/// 2. the leased devices' pending events.
///
/// Under READ COMMITTED each statement reads its own snapshot, taken when it
/// starts. A lease frees when its holder commits, so a lock taken in
/// statement 1 may be one whose holder committed *during* statement 1: a
/// single statement would still see that holder's events as pending (its
/// snapshot is older than the commit) and run them a second time, after
/// their effects were kept (the second run read the first one's paid time,
/// was paid nothing, and wrote that over what the first run saw, so
/// `rewards replay` no longer matched the ledger: the fleet test found it).
/// Statement 2 starts after the locks are held, so it sees every commit of
/// their previous holders. (It was a round trip per device and per lease,
/// which kept a processor on PostgreSQL at a few hundred events a second;
/// two per batch cost nothing that shows.)
fn lease(c: &dyn Sql, project: &str, settled: i64) -> anyhow::Result<Vec<StoredEvent>> {
    let leased = c.rows(
        "WITH oldest AS MATERIALIZED (
             SELECT device_id, event_id FROM applet_pending
             WHERE project = ?1 AND event_id <= ?2 ORDER BY event_id LIMIT ?3),
         candidates AS MATERIALIZED (
             SELECT device_id, MIN(event_id) AS first FROM oldest
             GROUP BY device_id ORDER BY first LIMIT ?4)
         SELECT device_id FROM candidates
         WHERE pg_try_advisory_xact_lock(('x' || encode(substring(sha256(
             convert_to('wattstream/lease', 'UTF8') || '\\x00'::bytea || convert_to(?1, 'UTF8')
             || '\\x00'::bytea || convert_to(device_id, 'UTF8')) FROM 1 FOR 8), 'hex'))::bit(64)::bigint)",
        &[
            project.into(),
            Val::Int(settled),
            Val::Int((BATCH * 4) as i64),
            Val::Int(DEVICES as i64),
        ],
    )?;
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let devices = leased
        .iter()
        .map(|r| Ok(r[0].text(0)?.to_string()))
        .collect::<Result<Vec<_>, SqlError>>()?
        .join(",");
    let rows = c.rows(
        "SELECT e.id, e.device_id, e.data, e.signature, e.timestamp,
                d.public_key, d.owner, d.revoked_at, d.registered_at
         FROM applet_pending p
         JOIN events e ON e.id = p.event_id
         JOIN devices d ON d.device_id = e.device_id
         WHERE p.project = ?1 AND p.event_id <= ?2
           AND p.device_id = ANY(string_to_array(?3, ','))
         ORDER BY p.event_id LIMIT ?4",
        &[
            project.into(),
            Val::Int(settled),
            devices.as_str().into(),
            Val::Int(BATCH as i64),
        ],
    )?;
    rows.iter().map(|r| stored_event(r)).collect()
}

/// Skips `event` for good: a failure row says why, and its pending row goes.
pub fn quarantine(work: &PgWork, project: &str, event: i64, why: &str) -> anyhow::Result<()> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    c.batch("BEGIN")?;
    let r = (|| -> Result<(), SqlError> {
        super::host_db::host_path(&c, project)?;
        tables::failure(
            &c,
            event,
            "*",
            None,
            Some(why),
            wattstream_sdk::time::unix_now() as i64,
        )?;
        c.exec(
            "DELETE FROM applet_pending WHERE project = ?1 AND event_id = ?2",
            &[project.into(), Val::Int(event)],
        )?;
        Ok(())
    })();
    c.batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    Ok(r?)
}
