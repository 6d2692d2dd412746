//! `wattstream applet deploy|list|remove|logs|env` against a running
//! processor, and `applet run`: one applet on one event, in memory, with what
//! it did printed the way an applet author wants to read it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wattstream_processor::applets::runner::{LocalRun, run_local};
use wattstream_processor::applets::runtime::RunOutcome;
use wattstream_processor::applets::state::AppletLimits;

use super::client::{Remote, parse_env};

#[derive(Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    remote: Remote,
    /// The project.
    #[arg(long, default_value = "default")]
    project: String,
}

impl ProjectArgs {
    fn path(&self, rest: &str) -> String {
        format!("/v1/projects/{}/{rest}", self.project)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Deploy (or replace) an applet on a running processor.
    Deploy {
        #[command(flatten)]
        target: ProjectArgs,
        /// The applet's name in the project.
        #[arg(long)]
        name: String,
        #[arg(long)]
        wasm: PathBuf,
        /// The event type this applet handles.
        #[arg(long, default_value = "DATA")]
        event_type: String,
        /// The exported handler to call.
        #[arg(long, default_value = "start")]
        handler: String,
        /// Deadline per call, milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// Memory cap, MiB.
        #[arg(long)]
        memory_mb: Option<usize>,
        /// Place it before this applet of the chain (default: where it was, else last).
        #[arg(long, conflicts_with = "after")]
        before: Option<String>,
        /// Place it after this applet of the chain.
        #[arg(long)]
        after: Option<String>,
        /// It gates rewards (like `identity`): it must run before every applet that mints.
        #[arg(long)]
        gate: bool,
        /// Deploy even where an applet that mints would run before a gate.
        #[arg(long)]
        force: bool,
        /// It keeps nothing in memory from one event to the next (no Rust
        /// `static` state, no cache), so one instance may serve a batch's
        /// events instead of a fresh one each: faster, and wrong for an
        /// applet that does keep state.
        #[arg(long)]
        stateless: bool,
    },
    /// List a project's applets.
    List {
        #[command(flatten)]
        target: ProjectArgs,
    },
    /// Remove an applet.
    Remove {
        #[command(flatten)]
        target: ProjectArgs,
        #[arg(long)]
        name: String,
    },
    /// Show a project's latest applet log lines.
    Logs {
        #[command(flatten)]
        target: ProjectArgs,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Set project environment variables (KEY=VALUE; KEY= removes).
    Env {
        #[command(flatten)]
        target: ProjectArgs,
        #[arg(value_parser = parse_env)]
        vars: Vec<(String, String)>,
    },
    /// Run one applet on one event, in memory, and show what it did.
    Run {
        /// The applet (.wasm).
        #[arg(long)]
        wasm: PathBuf,
        /// The event payload (for meter events: the envelope JSON).
        #[arg(long)]
        event: PathBuf,
        #[arg(long, default_value = "DATA")]
        event_type: String,
        #[arg(long, default_value = "start")]
        handler: String,
        /// Environment variables, KEY=VALUE (repeatable).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Deadline of the call, milliseconds.
        #[arg(long, default_value_t = 100)]
        deadline_ms: u64,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// A chain to run against, ID=URL (repeatable): `ws_call_contract`
        /// calls it, and each transaction `ws_send_tx` leaves for it is
        /// signed with --chain-key, sent, and waited for.
        #[arg(long = "chain", value_parser = parse_chain, requires = "chain_key")]
        chain: Vec<(u64, String)>,
        /// The key file (`0x` hex, mode 0600) that signs for every --chain.
        #[arg(long, requires = "chain")]
        chain_key: Option<PathBuf>,
    },
}

fn parse_chain(s: &str) -> Result<(u64, String), String> {
    let (id, url) = s.split_once('=').ok_or("expected ID=URL")?;
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && *n <= i32::MAX as u64)
        .ok_or("the chain id must be a number from 1 to 2^31-1")?;
    Ok((id, url.to_string()))
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(command: Command) -> Result<i32> {
    match command {
        Command::Deploy {
            target,
            name,
            wasm,
            event_type,
            handler,
            deadline_ms,
            memory_mb,
            before,
            after,
            gate,
            force,
            stateless,
        } => {
            let bytes = read(&wasm)?;
            let mut path = target.path(&format!(
                "applets/{name}?event_type={event_type}&handler={handler}&gate={gate}&force={force}&stateless={stateless}"
            ));
            for (key, value) in [
                ("deadline_ms", deadline_ms.map(|d| d.to_string())),
                ("memory_mb", memory_mb.map(|m| m.to_string())),
                ("before", before),
                ("after", after),
            ] {
                if let Some(v) = value {
                    path.push_str(&format!("&{key}={v}"));
                }
            }
            target
                .remote
                .call(|c| async move { c.post_bytes(&path, bytes).await })
        }
        Command::List { target } => {
            let path = target.path("applets");
            target.remote.call(|c| async move { c.get_json(&path).await })
        }
        Command::Remove { target, name } => {
            let path = target.path(&format!("applets/{name}"));
            target.remote.call(|c| async move { c.delete(&path).await })
        }
        Command::Logs { target, limit } => {
            let path = target.path(&format!("logs?limit={limit}"));
            target.remote.call(|c| async move { c.get_json(&path).await })
        }
        Command::Env { target, vars } => {
            // An empty value removes the key.
            let body: serde_json::Map<String, serde_json::Value> = vars
                .into_iter()
                .map(|(k, v)| (k, (!v.is_empty()).then_some(v).into()))
                .collect();
            let path = target.path("env");
            target
                .remote
                .call(|c| async move { c.put_json(&path, &body.into()).await })
        }
        Command::Run {
            wasm,
            event,
            event_type,
            handler,
            env,
            deadline_ms,
            json,
            chain,
            chain_key,
        } => {
            let chains = super::applet_chain::open(&chain, chain_key)?;
            let (hash, handlers, outcome) = run_local(LocalRun {
                wasm: &read(&wasm)?,
                payload: read(&event)?,
                event_type: event_type.clone(),
                handler: handler.clone(),
                env,
                limits: AppletLimits {
                    deadline_ms,
                    ..AppletLimits::default()
                },
                chains: chains.as_ref().map(|(c, _)| c.clone()),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print_outcome(&hash, &handlers, &handler, &event_type, &outcome);
            }
            if !outcome.ok() {
                return Ok(1);
            }
            if let Some((chains, _rt)) = &chains {
                return super::applet_chain::send(chains, &outcome.effects.txs);
            }
            Ok(0)
        }
    }
}

/// `label` and the first line of a list, or `(none)` for an empty one.
fn heading(label: &str, empty: bool) {
    println!("{label:<8} {}", if empty { "(none)" } else { "" });
}

fn print_outcome(hash: &str, handlers: &[String], handler: &str, event_type: &str, o: &RunOutcome) {
    let handlers: Vec<&str> = handlers
        .iter()
        .map(String::as_str)
        .filter(|h| *h != wattstream_abi::imports::EXPORT_ALLOC)
        .collect();
    println!("applet   sha256 {hash}");
    println!("handlers {}", handlers.join(", "));
    println!("ran      {handler} on a {event_type} event");
    match (o.code, &o.error) {
        (Some(c), _) if c >= 0 => println!("result   {c} (accepted; effects committed)"),
        (Some(c), _) => println!("result   {c} (rejected; database changes rolled back, no credits)"),
        (None, Some(e)) => println!("result   failed: {e}"),
        (None, None) => println!("result   failed"),
    }
    println!("time     {} µs", o.duration.as_micros());
    let e = &o.effects;
    heading("logs", e.logs.is_empty());
    for l in &e.logs {
        println!("  [{}] {}", l.level, l.message);
    }
    if e.dropped_log_bytes > 0 {
        println!(
            "  ({} log bytes over the limit were dropped)",
            e.dropped_log_bytes
        );
    }
    heading("sql", e.sql.is_empty());
    for (stmt, n) in &e.sql {
        println!("  {stmt}  -- {n} row(s)");
    }
    heading("credits", e.credits.is_empty());
    for c in &e.credits {
        println!(
            "  {} +{} units ({:.6} tokens)",
            c.address,
            c.amount,
            c.amount as f64 / 1e18
        );
    }
    heading("txs", e.txs.is_empty());
    for t in &e.txs {
        println!(
            "  chain {} to {} value {} data {}",
            t.chain_id, t.to, t.value, t.data
        );
    }
    for m in &e.metrics {
        println!("metrics  {m}");
    }
    if let Some(r) = &e.response {
        println!("response {r}");
    }
}
