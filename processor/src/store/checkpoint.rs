//! Checkpoints the store's WAL on a thread of its own, so the ingest writer
//! never does it.
//!
//! SQLite's automatic checkpoint runs in the connection whose commit took the
//! WAL past 1,000 pages, right after that commit: on the ingest writer, every
//! few groups, copying the pages into the database file and fsyncing it while
//! the next group of requests waited. The sustained ingest profile showed it:
//! `walCheckpoint` was 13.5 % of the processor's samples, all of it on the
//! writer thread between two groups.
//!
//! Here the writer's connection reports its WAL size after each commit (a WAL
//! hook, which also turns its automatic checkpoint off), and past
//! [`WAL_BYTES`] it wakes this thread, which runs a `PASSIVE` checkpoint on its
//! own connection: it copies what no reader still needs and never takes the
//! write lock, so ingest goes on meanwhile. Every connection that writes the
//! same file much gets the same hook ([`Hooks`]): the ledger's, whose commits
//! ran SQLite's checkpoint inline too (half of the accrual's commit time in
//! the sustained profile). A project database has a thread of its own (its
//! [`crate::applets::slot::DbSlot`]), off the applet worker. Invariants:
//! - the WAL is checkpointed as often as SQLite's default would (past about
//!   4 MiB, its 1,000 pages of 4 KiB), so it does not grow without bound
//!   under a steady load;
//! - a checkpoint that could not finish (a reader holds an old snapshot) is
//!   tried again on the next commit's report, at most every [`MIN_GAP`];
//! - the thread stops when the last [`Checkpointer`] handle is dropped (the
//!   writer's, when the writer stops); SQLite checkpoints the rest when the
//!   last connection closes.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// WAL size after a commit that asks for a checkpoint (SQLite's default for
/// its automatic one: 1,000 pages of 4 KiB). In pages of the connection's own
/// size, so a database with small pages is not checkpointed four times as
/// often: a page rewritten by many commits is copied once per checkpoint.
pub const WAL_BYTES: i64 = 4 << 20;
/// Shortest time between two checkpoints (one that could not finish is not
/// retried in a loop).
pub const MIN_GAP: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    wanted: bool,
    stop: bool,
    /// Checkpoints asked for (by a commit's report) and made, and the newest
    /// one's `(WAL frames, frames copied)`.
    asked: u64,
    made: u64,
    last: (i64, i64),
}

#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    /// Wakes the thread.
    cv: Condvar,
    /// Wakes those waiting for a checkpoint ([`Checkpointer::wait_made`]).
    made: Condvar,
}

impl Signal {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Stops the thread when dropped.
struct Guard(Arc<Signal>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.cv.notify_one();
    }
}

/// A handle on the checkpoint thread; clones share it, and the thread stops
/// when the last one is dropped.
#[derive(Clone)]
pub struct Checkpointer {
    hooks: Hooks,
    _guard: Arc<Guard>,
}

/// What hooks a connection to the thread, without keeping the thread alive:
/// once it has stopped, a hooked connection's commits ask nobody (SQLite
/// checkpoints when the last connection closes).
#[derive(Clone)]
pub struct Hooks(Arc<Signal>);

impl Hooks {
    /// Has `conn`'s commits ask the thread for checkpoints instead of
    /// checkpointing themselves.
    pub fn hook(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let threshold = (WAL_BYTES / page.max(512)) as i32;
        let signal = self.0.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages >= threshold {
                let mut s = signal.lock();
                s.wanted = true;
                s.asked += 1;
                signal.cv.notify_one();
            }
            Ok(())
        }))
    }
}

