//! One stored event through a project's chain, inside the worker's batch
//! transaction: what the applets see of it (the verified device, the project
//! environment, the paid seconds), the calls in chain order, and what they
//! leave (logs, failures, credits). What the applets saw is kept with the
//! event (`_ws_seen`) so that `rewards replay` runs each event as it was run,
//! whatever changed since: a revoked device, a new owner, a changed
//! environment, applets deployed later.

use std::cell::RefCell;
use std::collections::BTreeMap;

use wattstream_rewards::PaidTime;
use wattstream_sdk::{PublicKey, Signature, envelope_body};

use super::call::Warm;
use super::host_db::HostDb;
use super::projects::Project;
use super::runner::device_env;
use super::runtime::Runtime;
use super::state::EventInput;
use super::tables;
use super::worker::StoredEvent;
use crate::metrics::Metrics;

/// What every event of a batch runs with.
pub(crate) struct Chain<'a> {
    pub(crate) runtime: &'a Runtime,
    pub(crate) project: &'a Project,
    pub(crate) metrics: &'a Metrics,
    /// The token whose mints credit the ledger.
    pub(crate) token: String,
    /// The paid-time rule (`limits.max_window_s`, `limits.max_future_s`).
    pub(crate) paid: PaidTime,
    /// The least severe log line kept (`applets.log_level`).
    pub(crate) log_level: crate::config::LogLevel,
    /// When the batch runs (log and failure rows).
    pub(crate) now: i64,
    /// For a replay: the live project database, whose `_ws_seen` says what
    /// each event's applets saw when it first ran.
    pub(crate) replay_of: Option<&'a dyn crate::store::sql::Sql>,
    /// The instances stateless applets keep for the batch, by place in the
    /// chain ([`super::call`]; a kept instance also checks it is the
    /// applet's).
    pub(crate) warm: RefCell<Vec<Option<Warm>>>,
}

impl<'a> Chain<'a> {
    /// A chain for the live stream (not a replay), run now.
    pub(crate) fn live(
        runtime: &'a Runtime,
        project: &'a Project,
        metrics: &'a Metrics,
        paid: PaidTime,
    ) -> Self {
        Chain {
            runtime,
            project,
            metrics,
            token: project.token(),
            paid,
            log_level: runtime.stored_log_level(),
            now: wattstream_sdk::time::unix_now() as i64,
            replay_of: None,
            warm: RefCell::default(),
        }
    }
}

/// What the applets saw of one event when it ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Seen {
    paid_s: u64,
    /// `active` or `revoked`.
    status: String,
    owner: Option<String>,
    /// The project environment (without the reserved keys).
    env: BTreeMap<String, String>,
    /// `name:hash` of every applet of the chain, in order.
    chain: Vec<String>,
    /// The chains configured (`[chains.ID]`): where `ws_send_tx` may send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chains: Vec<u64>,
}

