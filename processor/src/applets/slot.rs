//! Where a project's database lives between uses. A call moves the database
//! out (the applet's store owns it while it runs) and puts it back; this slot
//! makes that safe:
//! - it is shared by every version of the project (a redeploy swaps applets,
//!   not the database), so a worker holding the previous version never finds
//!   the database gone;
//! - if the holder panicked, the database it held was dropped (its open
//!   transaction rolled back by SQLite) and the lock poisoned: the next user
//!   ignores the poison and reopens the database from its file.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::db::{DbError, ProjectDb};

pub struct DbSlot {
    /// `None`: an in-memory database (replay, tests).
    path: Option<PathBuf>,
    statement_limit: Duration,
    db: Mutex<Option<ProjectDb>>,
}

impl DbSlot {
    /// A slot for the database at `path` (opened now, so errors show at once).
    pub fn open(path: Option<PathBuf>, statement_limit: Duration) -> Result<Self, DbError> {
        let db = ProjectDb::open(path.as_deref(), statement_limit)?;
        Ok(DbSlot {
            path,
            statement_limit,
            db: Mutex::new(Some(db)),
        })
    }

    /// Runs `f` with the database moved in; `f` hands it back with its result.
    pub fn with<R>(&self, f: impl FnOnce(ProjectDb) -> (ProjectDb, R)) -> Result<R, DbError> {
        let mut slot = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let db = match slot.take() {
            Some(db) => db,
            None => {
                tracing::warn!(path = ?self.path, "reopening a project database after a failed call");
                ProjectDb::open(self.path.as_deref(), self.statement_limit)?
            }
        };
        let (db, r) = f(db);
        *slot = Some(db);
        Ok(r)
    }

    /// Runs a read with the database borrowed.
    pub fn read<R>(&self, f: impl FnOnce(&ProjectDb) -> R) -> Result<R, DbError> {
        self.with(|db| {
            let r = f(&db);
            (db, r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
