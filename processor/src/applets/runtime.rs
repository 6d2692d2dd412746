//! The wasmtime runtime: one engine with epoch interruption (a ticker thread
//! advances the epoch every few milliseconds) and the pooling allocator where the
//! address space allows it, on-demand allocation otherwise. Modules are compiled
//! once; the compiled artefact is cached on disk under its SHA-256. Every call
//! gets a fresh instance from an `InstancePre`, so nothing leaks between events,
//! and runs under its deadline and memory cap. A trap, timeout or limit fails
//! that call only; its database writes are rolled back and its effects dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store,
    Trap,
};

use wattstream_abi::imports::EXPORT_MEMORY;
use wattstream_sdk::fsutil::{WriteOptions, write_atomic};

use super::abi;
use super::db::ProjectDb;
use super::host_db::HostDb;
use super::state::{AppletLimits, Effects, EventInput, HostState};

/// Epoch tick.
pub const TICK: Duration = Duration::from_millis(2);
/// Largest memory any applet may be given (the pool's slot size).
pub const MEMORY_CEILING: usize = 256 << 20;

/// Why an applet could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AppletError {
    #[error("not a valid applet: {0}")]
    Invalid(String),
    #[error("applet cache: {0}")]
    Cache(String),
}

/// A compiled applet, ready to instantiate.
pub struct Applet {
    /// SHA-256 of the wasm bytes, hex.
    pub hash: String,
    pre: InstancePre<HostState>,
    /// Exported functions usable as handlers (`(i32) -> i32`).
    pub handlers: Vec<String>,
    /// Whether it imports `ws_send_tx`, so can mint.
    pub mints: bool,
}

/// How a call ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    /// The handler's return value, when it returned.
    pub code: Option<i32>,
    /// Why it did not return (trap, timeout, limit), or why it was not run.
    pub error: Option<String>,
    pub effects: Effects,
    #[serde(serialize_with = "micros")]
    pub duration: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

impl RunOutcome {
    /// Whether the handler succeeded: W3bstream v1 reads a return value `< 0`
    /// as failure and `>= 0` as success (a positive value is a resource id a
    /// handler may answer with), and so does this runtime.
    pub fn ok(&self) -> bool {
        self.code.is_some_and(|c| c >= 0)
    }
}

