//! The wasmtime runtime: one engine with epoch interruption (a ticker thread
//! advances the epoch every few milliseconds) and the pooling allocator where the
//! address space allows it, on-demand allocation otherwise. Modules are compiled
//! once; the compiled artefact is cached on disk under its SHA-256. How one
//! call runs (its instance, deadline, savepoint and outcome) is in
//! [`super::call`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig,
};

use wattstream_abi::imports::EXPORT_MEMORY;
use wattstream_sdk::fsutil::{WriteOptions, write_atomic};

use super::abi;
use super::state::{Effects, HostState};
use crate::config::LogLevel;

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
    pub(super) pre: InstancePre<HostState>,
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
    /// Whether the call made its instance (always, unless the applet is
    /// `stateless` and found one kept): `/metrics` counts them.
    #[serde(skip)]
    pub new_instance: bool,
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
    pub(super) engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    pooling: bool,
    stop: Arc<AtomicBool>,
    /// The configured chains (`ws_call_contract`), once `serve` has them.
    pub(super) chains: std::sync::OnceLock<Arc<crate::chain::adapter::Chains>>,
    /// The least severe log line the worker stores (`applets.log_level`).
    stored_log_level: std::sync::OnceLock<LogLevel>,
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
            stored_log_level: std::sync::OnceLock::new(),
        })
    }

    /// Gives applet calls the configured chains (once; later calls are ignored).
    pub fn set_chains(&self, chains: Arc<crate::chain::adapter::Chains>) {
        let _ = self.chains.set(chains);
    }

    /// Sets `applets.log_level` (once; later calls are ignored).
    pub fn set_stored_log_level(&self, level: LogLevel) {
        let _ = self.stored_log_level.set(level);
    }

    /// The least severe applet log line stored with the project (every
    /// level before [`Runtime::set_stored_log_level`]).
    pub fn stored_log_level(&self) -> LogLevel {
        self.stored_log_level.get().copied().unwrap_or(LogLevel::Trace)
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
}
