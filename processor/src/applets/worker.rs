//! Runs the default project's applets over the stored event stream, in event-id
//! order, on its own thread. Only committed, non-duplicate events reach applets,
//! so a replayed reading never runs twice. Each batch of events is one
//! transaction in the project database: the applets' own writes (a savepoint per
//! call, rolled back when the call fails), their logs, failures and ledger
//! credits, and the cursor that says which event was processed last. A crash
//! re-runs the unfinished batch from the same state, so effects happen once.
//!
//! For each event the applets whose strategy matches its type (`DATA`) run in
//! deployment order; an applet that returns non-zero, traps or times out stops
//! the chain for that event (so an identity applet can gate the reward
//! applets). A new project starts at the newest event: applets see the events
//! that arrive after they are deployed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::params;

use super::db::ProjectDb;
use super::event::{Chain, run_event_sqlite};
use super::projects::{Project, Projects};
use crate::metrics::Metrics;
use crate::store::SqliteReads as Reads;
use crate::store::sql::{Sql, Val};
use wattstream_rewards::PaidTime;

/// Events per transaction. A batch dirties each page of the per-device
/// tables (paid times, the identity applet's rows, balances) once, however
/// many of its events land there: 1,024 rather than 256 wrote a fifth less
/// in the sustained run.
pub(crate) const BATCH: usize = 1024;
/// Log lines kept per project.
pub(crate) const LOGS_KEPT: i64 = 10_000;

pub(crate) struct StoredEvent {
    pub(crate) id: i64,
    pub(crate) device_id: String,
    pub(crate) data: String,
    pub(crate) signature: Vec<u8>,
    pub(crate) timestamp: i64,
    pub(crate) public_key: String,
    pub(crate) owner: Option<String>,
    pub(crate) revoked: bool,
    pub(crate) registered_at: i64,
}

/// Wakes the worker.
#[derive(Clone, Default)]
pub struct Waker(Arc<(Mutex<bool>, Condvar)>);

impl Waker {
    pub fn wake(&self) {
        let (flag, cv) = &*self.0;
        *flag.lock().expect("waker lock") = true;
        cv.notify_one();
    }

    fn wait(&self, timeout: Duration) {
        let (flag, cv) = &*self.0;
        let guard = flag.lock().expect("waker lock");
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .expect("waker lock");
        *guard = false;
    }
}

/// The stored stream the worker runs over.
pub enum Stream {
    /// The SQLite store: one worker, a cursor per project.
    Sqlite(Reads),
    /// PostgreSQL: any number of workers, leased work ([`super::lease`]).
    Postgres(super::lease::PgWork),
}

/// The running worker.
pub struct Worker {
    pub waker: Waker,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker for `project`.
    pub fn start(
        projects: Arc<Projects>,
        stream: Stream,
        config: crate::config::AppletsConfig,
        paid: PaidTime,
        metrics: Arc<Metrics>,
    ) -> Worker {
        let project = config.default_project;
        // (first event of the failing batch, consecutive failures)
        let mut strikes = (0i64, 0u32);
        let waker = Waker::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (waker.clone(), stop.clone());
        let mut prepared = false;
        let handle = std::thread::Builder::new()
            .name("applet-worker".into())
            .spawn(move || {
                supervise(&s, &w, &metrics.worker, || {
                    // Lag before and after: a long batch shows as lag while it runs.
                    metrics.worker.set_lag(lag(&projects, &stream, &project)?);
                    let step = match &stream {
                        Stream::Sqlite(reads) => process(&projects, reads, &project, &metrics, paid),
                        Stream::Postgres(work) => {
                            let p = projects.get(&project);
                            if !prepared {
                                super::lease::prepare(work, &project)?;
                                prepared = true;
                            }
                            match super::lease::process(work, &projects.runtime, &project, p.as_ref(), &metrics, paid) {
                                Err(e) if e.is::<super::lease::Stale>() => {
                                    tracing::info!("{e}");
                                    projects.reload(&project)?;
                                    Ok(0)
                                }
                                other => other,
                            }
                        }
                    };
                    let n = match step {
                        Ok(n) => n,
                        Err(e) => {
                            let Some(failed) = e.downcast_ref::<BatchFailed>() else {
                                return Err(e);
                            };
                            let first = failed.first_event;
                            strikes = (first, if strikes.0 == first { strikes.1 + 1 } else { 1 });
                            if strikes.1 < config.quarantine_after {
                                return Err(e);
                            }
                            tracing::error!(event = first, tries = strikes.1, error = %e, "quarantining an event whose batch keeps failing");
                            let why = format!("quarantined after {} failed batches: {e:#}", strikes.1);
                            match &stream {
                                Stream::Sqlite(_) => quarantine(&projects, &project, first, &why)?,
                                Stream::Postgres(work) => super::lease::quarantine(work, &project, first, &why)?,
                            }
                            1
                        }
                    };
                    metrics.worker.set_lag(lag(&projects, &stream, &project)?);
                    Ok(n)
                })
            })
            .expect("spawn the applet worker");
        Worker {
            waker,
            stop,
            handle: Some(handle),
        }
    }

