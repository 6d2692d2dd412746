//! Sends the outbox (`chain::outbox`) to one configured chain: a thread per
//! chain, a pass every `poll_ms`.
//!
//! A pass, in this order (the order is what keeps each intent to one
//! transaction):
//! 1. **The chain's nonce counts**, before any receipt is asked for: the
//!    count of mined transactions (`latest`) and of known ones (`pending`).
//! 2. **Signed transactions**, every project's, by nonce: a receipt moves the
//!    row to `mined`, then `confirmed` (or `reverted`) under `confirmations`
//!    blocks. No receipt, and the chain's mined count has passed the nonce:
//!    another transaction used it (the count was read before the receipt, so
//!    ours would have shown), the row goes back to `pending`. No receipt
//!    otherwise: the same raw bytes are broadcast again (after a crash, a
//!    node restart, a dropped mempool).
//! 3. **Pending intents**, oldest first: the gas estimate (capped by
//!    `max_gas`), EIP-1559 fees (the gas price where the chain has no base
//!    fee; both capped by `max_fee_gwei`), the next nonce above every
//!    signed one and the chain's pending count, signed with the chain key,
//!    **stored, then broadcast**. A try that fails is retried with doubling
//!    backoff, written to the applet's logs and counted in `/metrics`, and
//!    given up after `max_attempts` (`failed`).
//!
//! Several processors on one PostgreSQL store: only the holder of the
//! chain's session advisory lock sends (its death frees the lock); the
//! others wait. Nonces are assigned only under it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use std::future::IntoFuture;

use alloy::primitives::B256;
use alloy::providers::Provider;
use anyhow::Context;

use super::adapter::Conn;
use super::outbox::{self, Row};
use crate::applets::definitions::Definitions;
use crate::applets::projects::{Project, Projects};
use crate::applets::tables;
use crate::metrics::Metrics;

/// Most intents signed in one pass.
const BATCH: i64 = 64;

/// A running sender; [`Sender::stop`] ends it after its pass.
pub struct Sender {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    pub fn start(
        conn: Arc<Conn>,
        projects: Arc<Projects>,
        metrics: Arc<Metrics>,
        rt: tokio::runtime::Handle,
    ) -> Sender {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("chain-{}", conn.id))
            .spawn(move || run(Pass::new(conn, projects, metrics, rt), &s))
            .expect("a thread for the chain sender");
        Sender {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        *self.stop.0.lock().expect("stop lock") = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut pass: Pass, stop: &(Mutex<bool>, Condvar)) {
    let every = Duration::from_millis(pass.conn.config.poll_ms.max(10));
    // Passes that failed in a row (a node that is down): each waits twice
    // as long as the last, up to a minute.
    let mut failed = 0u32;
    loop {
        if pass.leader() {
            match pass.run() {
                Ok(()) => failed = 0,
                Err(e) => {
                    failed += 1;
                    pass.metrics.record_chain_tx(pass.conn.id, "pass_failed");
                    tracing::warn!(chain = pass.conn.id, failed, "chain sender: {e:#}");
                }
            }
        }
        let wait = (every * 2u32.pow(failed.min(7))).min(Duration::from_secs(60));
        let stopped = stop.0.lock().expect("stop lock");
        let (stopped, _) = stop
            .1
            .wait_timeout_while(stopped, wait, |s| !*s)
            .expect("stop lock");
        if *stopped {
            return;
        }
    }
}

/// One chain's sender state between passes.
struct Pass {
    conn: Arc<Conn>,
    projects: Arc<Projects>,
    metrics: Arc<Metrics>,
    rt: tokio::runtime::Handle,
    /// The node answered with the configured chain id.
    checked: bool,
    /// On PostgreSQL: the session holding the chain's advisory lock.
    lock: Option<crate::store::sql::PgSql>,
}

fn now() -> i64 {
    wattstream_sdk::time::unix_now() as i64
}

impl Pass {
    fn new(
        conn: Arc<Conn>,
        projects: Arc<Projects>,
        metrics: Arc<Metrics>,
        rt: tokio::runtime::Handle,
    ) -> Pass {
        Pass {
            conn,
            projects,
            metrics,
            rt,
            checked: false,
            lock: None,
        }
    }

