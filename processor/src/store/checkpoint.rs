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
//! hook, which also turns its automatic checkpoint off), and once
//! [`WAL_BYTES`] were written *since the newest checkpoint* it wakes this
//! thread, which runs a `PASSIVE` checkpoint on its own connection: it copies
//! what no reader still needs and never takes the write lock, so ingest goes
//! on meanwhile. Every connection that writes the same file much gets the same
//! hook ([`Hooks`]): the ledger's, whose commits ran SQLite's checkpoint inline
//! too. A project database has a thread of its own (its
//! [`crate::applets::slot::DbSlot`]), off the applet worker.
//!
//! Why "since the newest checkpoint", and why the thread restarts the WAL
//! itself. SQLite writes the WAL from its beginning again only when a writer
//! finds it copied whole *and no reader in it*; under a steady load there is
//! nearly always a reader (the applet worker, the ledger's snapshots, HTTP
//! reads: a probe of the `-shm` read locks found one in the WAL 63 % of the
//! time), so the WAL keeps growing. Counting its whole size, every commit past
//! 4 MiB asked again: 20 to 50 checkpoints a second, each copying the same hot
//! pages and fsyncing the database, two thirds of the bytes the store wrote.
//! Counting from the newest checkpoint copies a hot page once per
//! [`WAL_BYTES`]; but then nothing caught the rare moment with no reader and
//! the WAL grew without bound (1.7 GB in 30 s). So past [`RESTART_BYTES`] the
//! thread makes that moment: when a checkpoint copied every frame, passes
//! outside the lock copy what came meanwhile until one copies little; then it
//! takes a turn at the write lock ahead of the queue ([`super::turns`]: no
//! writer of this process commits meanwhile), runs a `RESTART` checkpoint that
//! copies the few frames committed since and gives up at once if a reader is
//! in the WAL (no busy wait: a wait there would stall ingest), and the next
//! writer then starts the WAL over. The store's restart size is
//! `store.wal_restart_mib`. Without turns (a project database) it runs the same `RESTART`
//! without one, on SQLite's lock. Invariants:
//! - every [`WAL_BYTES`] written to the WAL are checkpointed (a checkpoint
//!   that could not finish, because a reader holds an old snapshot, is
//!   tried again on the next commit's report, at most every [`MIN_GAP`]);
//! - past [`RESTART_BYTES`] every commit's report asks, and the thread tries
//!   to restart the WAL after each checkpoint that copied it whole, so the
//!   WAL stays near [`RESTART_BYTES`] unless readers never leave it;
//! - a restart attempt holds the turn only for the copy of the frames
//!   committed since the pass before it, and its fsync; after one that
//!   succeeded the next waits until the WAL was seen started over, or
//!   [`RESTART_SETTLE`];
//! - the thread stops when the last [`Checkpointer`] handle is dropped (the
//!   writer's, when the writer stops); SQLite checkpoints the rest when the
//!   last connection closes.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::turns::{TurnOf, Turns};

/// WAL written since the newest checkpoint after which a commit asks for
/// the next one. In pages of the connection's own size, so a database with
/// small pages is not checkpointed four times as often. A page rewritten by
/// many commits (an index's hot leaves, the ledger's balances) is copied once
/// per checkpoint: at 4 MiB (SQLite's default, 1,000 pages of 4 KiB) the
/// store's checkpoint wrote 19.7 KB per event at 11.7k events/s in `bench`,
/// at 16 MiB 10.5, at 32 MiB 6.5 to 6.9.
pub const WAL_BYTES: i64 = 32 << 20;
/// WAL size past which the thread restarts the WAL once a checkpoint copied
/// it whole (in the connection's pages too; the store's is
/// `store.wal_restart_mib`). Under a sustained load the file keeps about
/// this size and is written over from its beginning; a crash replays at most
/// this much at the next start. Each restart holds the writers for the copy
/// of a few frames and an fsync of the database, 10 to 120 ms under the
/// saturating `bench` load: at 256 MiB three restarts fell in each
/// open-loop run and its p99.9 went from 42-48 to 124-210 ms; at 1 GiB
/// none or one did. At a fleet's rate (2,000 events/s) the writer seldom
/// finds the WAL copied whole either: it reached 307 MB in 120 s, so it
/// sits at this size there too.
pub const RESTART_BYTES: i64 = 1 << 30;
/// Before a restart, passes that copy what was committed during the one
/// before, until one copies at most [`CATCH_UP_FRAMES`].
const CATCH_UP_PASSES: usize = 4;
const CATCH_UP_FRAMES: i64 = 256;
/// How long a restart that succeeded has to take effect before the thread
/// tries again.
const RESTART_SETTLE: Duration = Duration::from_secs(1);
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
    /// Restarts of the WAL tried, and made.
    restarts_tried: u64,
    restarts: u64,
}