    /// Finishes the batch in progress and stops.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The worker's loop under supervision: a step that panics is logged,
/// counted and run again after a pause, so the worker never dies silently;
/// a step that covered a whole batch runs again at once, otherwise the loop
/// waits to be woken (or half a second).
fn supervise(
    stop: &AtomicBool,
    waker: &Waker,
    health: &crate::metrics::WorkerHealth,
    mut step: impl FnMut() -> anyhow::Result<usize>,
) {
    while !stop.load(Ordering::Relaxed) {
        health.beat();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut step)) {
            Ok(Ok(n)) if n == BATCH => continue,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "applet worker"),
            Err(_) => {
                health.restarted();
                tracing::error!(
                    "the applet worker panicked; restarting it (the unfinished batch runs again)"
                );
            }
        }
        waker.wait(Duration::from_millis(500));
    }
}

/// A batch that failed as a whole (its transaction rolled back).
#[derive(Debug, thiserror::Error)]
#[error("the batch from event {first_event} failed: {source:#}")]
pub struct BatchFailed {
    pub first_event: i64,
    source: anyhow::Error,
}

impl BatchFailed {
    pub fn new(first_event: i64, source: anyhow::Error) -> Self {
        BatchFailed { first_event, source }
    }
}

/// Skips `event` for good: a failure row says why, and the cursor moves past it.
fn quarantine(projects: &Projects, name: &str, event: i64, why: &str) -> anyhow::Result<()> {
    let Some(project) = projects.get(name) else {
        return Ok(());
    };
    project.db.with(|db| {
        let r = (|| -> rusqlite::Result<()> {
            let c = db.conn();
            c.execute_batch("BEGIN IMMEDIATE")?;
            c.execute(
                "INSERT INTO _ws_failures (event_id, applet, code, error, at) VALUES (?1, '*', NULL, ?2, ?3)",
                params![event, why, wattstream_sdk::time::unix_now() as i64],
            )?;
            c.execute(
                "UPDATE _ws_cursor SET last_event_id = ?1 WHERE id = 1 AND last_event_id < ?1",
                [event],
            )?;
            c.execute_batch("COMMIT")
        })();
        if r.is_err() {
            let _ = db.conn().execute_batch("ROLLBACK");
        }
        (db, r)
    })??;
    Ok(())
}

/// Stored events the project's chain has still to run.
fn lag(projects: &Projects, stream: &Stream, name: &str) -> anyhow::Result<u64> {
    match stream {
        Stream::Sqlite(reads) => cursor_lag(projects, reads, name),
        Stream::Postgres(work) => Ok(super::lease::lag(work, name)?),
    }
}

/// Stored events after the project's cursor (0 when it has no chain yet).
fn cursor_lag(projects: &Projects, reads: &Reads, name: &str) -> anyhow::Result<u64> {
    let Some(project) = projects.get(name) else {
        return Ok(0);
    };
    let cursor = project.db.read(ProjectDb::cursor)??;
    let Some(cursor) = cursor else { return Ok(0) };
    let newest: i64 =
        reads.with_blocking(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0)))?;
    Ok(newest.saturating_sub(cursor).max(0) as u64)
}

pub(crate) fn load_events(reads: &Reads, after: i64) -> anyhow::Result<Vec<StoredEvent>> {
    reads.with_blocking(|c| Ok(load_events_sql(c, after)))?
}

/// The next [`BATCH`] stored events after `after`, with their devices, in id
/// order (either engine).
pub(crate) fn load_events_sql(c: &dyn Sql, after: i64) -> anyhow::Result<Vec<StoredEvent>> {
    c.rows(
        "SELECT e.id, e.device_id, e.data, e.signature, e.timestamp, d.public_key, d.owner, d.revoked_at, d.registered_at
         FROM events e JOIN devices d ON d.device_id = e.device_id
         WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        &[Val::Int(after), Val::Int(BATCH as i64)],
    )?
    .iter()
    .map(|r| stored_event(r))
    .collect()
}