/// The engine, the linker with every host function, and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    pooling: bool,
    stop: Arc<AtomicBool>,
    /// The configured chains (`ws_call_contract`), once `serve` has them.
    chains: std::sync::OnceLock<Arc<crate::chain::adapter::Chains>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(pooling: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.max_wasm_stack(512 << 10);
    if pooling {
        let mut p = PoolingAllocationConfig::default();
        p.total_core_instances(64);
        p.total_memories(64);
        p.total_tables(64);
        p.max_memory_size(MEMORY_CEILING);
        // Reset small memories with memset instead of madvise: per-event
        // instances would otherwise cost a syscall and a cross-core TLB
        // shootdown each (seen in the ingest profile).
        p.linear_memory_keep_resident(1 << 20);
        p.table_keep_resident(64 << 10);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

impl Runtime {
    /// A runtime; compiled modules are cached in `cache_dir` when given.
    pub fn new(cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let (engine, pooling) = match Engine::new(&config(true)) {
            Ok(e) => (e, true),
            Err(e) => {
                tracing::info!(error = %e, "pooling allocator unavailable; allocating instances on demand");
                (Engine::new(&config(false))?, false)
            }
        };
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker)?;
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, ticker_stop) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("applet-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker_engine.increment_epoch();
                }
            })?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir: cache_dir.map(Path::to_path_buf),
            pooling,
            stop,
            chains: std::sync::OnceLock::new(),
        })
    }

    /// Gives applet calls the configured chains (once; later calls are ignored).
    pub fn set_chains(&self, chains: Arc<crate::chain::adapter::Chains>) {
        let _ = self.chains.set(chains);
    }

    /// The configured chains' ids (none before [`Runtime::set_chains`]).
    pub fn chain_ids(&self) -> Vec<u64> {
        self.chains.get().map(|c| c.ids()).unwrap_or_default()
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    fn module(&self, wasm: &[u8], hash: &str) -> Result<Module, AppletError> {
        let invalid = |e: wasmtime::Error| AppletError::Invalid(format!("{e:#}"));
        let Some(dir) = &self.cache_dir else {
            return Module::new(&self.engine, wasm).map_err(invalid);
        };
        let path = dir.join(format!("{hash}.cwasm"));
        if path.exists() {
            // SAFETY: the file is one this process (or an earlier run of it)
            // wrote with `Module::serialize` into the processor's own data
            // directory, under the hash of its source; wasmtime checks that it
            // was made by a compatible engine and refuses it otherwise.
            match unsafe { Module::deserialize_file(&self.engine, &path) } {
                Ok(m) => return Ok(m),
                Err(e) => tracing::warn!(error = %e, "stale applet cache entry; recompiling"),
            }
        }
        let module = Module::new(&self.engine, wasm).map_err(invalid)?;
        let bytes = module
            .serialize()
            .map_err(|e| AppletError::Cache(e.to_string()))?;
        let opts = WriteOptions {
            mode: 0o600,
            ..WriteOptions::SHARED
        };
        write_atomic(&path, &bytes, opts)
            .map_err(|e| AppletError::Cache(format!("{}: {e}", path.display())))?;
        Ok(module)
    }

    /// Compiles (or loads from the cache) and checks an applet: it must export
    /// `memory` and import nothing but the ABI. `alloc` is optional, as on
    /// W3bstream v1, which looks it up only when it must copy data into the
    /// module: without it such a copy answers status 5 (`ToVmFailed`), and a
    /// module that never asks for data (one that only logs) runs.
    pub fn compile(&self, wasm: &[u8]) -> Result<Applet, AppletError> {
        let hash = hex::encode(Sha256::digest(wasm));
        let module = self.module(wasm, &hash)?;
        let exports: Vec<(String, wasmtime::ExternType)> =
            module.exports().map(|e| (e.name().to_string(), e.ty())).collect();
        if !exports
            .iter()
            .any(|(n, t)| n == EXPORT_MEMORY && matches!(t, wasmtime::ExternType::Memory(_)))
        {
            return Err(AppletError::Invalid("it does not export `memory`".into()));
        }
        let handlers: Vec<String> = exports
            .iter()
            .filter_map(|(n, t)| match t {
                wasmtime::ExternType::Func(f)
                    if f.params().len() == 1
                        && f.results().len() == 1
                        && f.params().all(|p| p.is_i32())
                        && f.results().all(|r| r.is_i32()) =>
                {
                    Some(n.clone())
                }
                _ => None,
            })
            .collect();
        let mints = module.imports().any(|i| {
            i.module() == wattstream_abi::imports::ENV && i.name() == wattstream_abi::imports::WS_SEND_TX
        });
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| AppletError::Invalid(format!("{e:#}")))?;
        Ok(Applet {
            hash,
            pre,
            handlers,
            mints,
        })
    }

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

    /// Runs `handler` of `applet` on one event. The database work of the call is
    /// one savepoint: kept when the handler succeeds (returns `>= 0`), rolled
    /// back otherwise
    /// (inside the caller's transaction when one is open, its own otherwise).
    /// The database comes back with the outcome.
    pub fn run(
        &self,
        applet: &Applet,
        handler: &str,
        event: EventInput,
        db: HostDb,
        limits: &AppletLimits,
    ) -> (RunOutcome, HostDb) {
        let started = Instant::now();
        let rng = event.seed;
        let mut store = Store::new(
            &self.engine,
            HostState {
                limits: limits.store_limits(),
                applet_limits: limits.clone(),
                event,
                db,
                effects: Effects::default(),
                log_bytes: 0,
                rng,
                exports: Default::default(),
                chains: self.chains.get().cloned(),
            },
        );
        store.limiter(|s| &mut s.limits);
        let ticks = limits.deadline_ms.div_ceil(TICK.as_millis() as u64).max(1) + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let began = store.data().db.savepoint();
        let result = began
            .map_err(|e| wasmtime::Error::msg(e.to_string()))
            .and_then(|()| {
                let instance = applet.pre.instantiate(&mut store)?;
                store.data_mut().exports = super::state::Exports::of(&instance, &mut store);
                let f = instance.get_typed_func::<i32, i32>(&mut store, handler)?;
                let rid = store.data().event.rid;
                f.call(&mut store, rid)
            });
        let (code, error) = match result {
            Ok(code) => (Some(code), None),
            Err(e) => (None, Some(describe(&e, limits))),
        };
        let mut state = store.into_data();
        if code.is_some_and(|c| c >= 0) {
            if let Err(e) = state.db.release() {
                // Its writes are gone, so the call failed: no credits, and the
                // chain stops as for any failure.
                state.db.rollback_call();
                return (
                    RunOutcome {
                        code: None,
                        error: Some(format!("commit failed: {e}")),
                        effects: Effects::default(),
                        duration: started.elapsed(),
                    },
                    state.db,
                );
            }
        } else {
            state.db.rollback_call();
            let logs = std::mem::take(&mut state.effects.logs);
            state.effects = Effects {
                logs,
                ..Effects::default()
            };
        }
        (
            RunOutcome {
                code,
                error,
                effects: state.effects,
                duration: started.elapsed(),
            },
            state.db,
        )
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
mod tests {
    use super::*;
    use crate::applets::abi::testing::event;

    #[test]
    fn a_call_whose_writes_cannot_be_kept_is_a_failed_call() {
        let runtime = Runtime::new(None).unwrap();
        // Stores a KV pair, mints, and returns 0.
        let tx = format!(
            r#"{{"to":"{}","data":"0x40c10f19{:0>64}{:064x}"}}"#,
            wattstream_abi::LEDGER_TOKEN,
            "ab".repeat(20),
            7
        );
        let wat = format!(
            r#"(module
              (import "env" "ws_set_db" (func $set (param i32 i32 i32 i32) (result i32)))
              (import "env" "ws_send_tx" (func $tx (param i32 i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "kv")
              (data (i32.const 64) "{}")
              (func (export "alloc") (param i32) (result i32) i32.const 4096)
              (func (export "start") (param i32) (result i32)
                (drop (call $set (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1)))
                (drop (call $tx (i32.const 0) (i32.const 64) (i32.const {}) (i32.const 32) (i32.const 36)))
                i32.const 0))"#,
            tx.replace('"', "\\\""),
            tx.len()
        );
        let applet = runtime.compile(wat.as_bytes()).unwrap();
        let db = ProjectDb::open(None, Duration::from_millis(100)).unwrap();
        let limits = AppletLimits::default();
        let (ok, mut db) = runtime.run_sqlite(&applet, "start", event(), db, &limits);
        assert!(ok.ok() && ok.effects.credits.len() == 1, "{ok:?}");
        // The commit of the call's savepoint now fails.
        db.conn_mut().commit_hook(Some(|| true)).unwrap();
        let (failed, mut db) = runtime.run_sqlite(&applet, "start", event(), db, &limits);
        assert!(!failed.ok(), "{failed:?}");
        assert!(failed.error.unwrap().contains("commit failed"));
        assert!(
            failed.effects.credits.is_empty(),
            "no credit from a call whose writes were lost"
        );
        db.conn_mut().commit_hook(None::<fn() -> bool>).unwrap();
    }
}