impl Checkpointer {
    /// Starts the thread `name` on its own connection to the database at
    /// `path`.
    pub fn start(path: &Path, name: &str) -> rusqlite::Result<Self> {
        let mut conn = Connection::open(path)?;
        super::schema::wait_for_locks(&mut conn)?;
        let signal = Arc::new(Signal::default());
        let s = signal.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(conn, &s))
            .expect("spawn a checkpoint thread");
        Ok(Checkpointer {
            _guard: Arc::new(Guard(signal.clone())),
            hooks: Hooks(signal),
        })
    }

    /// See [`Hooks::hook`].
    pub fn hook(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        self.hooks.hook(conn)
    }

    /// Hooks for other connections to the same file.
    pub fn hooks(&self) -> Hooks {
        self.hooks.clone()
    }

    /// Checkpoints asked for so far.
    pub fn asked(&self) -> u64 {
        self.hooks.0.lock().asked
    }

    /// Waits up to `timeout` until `n` checkpoints were made; returns the
    /// newest one's `(WAL frames, frames copied)`, or `None` on timeout.
    pub fn wait_made(&self, n: u64, timeout: Duration) -> Option<(i64, i64)> {
        let signal = &self.hooks.0;
        let s = signal.lock();
        let (s, _) = signal
            .made
            .wait_timeout_while(s, timeout, |s| s.made < n)
            .unwrap_or_else(|p| p.into_inner());
        (s.made >= n).then_some(s.last)
    }
}

fn run(conn: Connection, signal: &Signal) {
    let mut last = Instant::now() - MIN_GAP;
    loop {
        {
            let s = signal.lock();
            let mut s = signal
                .cv
                .wait_while(s, |s| !s.wanted && !s.stop)
                .unwrap_or_else(|p| p.into_inner());
            if s.stop {
                return;
            }
            s.wanted = false;
        }
        // Throttle a checkpoint that a reader keeps from finishing.
        if let Some(wait) = MIN_GAP.checked_sub(last.elapsed()) {
            std::thread::sleep(wait);
        }
        last = Instant::now();
        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match r {
            Ok(frames) => {
                let mut s = signal.lock();
                s.made += 1;
                s.last = frames;
                signal.made.notify_all();
            }
            Err(e) => tracing::warn!(error = %e, "checkpointing a WAL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store-configured database with a table, its writer's connection
    /// hooked to a checkpoint thread.
    fn hooked_writer() -> (tempfile::TempDir, std::path::PathBuf, Connection, Checkpointer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = Connection::open(&path).unwrap();
        super::super::schema::configure(&mut writer).unwrap();
        writer.execute_batch("CREATE TABLE t (x BLOB NOT NULL)").unwrap();
        let cp = Checkpointer::start(&path, "test-checkpoint").unwrap();
        cp.hook(&mut writer).unwrap();
        (dir, path, writer, cp)
    }

    #[test]
    fn the_writers_big_commits_are_checkpointed_by_the_thread_not_the_writer() {
        let (_dir, _, writer, cp) = hooked_writer();
        let page: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let threshold = WAL_BYTES / page;
        let fill = |c: &Connection, bytes: i64| {
            let tx = c.unchecked_transaction().unwrap();
            for _ in 0..bytes / 3000 {
                tx.execute("INSERT INTO t (x) VALUES (zeroblob(3000))", [])
                    .unwrap();
            }
            tx.commit().unwrap();
        };
        // Below the threshold nothing is asked for.
        fill(&writer, WAL_BYTES / 10);
        assert_eq!(cp.asked(), 0);
        // Past it the commit asks, and the thread copies every frame (no
        // reader holds an old snapshot here).
        fill(&writer, WAL_BYTES);
        assert_eq!(cp.asked(), 1);
        let (wal, copied) = cp
            .wait_made(1, Duration::from_secs(60))
            .expect("the thread checkpoints");
        assert!(wal >= threshold && copied == wal, "{wal} frames, {copied} copied");
        // The writer did not checkpoint by itself: its automatic checkpoint
        // is off (the WAL hook replaced it), so the WAL was still whole when
        // the thread got to it.
        let auto: i64 = writer
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0);
    }

    #[test]
    fn another_hooked_connection_asks_the_same_thread() {
        let (_dir, path, _writer, cp) = hooked_writer();
        // The ledger's connection: hooked without keeping the thread alive.
        let mut ledger = Connection::open(&path).unwrap();
        cp.hooks().hook(&mut ledger).unwrap();
        let tx = ledger.unchecked_transaction().unwrap();
        for _ in 0..WAL_BYTES / 3000 + 1 {
            tx.execute("INSERT INTO t (x) VALUES (zeroblob(3000))", [])
                .unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(cp.asked(), 1, "the ledger's big commit asked the thread");
        let (wal, copied) = cp.wait_made(1, Duration::from_secs(60)).unwrap();
        assert!(copied == wal && wal > 0, "{wal} frames, {copied} copied");
    }
}
