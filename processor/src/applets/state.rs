//! What one applet call sees and what it leaves behind: the event it runs on, the
//! project database, limits, and the effects it produced (logs, ledger credits,
//! metrics, a response, transactions). Effects other than database writes are
//! collected here and applied by the caller only when the handler succeeds
//! (returns `>= 0`).

use std::collections::HashMap;
use std::time::Duration;

use wasmtime::{StoreLimits, StoreLimitsBuilder};

use super::host_db::HostDb;

/// Limits for one call, configurable per applet.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppletLimits {
    /// Wall-clock deadline of one handler call.
    pub deadline_ms: u64,
    /// Largest linear memory.
    pub memory_bytes: usize,
    /// Most tables and table elements.
    pub tables: usize,
    pub table_elements: usize,
    /// Log bytes one call may write (more is dropped and counted).
    pub log_bytes: usize,
    /// Deadline of one SQL statement.
    pub sql_ms: u64,
    /// The applet keeps nothing in its instance from one event to the next,
    /// so one instance may serve a batch's events in a row instead of a fresh
    /// one per event ([`super::runtime::Warm`]). Not a limit but how its
    /// calls run; kept with the limits. The deployer's word: an applet that
    /// does keep state (a Rust `static`, a cache) sees other events' state.
    pub stateless: bool,
}

impl Default for AppletLimits {
    fn default() -> Self {
        AppletLimits {
            deadline_ms: 100,
            memory_bytes: 64 << 20,
            tables: 4,
            table_elements: 100_000,
            log_bytes: 64 << 10,
            sql_ms: 100,
            stateless: false,
        }
    }
}

impl AppletLimits {
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .table_elements(self.table_elements)
            .tables(self.tables)
            .memories(1)
            .instances(1)
            .trap_on_grow_failure(true)
            .build()
    }

    pub fn sql_limit(&self) -> Duration {
        Duration::from_millis(self.sql_ms)
    }
}

/// The event an applet runs on.
#[derive(Clone)]
pub struct EventInput {
    /// Resource id handed to the handler.
    pub rid: i32,
    /// What `ws_get_data` returns.
    pub payload: Vec<u8>,
    /// What `ws_get_event_type` returns.
    pub event_type: String,
    /// Project environment plus the reserved `WS_*` keys of this event.
    pub env: HashMap<String, String>,
    /// The token whose `mint` credits the rewards ledger; `None` where nothing
    /// would settle a mint (the W3bstream-compatible endpoint, whose effects
    /// are not stored), so a mint fails rather than vanishing.
    pub token: Option<String>,
    /// Seed for WASI `random_get` and time for `clock_time_get` (deterministic,
    /// so a replay computes the same).
    pub seed: u64,
    pub time_ns: u64,
    /// The chains `ws_send_tx` may leave transactions for (`[chains.ID]`,
    /// as configured when the event first ran: a replay sees the same).
    pub chains: Vec<u64>,
    /// In a replay: the answers its `ws_call_contract` calls to chains got
    /// when the event first ran, in order (`None` for one that failed).
    /// `None` live: the calls are made.
    pub calls: Option<Vec<Option<Vec<u8>>>>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// One ledger credit from a `mint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Credit {
    /// `0x` + 40 hex.
    pub address: String,
    /// Token units (18 decimals).
    pub amount: u128,
}

/// What a call produced.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Effects {
    pub logs: Vec<LogLine>,
    pub dropped_log_bytes: usize,
    pub credits: Vec<Credit>,
    pub metrics: Vec<serde_json::Value>,
    pub response: Option<String>,
    /// `(statement, rows changed)` for every executed statement.
    pub sql: Vec<(String, usize)>,
    /// Transactions for configured chains, sent after the event commits.
    pub txs: Vec<crate::chain::adapter::TxIntent>,
    /// What each `ws_call_contract` to a chain answered (`None`: it failed),
    /// kept with the event so a replay answers the same.
    pub calls: Vec<Option<Vec<u8>>>,
}