#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    /// Wakes the thread.
    cv: Condvar,
    /// Wakes those waiting for a checkpoint ([`Checkpointer::wait_made`]).
    made: Condvar,
    /// Frames of the current WAL the newest checkpoint copied: a commit's
    /// report counts the WAL written since. 0 once the WAL started over.
    copied: AtomicI64,
    /// WAL frames past which every commit asks and the thread restarts it.
    restart: i64,
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
        let threshold = WAL_BYTES / page.max(512);
        let signal = self.0.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            let pages = i64::from(pages);
            let mut copied = signal.copied.load(Relaxed);
            if pages < copied {
                // The WAL started over since that checkpoint.
                signal.copied.store(0, Relaxed);
                copied = 0;
            }
            if pages - copied >= threshold || pages >= signal.restart {
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
    /// `path`; `turns`: the writers' turns at its write lock, taken for a
    /// restart of the WAL (none: a restart meets SQLite's lock instead);
    /// `restart_bytes`: the WAL size past which it restarts the WAL
    /// ([`RESTART_BYTES`] unless configured).
    pub fn start(
        path: &Path,
        name: &str,
        turns: Option<Arc<Turns>>,
        restart_bytes: i64,
    ) -> rusqlite::Result<Self> {
        let mut conn = Connection::open(path)?;
        super::schema::wait_for_locks(&mut conn)?;
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let restart = restart_bytes / page.max(512);
        let signal = Arc::new(Signal {
            restart,
            ..Signal::default()
        });
        let s = signal.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(conn, &s, turns.as_deref()))
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

    /// Restarts of the WAL `(tried, made)` so far.
    pub fn restarts(&self) -> (u64, u64) {
        let s = self.hooks.0.lock();
        (s.restarts_tried, s.restarts)
    }

    /// Waits up to `timeout` until `n` restarts were made; whether they were.
    pub fn wait_restarts(&self, n: u64, timeout: Duration) -> bool {
        self.wait(timeout, |s| (s.restarts >= n).then_some(())).is_some()
    }

    /// Waits up to `timeout` until `n` checkpoints were made; returns the
    /// newest one's `(WAL frames, frames copied)`, or `None` on timeout.
    pub fn wait_made(&self, n: u64, timeout: Duration) -> Option<(i64, i64)> {
        self.wait(timeout, |s| (s.made >= n).then_some(s.last))
    }

    /// Waits up to `timeout`, each time the thread made a checkpoint, until
    /// `done` has an answer.
    fn wait<T>(&self, timeout: Duration, done: impl Fn(&State) -> Option<T>) -> Option<T> {
        let signal = &self.hooks.0;
        let s = signal.lock();
        let (s, _) = signal
            .made
            .wait_timeout_while(s, timeout, |s| done(s).is_none())
            .unwrap_or_else(|p| p.into_inner());
        done(&s)
    }
}

fn run(mut conn: Connection, signal: &Signal, turns: Option<&Turns>) {
    let restart = signal.restart;
    let mut last = Instant::now() - MIN_GAP;
    // When the last restart that succeeded was made, until the WAL is seen
    // started over: the next writer's commit does that, and trying again
    // before it would only copy its frames in another turn.
    let mut pending: Option<Instant> = None;
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
        let (mut frames, mut copied) = match checkpoint(&conn, "PASSIVE") {
            Ok((_, frames, copied)) => (frames, copied),
            Err(e) => {
                tracing::warn!(error = %e, "checkpointing a WAL");
                continue;
            }
        };
        let mut restarted = None;
        if frames < restart {
            pending = None;
        }
        let may_restart = frames >= restart && pending.is_none_or(|at| at.elapsed() >= RESTART_SETTLE);
        // Past the restart size, catch up with what was committed during
        // that copy, outside the write lock, until a pass copies little: the
        // turn then holds only the copy of a few frames.
        let mut before = 0;
        for _ in 0..CATCH_UP_PASSES {
            if !may_restart || copied != frames {
                break; // not due, or a reader holds an old snapshot
            }
            if frames - before <= CATCH_UP_FRAMES {
                restarted = Some(restart_wal(&mut conn, turns));
                break;
            }
            before = frames;
            match checkpoint(&conn, "PASSIVE") {
                Ok((_, f, c)) => (frames, copied) = (f, c),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpointing a WAL");
                    break;
                }
            }
        }
        if let Some(Ok(true)) = restarted {
            pending = Some(Instant::now());
        }
        signal.copied.store(copied, Relaxed);
        tracing::debug!(
            frames,
            copied,
            ?restarted,
            us = last.elapsed().as_micros() as u64,
            "checkpointed"
        );
        let mut s = signal.lock();
        s.made += 1;
        s.last = (frames, copied);
        match restarted {
            Some(Ok(done)) => {
                s.restarts_tried += 1;
                s.restarts += u64::from(done);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "restarting a WAL"),
            None => {}
        }
        signal.made.notify_all();
    }
}

/// `PRAGMA wal_checkpoint(MODE)`: (could not finish, WAL frames, frames
/// copied).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
}

/// Has the next writer start the WAL over, during a turn at the write lock:
/// a `RESTART` checkpoint that does not wait (SQLite's busy handler off), so
/// a reader in the WAL or another process's writer makes it give up at once
/// instead of stalling the writers queued behind the turn. Whether it did.
fn restart_wal(conn: &mut Connection, turns: Option<&Turns>) -> rusqlite::Result<bool> {
    conn.busy_timeout(Duration::ZERO)?;
    let asked = Instant::now();
    let done = {
        let _turn = turns.map(|t| t.take_first(TurnOf::Checkpoint));
        let began = Instant::now();
        let r = checkpoint(conn, "RESTART");
        tracing::debug!(
            wait_us = (began - asked).as_micros() as u64,
            held_us = began.elapsed().as_micros() as u64,
            ?r,
            "restart"
        );
        r
    };
    super::schema::wait_for_locks(conn)?;
    let (busy, _, _) = done?;
    Ok(!busy)
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
