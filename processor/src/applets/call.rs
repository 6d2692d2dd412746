//! One applet call: its store, its instance, its deadline and memory cap, the
//! savepoint around its database work, and its outcome. A trap, timeout or
//! limit fails that call only; its database writes are rolled back and its
//! effects dropped (its logs kept).
//!
//! By default every call gets a fresh instance from the applet's
//! `InstancePre`, so nothing an event leaves in memory reaches the next one.
//! That costs: in the sustained profile, creating and resetting the instance
//! was a quarter of the applet worker's time, most of it the pooling
//! allocator copying the data image back into the pages the call dirtied. An
//! applet deployed `stateless` ([`AppletLimits::stateless`]) may instead keep
//! one instance ([`Warm`]) across the events of a batch. Invariants:
//!
//! - **A kept instance is only one whose handler returned** (any code): a
//!   call that trapped, timed out or hit a limit may have stopped half-way
//!   through the applet's own bookkeeping (its allocator, its stack), so its
//!   instance is dropped.
//! - **Reuse never fails an event a fresh instance would pass.** A call that
//!   traps, times out or hits a limit on a reused instance runs again, once,
//!   on a fresh one, and that second run is the outcome (a handler that
//!   returns a rejection returned: that is its answer): an applet whose memory only grows (a bump
//!   allocator that never frees, as an SDK built for fresh instances may
//!   have) fails on a full instance, never on an event. The first run's
//!   writes were rolled back with its savepoint, and its effects are dropped.
//! - **Between calls the instance holds no database, event or effects**:
//!   they are lent to each call and taken back after it.
//! - The instance lives as long as the holder keeps it: the worker keeps one
//!   per applet per batch, so a redeployed applet, a changed limit or a new
//!   batch starts fresh.

use std::time::Instant;

use wasmtime::{Store, Trap, TypedFunc};

use super::db::ProjectDb;
use super::host_db::HostDb;
use super::runtime::{Applet, RunOutcome, Runtime, TICK};
use super::state::{AppletLimits, Effects, EventInput, HostState};

/// An instance kept between calls of a stateless applet.
pub struct Warm {
    store: Store<HostState>,
    func: TypedFunc<i32, i32>,
    /// Which module and handler it runs.
    hash: String,
    handler: String,
    /// Calls it has served.
    calls: u64,
}

impl Warm {
    /// Calls this instance has served.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The size of its linear memory, in bytes.
    pub fn memory_bytes(&mut self) -> usize {
        match self.store.data().exports.memory {
            Some(m) => m.data_size(&self.store),
            None => 0,
        }
    }
}

/// A call in progress: the store, and the handler once the instance exists.
struct Attempt {
    store: Store<HostState>,
    func: Option<TypedFunc<i32, i32>>,
    /// Calls the instance served before this one (0: a fresh instance).
    served: u64,
}

impl Runtime {
    /// [`Runtime::run`] on a SQLite project database, which comes back.
    pub fn run_sqlite(
        &self,
        applet: &Applet,
        handler: &str,
        event: EventInput,
        db: ProjectDb,
        limits: &AppletLimits,
    ) -> (RunOutcome, ProjectDb) {
        let (o, back) = self.run(applet, handler, event, HostDb::Sqlite(db), limits);
        (
            o,
            back.into_sqlite()
                .expect("the database lent is the one given back"),
        )
    }

    /// Runs `handler` of `applet` on one event in a fresh instance. The
    /// database work of the call is one savepoint: kept when the handler
    /// succeeds (returns `>= 0`), rolled back otherwise (inside the caller's
    /// transaction when one is open, its own otherwise). The database comes
    /// back with the outcome.
    pub fn run(
        &self,
        applet: &Applet,
        handler: &str,
        event: EventInput,
        db: HostDb,
        limits: &AppletLimits,
    ) -> (RunOutcome, HostDb) {
        self.run_warm(applet, handler, event, db, limits, &mut None)
    }