/// Most effects of each kind one call may leave (beyond them the import
/// answers `Failed`, with one log line): a call is one event's work.
pub const MAX_CREDITS: usize = 64;
pub const MAX_SQL_STATEMENTS: usize = 1000;
pub const MAX_METRICS: usize = 64;
pub const MAX_LOG_LINES: usize = 1000;
pub const MAX_TXS: usize = 16;
pub const MAX_CALLS: usize = 16;

/// The kinds of effect a call is limited in.
#[derive(Debug, Clone, Copy)]
pub enum Effect {
    Credit,
    Sql,
    Metrics,
    Tx,
    Call,
}

/// The store's data for one call.
pub struct HostState {
    pub limits: StoreLimits,
    pub applet_limits: AppletLimits,
    pub event: EventInput,
    /// The database lent to the call in progress (taken back after it, so a
    /// kept instance does not hold it between calls).
    pub db: Option<HostDb>,
    pub effects: Effects,
    pub log_bytes: usize,
    pub rng: u64,
    /// The instance's `memory` and `alloc`, looked up once after it is
    /// instantiated instead of by name in every host call (the profile).
    pub exports: Exports,
    /// The configured chains, for `ws_call_contract` (none in a replay or a
    /// local run without `--chain`).
    pub chains: Option<std::sync::Arc<crate::chain::adapter::Chains>>,
}

/// Exports the host functions use, once the instance exists.
#[derive(Default)]
pub struct Exports {
    pub memory: Option<wasmtime::Memory>,
    pub alloc: Option<wasmtime::TypedFunc<i32, i32>>,
}

impl Exports {
    pub fn of(instance: &wasmtime::Instance, store: &mut wasmtime::Store<HostState>) -> Exports {
        use wattstream_abi::imports::{EXPORT_ALLOC, EXPORT_MEMORY};
        Exports {
            memory: instance.get_memory(&mut *store, EXPORT_MEMORY),
            alloc: instance
                .get_typed_func::<i32, i32>(&mut *store, EXPORT_ALLOC)
                .ok(),
        }
    }
}

impl HostState {
    /// The database of the call in progress.
    pub fn db(&self) -> &HostDb {
        self.db.as_ref().expect("a call in progress has its database")
    }

    pub fn db_mut(&mut self) -> &mut HostDb {
        self.db.as_mut().expect("a call in progress has its database")
    }

    pub fn log(&mut self, level: &'static str, message: &[u8]) {
        const LINE_MAX: usize = 4096;
        let budget = self.applet_limits.log_bytes.saturating_sub(self.log_bytes);
        let lines_left = self.effects.logs.len() < MAX_LOG_LINES;
        let take = if lines_left {
            message.len().min(LINE_MAX).min(budget)
        } else {
            0
        };
        self.effects.dropped_log_bytes += message.len() - take;
        if take == 0 {
            return;
        }
        self.log_bytes += take;
        self.effects.logs.push(LogLine {
            level,
            message: String::from_utf8_lossy(&message[..take]).into_owned(),
        });
    }

    /// Whether the call may leave one more effect of `kind`; logs the refusal.
    pub fn room_for(&mut self, kind: Effect) -> bool {
        let (have, max) = match kind {
            Effect::Credit => (self.effects.credits.len(), MAX_CREDITS),
            Effect::Sql => (self.effects.sql.len(), MAX_SQL_STATEMENTS),
            Effect::Metrics => (self.effects.metrics.len(), MAX_METRICS),
            Effect::Tx => (self.effects.txs.len(), MAX_TXS),
            Effect::Call => (self.effects.calls.len(), MAX_CALLS),
        };
        if have < max {
            return true;
        }
        let line = format!("{kind:?} limit: a call may leave at most {max}");
        self.log("error", line.as_bytes());
        false
    }

    /// The ledger balance of `address`: the project's credits so far plus the
    /// ones this call has made.
    pub fn balance(&self, address: &[u8; 20]) -> u128 {
        let address = format!("0x{}", hex::encode(address));
        let pending: u128 = self
            .effects
            .credits
            .iter()
            .filter(|c| c.address.eq_ignore_ascii_case(&address))
            .map(|c| c.amount)
            .sum();
        self.db().balance(&address).unwrap_or(0).saturating_add(pending)
    }
}
