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
//! [`PAGES`] it wakes this thread, which runs a `PASSIVE` checkpoint on its own
//! connection: it copies what no reader still needs and never takes the write
//! lock, so ingest goes on meanwhile. Invariants:
//! - the WAL is checkpointed as often as before (past the same 1,000 pages),
//!   so it does not grow without bound under a steady load;
//! - a checkpoint that could not finish (a reader holds an old snapshot) is
//!   tried again on the next commit's report, at most every [`MIN_GAP`];
//! - the thread stops when the last [`Checkpointer`] handle is dropped (the
//!   writer's, when the writer stops); SQLite checkpoints the rest when the
//!   last connection closes.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// WAL pages after a commit that ask for a checkpoint (SQLite's default for
/// its automatic one).
pub const PAGES: i32 = 1000;
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

/// A handle on the checkpoint thread; clones share it.
#[derive(Clone)]
pub struct Checkpointer {
    signal: Arc<Signal>,
    _guard: Arc<Guard>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to the database at `path`.
    pub fn start(path: &Path) -> rusqlite::Result<Self> {
        let mut conn = Connection::open(path)?;
        super::schema::wait_for_locks(&mut conn)?;
        let signal = Arc::new(Signal::default());
        let s = signal.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(conn, &s))
            .expect("spawn the checkpoint thread");
        Ok(Checkpointer {
            _guard: Arc::new(Guard(signal.clone())),
            signal,
        })
    }

    /// Has `conn`'s commits ask this thread for checkpoints instead of
    /// checkpointing themselves.
    pub fn hook(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        let signal = self.signal.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages >= PAGES {
                let mut s = signal.lock();
                s.wanted = true;
                s.asked += 1;
                signal.cv.notify_one();
            }
            Ok(())
        }))
    }

    /// Checkpoints asked for so far.
    pub fn asked(&self) -> u64 {
        self.signal.lock().asked
    }

    /// Waits up to `timeout` until `n` checkpoints were made; returns the
    /// newest one's `(WAL frames, frames copied)`, or `None` on timeout.
    pub fn wait_made(&self, n: u64, timeout: Duration) -> Option<(i64, i64)> {
        let s = self.signal.lock();
        let (s, _) = self
            .signal
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
            Err(e) => tracing::warn!(error = %e, "checkpointing the store's WAL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writers_big_commits_are_checkpointed_by_the_thread_not_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = Connection::open(&path).unwrap();
        super::super::schema::configure(&mut writer).unwrap();
        writer.execute_batch("CREATE TABLE t (x BLOB NOT NULL)").unwrap();
        let cp = Checkpointer::start(&path).unwrap();
        cp.hook(&mut writer).unwrap();
        let fill = |c: &Connection, rows: usize| {
            let tx = c.unchecked_transaction().unwrap();
            for _ in 0..rows {
                tx.execute("INSERT INTO t (x) VALUES (zeroblob(3000))", [])
                    .unwrap();
            }
            tx.commit().unwrap();
        };
        // Below the threshold nothing is asked for.
        fill(&writer, 100);
        assert_eq!(cp.asked(), 0);
        // Past it the commit asks, and the thread copies every frame (no
        // reader holds an old snapshot here).
        fill(&writer, 1200);
        assert_eq!(cp.asked(), 1);
        let (wal, copied) = cp
            .wait_made(1, Duration::from_secs(60))
            .expect("the thread checkpoints");
        assert!(
            wal >= i64::from(PAGES) && copied == wal,
            "{wal} frames, {copied} copied"
        );
        // The writer did not checkpoint by itself: its automatic checkpoint
        // is off (the WAL hook replaced it), so the WAL was still whole when
        // the thread got to it.
        let auto: i64 = writer
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0);
    }
}