impl Seen {
    fn load(conn: &dyn crate::store::sql::Sql, event_id: i64) -> anyhow::Result<Option<Seen>> {
        let text = tables::seen(conn, event_id)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn store(&self, db: &HostDb, event_id: i64) -> anyhow::Result<()> {
        let text = serde_json::to_string(self).expect("serialisable");
        Ok(tables::keep_seen(db.sql(), event_id, &text)?)
    }
}

/// The seconds this reading is paid for, by the rule in
/// `wattstream_rewards::paid`, in stored order: the device's latest paid
/// timestamp lives in the project database (`_ws_paid`).
fn paid_seconds(db: &HostDb, rule: &PaidTime, ev: &StoredEvent) -> anyhow::Result<u64> {
    let last = tables::last_paid(db.sql(), &ev.device_id)?;
    let claimed = serde_json::from_str::<serde_json::Value>(&ev.data)
        .ok()
        .and_then(|d| d.get("window_s").and_then(serde_json::Value::as_u64));
    let (paid, next) = rule.pay(
        claimed,
        ev.timestamp.max(0) as u64,
        ev.registered_at.max(0) as u64,
        last.map(|t| t.max(0) as u64),
    );
    if let Some(next) = next {
        tables::set_last_paid(db.sql(), &ev.device_id, next as i64)?;
    }
    Ok(paid)
}

/// What the applets see of `ev`: as it was first run (a replay), or as it is
/// now (computed, and kept with the event).
fn seen(chain: &Chain<'_>, db: &HostDb, ev: &StoredEvent) -> anyhow::Result<Seen> {
    if let Some(live) = chain.replay_of
        && let Some(seen) = Seen::load(live, ev.id)?
    {
        return Ok(seen);
    }
    let seen = Seen {
        paid_s: paid_seconds(db, &chain.paid, ev)?,
        status: if ev.revoked { "revoked" } else { "active" }.into(),
        owner: ev.owner.clone(),
        env: chain
            .project
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        chain: chain
            .project
            .chain("DATA")
            .map(|a| format!("{}:{}", a.name, a.hash))
            .collect(),
        chains: chain.runtime.chain_ids(),
    };
    if chain.replay_of.is_none() {
        seen.store(db, ev.id)?;
    }
    Ok(seen)
}

/// [`run_event`] on a SQLite project database, which comes back.
pub(crate) fn run_event_sqlite(
    chain: &Chain<'_>,
    db: super::db::ProjectDb,
    ev: &StoredEvent,
) -> (super::db::ProjectDb, anyhow::Result<()>) {
    let (back, r) = run_event(chain, HostDb::Sqlite(db), ev);
    (
        back.into_sqlite()
            .expect("the database lent is the one given back"),
        r,
    )
}

/// Runs the chain for one event inside the batch transaction.
pub(crate) fn run_event(chain: &Chain<'_>, db: HostDb, ev: &StoredEvent) -> (HostDb, anyhow::Result<()>) {
    let Chain {
        runtime,
        project,
        metrics,
        ref token,
        ..
    } = *chain;
    let (Ok(pk), Ok(sig)) = (
        PublicKey::from_hex(&ev.public_key),
        Signature::from_slice(&ev.signature),
    ) else {
        return (db, Ok(()));
    };
    let seen = match seen(chain, &db, ev) {
        Ok(s) => s,
        Err(e) => return (db, Err(e)),
    };
    let mut db = db;
    let payload = envelope_body(&ev.data, &sig, &pk).into_bytes();
    let mut env: std::collections::HashMap<String, String> = seen.env.clone().into_iter().collect();
    env.extend(device_env(
        &ev.device_id,
        seen.owner.as_deref(),
        &seen.status,
        ev.id,
    ));
    env.insert(wattstream_abi::env::PAID_S.to_string(), seen.paid_s.to_string());
    // The applets that ran then, in their order then.
    for (position, applet) in project
        .chain("DATA")
        .enumerate()
        .filter(|(_, a)| seen.chain.contains(&format!("{}:{}", a.name, a.hash)))
    {
        let input = EventInput {
            rid: 1,
            payload: payload.clone(),
            event_type: "DATA".into(),
            env: env.clone(),
            token: Some(token.to_string()),
            seed: ev.id as u64,
            time_ns: (ev.timestamp as u64).saturating_mul(1_000_000_000),
            chains: seen.chains.clone(),
            // (No chain configured when it first ran: no call could have
            // been answered, and none is looked up.)
            calls: match chain.replay_of {
                Some(live) if !seen.chains.is_empty() => match tables::calls(live, ev.id, &applet.name) {
                    Ok(kept) => Some(kept),
                    Err(e) => return (db, Err(e.into())),
                },
                _ => None,
            },
        };
        let (o, back) = {
            let mut warm = chain.warm.borrow_mut();
            if warm.len() <= position {
                warm.resize_with(position + 1, || None);
            }
            runtime.run_warm(
                &applet.applet,
                &applet.handler,
                input,
                db,
                &applet.limits,
                &mut warm[position],
            )
        };
        db = back;
        // A call ends within its deadline: a beat per call shows progress.
        metrics.worker.beat();
        metrics.record_applet(&project.name, &applet.name, o.ok(), o.duration);
        if o.new_instance {
            metrics.record_applet_instance(&project.name, &applet.name);
        }
        let who = (applet.name.as_str(), applet.hash.as_str(), position as i64);
        if let Err(e) = record(&db, ev, who, &o, chain, metrics) {
            return (db, Err(e));
        }
        if !o.ok() {
            break;
        }
    }
    (db, Ok(()))
}

/// Stores a call's logs (those at `applets.log_level` or more severe), and
/// its credits and transactions or its failure. `who` is the applet's name,
/// module hash and place in the chain.
fn record(
    db: &HostDb,
    ev: &StoredEvent,
    who: (&str, &str, i64),
    o: &super::runtime::RunOutcome,
    chain: &Chain<'_>,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let (applet, c, now, project) = (who.0, db.sql(), chain.now, chain.project.name.as_str());
    for l in o.effects.logs.iter().filter(|l| chain.log_level.keeps(l.level)) {
        tables::log(c, ev.id, applet, l.level, &l.message, now)?;
    }
    // What its chain calls answered, whatever the outcome: a replay needs them
    // to fail, too, where the call failed.
    for (i, answer) in o.effects.calls.iter().enumerate() {
        tables::keep_call(c, ev.id, applet, i, answer.as_deref())?;
    }
    if !o.ok() {
        tables::failure(c, ev.id, applet, o.code, o.error.as_deref(), now)?;
        return Ok(());
    }
    for (i, credit) in o.effects.credits.iter().enumerate() {
        db.credit((ev.id, ev.timestamp), who, i, &credit.address, credit.amount)?;
    }
    // Sent by the chain's sender once this batch commits (`chain::outbox`).
    for (i, tx) in o.effects.txs.iter().enumerate() {
        crate::chain::outbox::add(c, ev.id, applet, i, tx, now)?;
    }
    for m in &o.effects.metrics {
        metrics.record_applet_metrics(project, applet, m);
    }
    Ok(())
}