    /// [`Runtime::run`], where a `stateless` applet runs in the instance kept
    /// in `warm` (when it is this applet's) and leaves its instance there for
    /// the next call; see the module doc for when one is kept or dropped.
    pub fn run_warm(
        &self,
        applet: &Applet,
        handler: &str,
        event: EventInput,
        db: HostDb,
        limits: &AppletLimits,
        warm: &mut Option<Warm>,
    ) -> (RunOutcome, HostDb) {
        let started = Instant::now();
        let kept = warm
            .take()
            .filter(|w| limits.stateless && w.hash == applet.hash && w.handler == handler);
        let attempt = match kept {
            Some(w) => self.reuse(w, event, db),
            None => self.fresh(event, db, limits),
        };
        let (result, mut attempt) = self.call(applet, handler, attempt, limits);
        let new_instance = attempt.served == 0;
        let db = attempt.store.data_mut().db.take().expect("the call's database");
        if result.is_err() && !new_instance {
            // A failure on a reused instance: the same event on a fresh one.
            db.rollback_call();
            let event = attempt.store.into_data().event;
            let (mut outcome, db) = self.run_warm(applet, handler, event, db, limits, warm);
            outcome.duration = started.elapsed();
            return (outcome, db);
        }
        let mut effects = std::mem::take(&mut attempt.store.data_mut().effects);
        let (code, error) = match result {
            Ok(code) => (Some(code), None),
            Err(e) => (None, Some(describe(&e, limits))),
        };
        if code.is_some_and(|c| c >= 0) {
            if let Err(e) = db.release() {
                // Its writes are gone, so the call failed: no credits, and the
                // chain stops as for any failure.
                db.rollback_call();
                let outcome = RunOutcome {
                    code: None,
                    error: Some(format!("commit failed: {e}")),
                    effects: Effects::default(),
                    duration: started.elapsed(),
                    new_instance,
                };
                return (outcome, db);
            }
        } else {
            db.rollback_call();
            effects = Effects {
                logs: std::mem::take(&mut effects.logs),
                ..Effects::default()
            };
        }
        if let (Some(_), Some(func), true) = (code, attempt.func, limits.stateless) {
            *warm = Some(Warm {
                store: attempt.store,
                func,
                hash: applet.hash.clone(),
                handler: handler.to_string(),
                calls: attempt.served + 1,
            });
        }
        let outcome = RunOutcome {
            code,
            error,
            effects,
            duration: started.elapsed(),
            new_instance,
        };
        (outcome, db)
    }

    /// A new store for one call; the instance is made by [`Runtime::call`].
    fn fresh(&self, event: EventInput, db: HostDb, limits: &AppletLimits) -> Attempt {
        let rng = event.seed;
        let mut store = Store::new(
            &self.engine,
            HostState {
                limits: limits.store_limits(),
                applet_limits: limits.clone(),
                event,
                db: Some(db),
                effects: Effects::default(),
                log_bytes: 0,
                rng,
                exports: Default::default(),
                chains: self.chains.get().cloned(),
            },
        );
        store.limiter(|s| &mut s.limits);
        Attempt {
            store,
            func: None,
            served: 0,
        }
    }

    /// A kept instance, given this call's event and database.
    fn reuse(&self, w: Warm, event: EventInput, db: HostDb) -> Attempt {
        let Warm {
            mut store,
            func,
            calls,
            ..
        } = w;
        let state = store.data_mut();
        state.rng = event.seed;
        state.event = event;
        state.db = Some(db);
        state.effects = Effects::default();
        state.log_bytes = 0;
        state.chains = self.chains.get().cloned();
        Attempt {
            store,
            func: Some(func),
            served: calls,
        }
    }

    /// The call itself: under its deadline, in a savepoint, on the attempt's
    /// instance (made now when it has none).
    fn call(
        &self,
        applet: &Applet,
        handler: &str,
        mut a: Attempt,
        limits: &AppletLimits,
    ) -> (wasmtime::Result<i32>, Attempt) {
        let ticks = limits.deadline_ms.div_ceil(TICK.as_millis() as u64).max(1) + 1;
        a.store.set_epoch_deadline(ticks);
        a.store.epoch_deadline_trap();
        let began = a.store.data().db().savepoint();
        let result = began
            .map_err(|e| wasmtime::Error::msg(e.to_string()))
            .and_then(|()| {
                let f = match &a.func {
                    Some(f) => f.clone(),
                    None => {
                        let instance = applet.pre.instantiate(&mut a.store)?;
                        a.store.data_mut().exports = super::state::Exports::of(&instance, &mut a.store);
                        let f = instance.get_typed_func::<i32, i32>(&mut a.store, handler)?;
                        a.func = Some(f.clone());
                        f
                    }
                };
                let rid = a.store.data().event.rid;
                f.call(&mut a.store, rid)
            });
        (result, a)
    }
}

fn describe(e: &wasmtime::Error, limits: &AppletLimits) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => format!("timeout: the {} ms deadline passed", limits.deadline_ms),
            Trap::StackOverflow => "trap: stack overflow".into(),
            other => format!("trap: {other}"),
        };
    }
    let text = format!("{e:#}");
    if text.contains("forcing") && text.contains("memory") || text.contains("memory growth") {
        return format!("limit: memory above {} MiB", limits.memory_bytes >> 20);
    }
    text
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