/// A row of `e.id, e.device_id, e.data, e.signature, e.timestamp,
/// d.public_key, d.owner, d.revoked_at, d.registered_at`.
pub(crate) fn stored_event(r: &[Val]) -> anyhow::Result<StoredEvent> {
    Ok(StoredEvent {
        id: r[0].int(0)?,
        device_id: r[1].text(1)?.to_string(),
        data: r[2].text(2)?.to_string(),
        signature: match &r[3] {
            Val::Blob(b) => b.clone(),
            other => anyhow::bail!("stored signature of event {:?} is not bytes: {other:?}", r[0]),
        },
        timestamp: r[4].int(4)?,
        public_key: r[5].text(5)?.to_string(),
        owner: r[6].opt_text(6)?.map(str::to_string),
        revoked: r[7] != Val::Null,
        registered_at: r[8].int(8)?,
    })
}

/// Processes one batch; returns how many events it covered.
pub fn process(
    projects: &Projects,
    reads: &Reads,
    name: &str,
    metrics: &Metrics,
    paid: PaidTime,
) -> anyhow::Result<usize> {
    let Some(project) = projects.get(name) else {
        return Ok(0);
    };
    if project.chain("DATA").next().is_none() {
        return Ok(0);
    }
    project
        .db
        .with(|db| process_batch(projects, reads, &project, db, metrics, paid))?
}

fn process_batch(
    projects: &Projects,
    reads: &Reads,
    project: &Project,
    db: ProjectDb,
    metrics: &Metrics,
    paid: PaidTime,
) -> (ProjectDb, anyhow::Result<usize>) {
    let chain = Chain::live(&projects.runtime, project, metrics, paid);
    match start_batch(reads, &db) {
        Ok(Some((cursor, events))) => run_batch(&chain, db, cursor, events),
        Ok(None) => (db, Ok(0)),
        Err(e) => (db, Err(e)),
    }
}

/// The cursor and the events after it; `None` when there is nothing to do.
fn start_batch(reads: &Reads, db: &ProjectDb) -> anyhow::Result<Option<(i64, Vec<StoredEvent>)>> {
    let cursor = db.cursor()?;
    let Some(cursor) = cursor else {
        let newest: i64 = reads
            .with_blocking(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0)))?;
        db.conn().execute(
            "INSERT INTO _ws_cursor (id, last_event_id) VALUES (1, ?1)",
            [newest],
        )?;
        // Where this project's stream starts, for `rewards replay`.
        db.conn().execute(
            "INSERT OR REPLACE INTO _ws_meta (key, value) VALUES ('start_event_id', ?1)",
            [newest],
        )?;
        return Ok(None);
    };
    let events = load_events(reads, cursor)?;
    Ok((!events.is_empty()).then_some((cursor, events)))
}

fn run_batch(
    chain: &Chain<'_>,
    mut db: ProjectDb,
    cursor: i64,
    events: Vec<StoredEvent>,
) -> (ProjectDb, anyhow::Result<usize>) {
    if let Err(e) = db.conn().execute_batch("BEGIN IMMEDIATE") {
        return (db, Err(e.into()));
    }
    let mut result = Ok(());
    for ev in &events {
        let (back, r) = run_event_sqlite(chain, db, ev);
        db = back;
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    let last = events.last().map(|e| e.id).unwrap_or(cursor);
    let result = result.and_then(|()| {
        let c = db.conn();
        c.execute("UPDATE _ws_cursor SET last_event_id = ?1 WHERE id = 1", [last])?;
        c.execute(
            "DELETE FROM _ws_logs WHERE id <= (SELECT MAX(id) FROM _ws_logs) - ?1",
            [LOGS_KEPT],
        )?;
        c.execute_batch("COMMIT")?;
        Ok(())
    });
    if result.is_err() {
        let _ = db.conn().execute_batch("ROLLBACK");
    }
    let first_event = events.first().map_or(cursor, |e| e.id);
    (
        db,
        result
            .map(|()| events.len())
            .map_err(|source| BatchFailed { first_event, source }.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WorkerHealth;

    #[test]
    fn a_panicking_step_is_restarted_and_counted() {
        let (stop, waker, health) = (AtomicBool::new(false), Waker::default(), WorkerHealth::default());
        let mut calls = 0;
        supervise(&stop, &waker, &health, || {
            calls += 1;
            if calls == 1 {
                panic!("a bug in the first batch");
            }
            stop.store(true, Ordering::Relaxed);
            Ok(0)
        });
        assert_eq!((calls, health.restarts()), (2, 1));
        assert!(health.since_beat().is_some());
    }
}
