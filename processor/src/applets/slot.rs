//! Where a project's database lives between uses. A call moves the database
//! out (the applet's store owns it while it runs) and puts it back; this slot
//! makes that safe:
//! - it is shared by every version of the project (a redeploy swaps applets,
//!   not the database), so a worker holding the previous version never finds
//!   the database gone;
//! - if the holder panicked, the database it held was dropped (its open
//!   transaction rolled back by SQLite) and the lock poisoned: the next user
//!   ignores the poison and reopens the database from its file.
//!
//! A file's commits are checkpointed by a thread of the slot's own
//! ([`crate::store::checkpoint`]): inline, SQLite's automatic checkpoint was 9 %
//! of the applet worker's time in the sustained profile, every few batches.
//!
//! Readers that must not wait for the worker (the ledger's accrual, which
//! reads new credits every second) take a snapshot instead: a connection of
//! their own in a read transaction. The database is in WAL mode, so such a
//! reader neither waits for the worker's batch nor holds it up; before, the
//! accrual held the database through the ledger's write and fsync, and the
//! worker stood still for it (the sustained profile: the worker ran 41 % of
//! the time while it was the bound).

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::db::{DbError, ProjectDb};
use crate::store::checkpoint::{Checkpointer, RESTART_BYTES};

pub struct DbSlot {
    /// `None`: an in-memory database (replay, tests).
    path: Option<PathBuf>,
    statement_limit: Duration,
    db: Mutex<Option<ProjectDb>>,
    /// The snapshot readers' connection, opened on first use.
    reader: Mutex<Option<rusqlite::Connection>>,
    /// The file's checkpoint thread (none in memory).
    checkpointer: Option<Checkpointer>,
}

impl DbSlot {
    /// A slot for the database at `path` (opened now, so errors show at once).
    pub fn open(path: Option<PathBuf>, statement_limit: Duration) -> Result<Self, DbError> {
        let checkpointer = match &path {
            Some(p) => Some(Checkpointer::start(p, "project-checkpoint", None, RESTART_BYTES)?),
            None => None,
        };
        let db = open_hooked(path.as_deref(), statement_limit, checkpointer.as_ref())?;
        Ok(DbSlot {
            path,
            statement_limit,
            db: Mutex::new(Some(db)),
            reader: Mutex::new(None),
            checkpointer,
        })
    }

    /// Runs `f` with the database moved in; `f` hands it back with its result.
    pub fn with<R>(&self, f: impl FnOnce(ProjectDb) -> (ProjectDb, R)) -> Result<R, DbError> {
        let mut slot = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let db = match slot.take() {
            Some(db) => db,
            None => {
                tracing::warn!(path = ?self.path, "reopening a project database after a failed call");
                open_hooked(
                    self.path.as_deref(),
                    self.statement_limit,
                    self.checkpointer.as_ref(),
                )?
            }
        };
        let (db, r) = f(db);
        *slot = Some(db);
        Ok(r)
    }

    /// Runs `f` on a consistent snapshot of the committed database, without
    /// waiting for the holder of the database (an in-memory database has one
    /// connection only, so there `f` waits its turn as [`DbSlot::read`] does).
    pub fn snapshot<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> R) -> Result<R, DbError> {
        let Some(path) = &self.path else {
            return self.read(|db| f(db.conn()));
        };
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.is_none() {
            let c = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(Duration::from_secs(5))?;
            *reader = Some(c);
        }
        let c = reader.as_ref().expect("opened above");
        // Read-only, so dropping it (a rollback) loses nothing.
        let tx = c.unchecked_transaction()?;
        Ok(f(&tx))
    }

    /// Runs a read with the database borrowed.
    pub fn read<R>(&self, f: impl FnOnce(&ProjectDb) -> R) -> Result<R, DbError> {
        self.with(|db| {
            let r = f(&db);
            (db, r)
        })
    }
}

/// The database, its commits hooked to `checkpointer` when it has one.
fn open_hooked(
    path: Option<&std::path::Path>,
    statement_limit: Duration,
    checkpointer: Option<&Checkpointer>,
) -> Result<ProjectDb, DbError> {
    let mut db = ProjectDb::open(path, statement_limit)?;
    if let Some(cp) = checkpointer {
        db.checkpoint_on(cp)?;
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_what_is_committed_while_another_holds_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let slot = std::sync::Arc::new(
            DbSlot::open(Some(dir.path().join("p.db")), Duration::from_millis(100)).unwrap(),
        );
        slot.read(|db| db.kv_set(b"k", b"committed").unwrap()).unwrap();
        let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                slot.with(|db| {
                    // The worker in the middle of a batch.
                    db.conn().execute_batch("BEGIN IMMEDIATE").unwrap();
                    db.kv_set(b"k", b"uncommitted").unwrap();
                    held.0.send(()).unwrap();
                    release.1.recv().unwrap();
                    db.conn().execute_batch("ROLLBACK").unwrap();
                    (db, ())
                })
                .unwrap()
            })
        };
        held.1.recv().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let v = slot.snapshot(|c| {
                    c.query_row("SELECT value FROM _ws_kv WHERE key = ?1", [&b"k"[..]], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .unwrap()
                });
                tx.send(v.unwrap()).unwrap();
            });
        }
        // Answered while the holder still holds (a snapshot that waited for
        // it would never answer: the holder waits for this answer).
        let seen = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the snapshot waited for the holder");
        assert_eq!(seen, b"committed");
        release.0.send(()).unwrap();
        holder.join().unwrap();
    }

    #[test]
    fn a_panic_while_holding_the_database_costs_only_that_call() {
        let dir = tempfile::tempdir().unwrap();
        let slot = DbSlot::open(Some(dir.path().join("p.db")), Duration::from_millis(100)).unwrap();
        slot.read(|db| db.kv_set(b"k", b"kept").unwrap()).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.with(|db| -> (ProjectDb, ()) {
                db.conn().execute_batch("BEGIN").unwrap();
                db.kv_set(b"k", b"half-done").unwrap();
                panic!("a bug in the middle of a batch");
            })
        }));
        assert!(panicked.is_err());
        // The next user gets a working database with the unfinished work rolled back.
        let v = slot.read(|db| db.kv_get(b"k").unwrap()).unwrap();
        assert_eq!(v.as_deref(), Some(&b"kept"[..]));
    }
}