    /// Whether this processor sends for the chain (always, on SQLite).
    fn leader(&mut self) -> bool {
        use crate::store::sql::{PgSql, Sql, Val};
        let Definitions::Postgres(w) = self.projects.definitions() else {
            return true;
        };
        if let Some(c) = &self.lock {
            if c.row("SELECT 1", &[]).is_ok() {
                return true;
            }
            self.lock = None;
        }
        // The key: the chain and the sending address (two chains, or two keys
        // on one chain, send side by side).
        let key = i64::from_be_bytes(
            alloy::primitives::keccak256(format!(
                "wattstream-chain-sender:{}:{}",
                self.conn.id, self.conn.address
            ))[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let Ok(c) = PgSql::get(&w.pool, &w.rt) else {
            return false;
        };
        let won = c
            .row(
                "SELECT CASE WHEN pg_try_advisory_lock(?1) THEN 1 ELSE 0 END",
                &[Val::Int(key)],
            )
            .ok()
            .flatten()
            .is_some_and(|r| matches!(r[0], Val::Int(1)));
        if won {
            // Closed, not pooled, when dropped: the lock goes with the
            // session. (A session that did not win holds nothing and goes
            // back to the pool: the processors that wait open no connection
            // a poll.)
            c.taint();
            self.lock = Some(c);
        }
        won
    }

    fn block_on<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl IntoFuture<Output = Result<T, E>>,
    ) -> anyhow::Result<T> {
        super::sign::block_on(&self.rt, what, f)
    }

    fn projects(&self) -> Vec<Arc<Project>> {
        let mut names = self.projects.names();
        names.sort();
        names.iter().filter_map(|n| self.projects.get(n)).collect()
    }

    /// Runs `f` on `project`'s database, committed when it succeeds.
    fn write<T>(
        &self,
        project: &Project,
        f: impl FnOnce(&dyn crate::store::sql::Sql) -> Result<T, crate::store::sql::SqlError>,
    ) -> anyhow::Result<T> {
        Ok(self.projects.write_project(project, f)?)
    }

    /// A line in the applet's logs for the row's event, and one in the processor's.
    fn say(&self, project: &Project, r: &Row, level: &'static str, message: &str) {
        let line = format!("chain {}: {message}", self.conn.id);
        match level {
            "error" | "warn" => {
                tracing::warn!(project = %project.name, applet = %r.applet, event = r.event_id, "{line}")
            }
            _ => tracing::info!(project = %project.name, applet = %r.applet, event = r.event_id, "{line}"),
        }
        let at = now();
        let _ = self.write(project, |c| {
            tables::log(c, r.event_id, &r.applet, level, &line, at)
        });
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let p = &self.conn.signer;
        let (id, me) = (self.conn.id, self.conn.address);
        let projects = self.projects();
        let mut open = 0;
        for project in &projects {
            open += self
                .projects
                .read_project(project, |c| outbox::open_count(c, id))?;
        }
        self.metrics.set_chain_open(id, open);
        if open == 0 {
            return Ok(());
        }
        if !self.checked {
            let got = self.block_on("eth_chainId", p.get_chain_id())?;
            anyhow::ensure!(
                got == id,
                "the node at {} is chain {got}, not {id}: nothing is sent",
                self.conn.config.rpc
            );
            self.checked = true;
        }
        // 1. The counts, before the receipts.
        let mined = self.block_on("eth_getTransactionCount", p.get_transaction_count(me).latest())?;
        let mut next = self.block_on("eth_getTransactionCount", p.get_transaction_count(me).pending())?;
        let head = self.block_on("eth_blockNumber", p.get_block_number())?;
        // 2. Signed transactions.
        for project in &projects {
            for r in self
                .projects
                .read_project(project, |c| outbox::in_flight(c, id))?
            {
                let nonce = r.nonce.unwrap_or(0).max(0) as u64;
                self.follow(project, &r, nonce, mined, head)?;
                next = next.max(nonce + 1);
            }
        }
        // 3. Pending intents.
        let mut budget = BATCH;
        for project in &projects {
            let due = self
                .projects
                .read_project(project, |c| outbox::due(c, id, now(), budget))?;
            budget -= due.len() as i64;
            for r in due {
                if self.sign_and_send(project, &r, next)? {
                    next += 1;
                }
            }
        }
        Ok(())
    }

    /// Step 2 for one signed row.
    fn follow(&self, project: &Project, r: &Row, nonce: u64, mined: u64, head: u64) -> anyhow::Result<()> {
        let p = &self.conn.signer;
        let hash: B256 = r
            .hash
            .as_deref()
            .unwrap_or_default()
            .parse()
            .context("a stored hash")?;
        let receipt = self.block_on("eth_getTransactionReceipt", p.get_transaction_receipt(hash))?;
        match receipt {
            Some(rc) => {
                let block = rc.block_number.unwrap_or(head);
                let deep = head.saturating_sub(block) + 1 >= self.conn.config.confirmations;
                let state = match (deep, rc.status()) {
                    (false, _) => "mined",
                    (true, true) => "confirmed",
                    (true, false) => "reverted",
                };
                if state != r.state {
                    self.write(project, |c| outbox::settle(c, r.id, state, Some(block)))?;
                    if state != "mined" {
                        self.metrics.record_chain_tx(self.conn.id, state);
                        let level = if state == "confirmed" { "info" } else { "error" };
                        self.say(
                            project,
                            r,
                            level,
                            &format!("transaction {hash} {state} in block {block}"),
                        );
                    }
                }
            }
            None if nonce < mined => {
                let why = format!("nonce {nonce} was used by another transaction; {hash} is signed again");
                self.write(project, |c| outbox::unsign(c, r.id, &why))?;
                self.metrics.record_chain_tx(self.conn.id, "replaced");
                self.say(project, r, "warn", &why);
            }
            None => {
                if r.state == "mined" {
                    // Its block left the chain: back to waiting, and broadcast again.
                    self.write(project, |c| outbox::settle(c, r.id, "signed", None))?;
                }
                let raw = r.raw.as_deref().unwrap_or_default();
                let raw = hex::decode(raw.trim_start_matches("0x")).context("stored raw bytes")?;
                anyhow::ensure!(!raw.is_empty(), "outbox row {} is signed without its bytes", r.id);
                self.broadcast(project, r, hash, &raw)?;
            }
        }
        Ok(())
    }

    /// Sends `raw` (the transaction `hash` of row `r`) to the node.
    fn broadcast(&self, project: &Project, r: &Row, hash: B256, raw: &[u8]) -> anyhow::Result<()> {
        let sent = self.block_on(
            "eth_sendRawTransaction",
            self.conn.signer.send_raw_transaction(raw),
        );
        match sent {
            Ok(_) => self.metrics.record_chain_tx(self.conn.id, "broadcast"),
            // The node has it already (a rebroadcast): nothing to say.
            Err(e) if e.to_string().to_ascii_lowercase().contains("known") => {}
            Err(e) => {
                self.metrics.record_chain_tx(self.conn.id, "broadcast_failed");
                let why = format!("broadcasting {hash}: {e:#}");
                self.write(project, |c| outbox::note(c, r.id, &why))?;
                self.say(project, r, "error", &why);
            }
        }
        Ok(())
    }

    /// Step 3 for one intent: whether it was signed (and so used `nonce`).
    fn sign_and_send(&self, project: &Project, r: &Row, nonce: u64) -> anyhow::Result<bool> {
        let signed = super::sign::sign(&self.conn, &self.rt, (&r.to, &r.value, &r.data), nonce);
        let (raw, hash) = match signed {
            Ok(s) => s,
            Err(e) => {
                let attempts = r.attempts + 1;
                let give_up = attempts >= i64::from(self.conn.config.max_attempts.max(1));
                // 1 s, 2 s, 4 s, … 5 minutes.
                let wait = (1i64 << (attempts.clamp(1, 10) - 1)).min(300);
                let why = format!("{e:#}");
                self.write(project, |c| {
                    outbox::retry(c, r.id, attempts, now() + wait, &why, give_up)
                })?;
                self.metrics
                    .record_chain_tx(self.conn.id, if give_up { "failed" } else { "retried" });
                let what = if give_up {
                    format!("gave up after {attempts} tries: {why}")
                } else {
                    format!("try {attempts} failed (next in {}s): {why}", wait)
                };
                self.say(project, r, "error", &what);
                return Ok(false);
            }
        };
        // Stored before it is broadcast: a crash between the two sends these bytes again.
        self.write(project, |c| {
            outbox::signed(
                c,
                r.id,
                nonce,
                &format!("{hash}"),
                &format!("0x{}", hex::encode(&raw)),
            )
        })?;
        self.metrics.record_chain_tx(self.conn.id, "signed");
        self.say(
            project,
            r,
            "info",
            &format!("transaction {hash} signed with nonce {nonce}"),
        );
        self.broadcast(project, r, hash, &raw)?;
        Ok(true)
    }
}
