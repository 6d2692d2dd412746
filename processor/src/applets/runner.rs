//! One applet on one event, in memory: what `wattstream applet run` does so that
//! applet authors can test without a server. The project database is an
//! in-memory SQLite, the ledger starts empty. When the event is a meter envelope
//! whose signature verifies, the reserved `WS_*` keys describe its device as
//! registered and active (owner `local`), as a server would after its checks,
//! with `WS_PAID_S` what the paid-time rule gives a device's first reading;
//! `--env` overrides any key.

use std::collections::HashMap;
use wattstream_sdk::{Envelope, VerifyPath};

use super::db::ProjectDb;
use super::runtime::{RunOutcome, Runtime};
use super::state::{AppletLimits, EventInput};
use wattstream_abi::LEDGER_TOKEN;

/// The reserved keys for a verified device.
pub fn device_env(
    device_id: &str,
    owner: Option<&str>,
    status: &str,
    event_id: i64,
) -> HashMap<String, String> {
    use wattstream_abi::env;
    [
        (env::VERIFIED, "true".to_string()),
        (env::DEVICE_ID, device_id.to_string()),
        (env::DEVICE_ADDRESS, format!("0x{device_id}")),
        (env::DEVICE_OWNER, owner.unwrap_or("").to_string()),
        (env::DEVICE_STATUS, status.to_string()),
        (env::EVENT_ID, event_id.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A local run's request.
pub struct LocalRun<'a> {
    pub wasm: &'a [u8],
    pub payload: Vec<u8>,
    pub event_type: String,
    pub handler: String,
    pub env: Vec<(String, String)>,
    pub limits: AppletLimits,
    /// Chains to call and leave transactions for (`--chain ID=URL`).
    pub chains: Option<std::sync::Arc<crate::chain::adapter::Chains>>,
}

/// Runs it; returns the applet's hash, its handlers and the outcome.
pub fn run_local(req: LocalRun<'_>) -> anyhow::Result<(String, Vec<String>, RunOutcome)> {
    let runtime = Runtime::new(None)?;
    let chains = req.chains.as_ref().map(|c| c.ids()).unwrap_or_default();
    if let Some(c) = req.chains {
        runtime.set_chains(c);
    }
    let applet = runtime.compile(req.wasm)?;
    if !applet.handlers.contains(&req.handler) {
        anyhow::bail!(
            "the applet has no handler `{}`; it exports {}",
            req.handler,
            applet
                .handlers
                .iter()
                .filter(|h| *h != "alloc")
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut env = HashMap::new();
    let mut time_ns = 0;
    if let Ok(envelope) = Envelope::parse(req.payload.trim_ascii()) {
        time_ns = envelope.reading().timestamp.saturating_mul(1_000_000_000);
        if envelope.verify(VerifyPath::Fast).is_ok() {
            env = device_env(&envelope.device_id().to_string(), Some("local"), "active", 1);
            // A device's first reading on a fresh processor, by the default rule.
            let rule = crate::config::Limits::default().paid_time();
            let window = envelope.reading().window_s.map(u64::from);
            let (paid, _) = rule.pay(window, time_ns / 1_000_000_000, 0, None);
            env.insert(wattstream_abi::env::PAID_S.to_string(), paid.to_string());
        }
    }
    env.extend(req.env);
    let db = ProjectDb::open(None, req.limits.sql_limit())?;
    let event = EventInput {
        rid: 1,
        payload: req.payload,
        event_type: req.event_type,
        env,
        token: Some(LEDGER_TOKEN.to_string()),
        seed: 1,
        time_ns,
        chains,
        calls: None,
    };
    let (outcome, _db) = runtime.run_sqlite(&applet, &req.handler, event, db, &req.limits);
    Ok((applet.hash, applet.handlers, outcome))
}
