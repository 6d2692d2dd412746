//! One fleet-sized run of `wattstream bench`: a fresh `wattstream serve` on
//! the store under test, `devices` registered, `identity` and
//! `rewards-tiered` deployed, readings signed beforehand; then the sustained
//! figure to the ledger and (for the headline fleet) open-loop latency at half
//! of it. Printing and JSON for both.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use wattstream_sdk::client::ProcessorClient;

use super::ingest::ServerProcess;
use super::load::Fleet;
use super::sustained::{open_loop, sustained};
use super::{Args, TOKEN};

/// Connections of the sustained run (requests of `--batch`).
const CONNECTIONS: usize = 8;

/// Runs the sustained figure at `devices` and, when `latency`, the open-loop
/// run at half of it. Returns their JSON (latency: null when not run).
pub fn run(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    devices: usize,
    verify_all: f64,
    latency: bool,
) -> Result<(Value, Value)> {
    let store = args.store_args()?;
    let extra: Vec<&std::ffi::OsStr> = store.iter().map(|s| s.as_os_str()).collect();
    if let Some(url) = &args.store {
        rt.block_on(empty_store(url))?;
    }
    let data = dir.join(format!("devices-{devices}"));
    // A fresh store: `--scale` may repeat the headline's fleet size, whose
    // run left its store here (a 10,000-device scale run on the headline's
    // 250,000 events measured about half the headline figure).
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    let server = ServerProcess::start_with(&data, TOKEN, &extra)?;
    let admin = ProcessorClient::new(&server.url, Some(TOKEN.to_string()), Duration::from_secs(60))?;
    let t = Instant::now();
    let mut fleet = Fleet::new(devices)?;
    let log = super::ingest::log_path(&data);
    let deployed = prepare(args, rt, &admin, &fleet.public_keys())
        .with_context(|| format!("the processor's log: {}", log.display()))?;
    anyhow::ensure!(
        deployed.len() == 2,
        "the sustained figure needs identity and rewards-tiered in {} (build the applets: scripts/setup.sh's build_applets)",
        args.applets.display()
    );
    let rss_registered = server.usage_now().rss_kib;
    // Enough for the run at the pace of the verification limit; a faster
    // run ends early and says so.
    let planned = (args.seconds * verify_all.max(1000.0) * 0.75) as usize;
    let bodies = fleet.sign(planned);
    println!(
        "   {devices} devices registered, {} applets, {} readings signed in {:.0} s; requests of {} over {CONNECTIONS} connections for {} s, at most {} events ahead of the ledger",
        deployed.join(" + "),
        bodies.len(),
        t.elapsed().as_secs_f64(),
        args.batch,
        args.seconds,
        args.backlog
    );
    let before = server.usage_now();
    let threads_before = super::procfs::written_by_thread(server.child.id());
    let s = rt.block_on(sustained(
        &server.url,
        bodies,
        args.batch,
        CONNECTIONS,
        args.seconds,
        args.backlog,
    ))?;
    let after = server.usage_now();
    // On PostgreSQL the server's processes write, and are not counted.
    let by_thread = args.store.is_none().then(|| {
        kb_by_thread(
            &threads_before,
            &super::procfs::written_by_thread(server.child.id()),
            after.written.saturating_sub(before.written),
            s.events,
        )
    });
    let cpu = (after.cpu_s - before.cpu_s) / s.seconds * 100.0;
    let rss = after.peak_kib as f64 / 1024.0;
    // Per event counted: the processor's CPU and storage writes from the
    // clock's start until the ledger had the last event (registering the
    // fleet comes before it).
    let per_event = |d: f64| d / (s.events.max(1) as f64);
    let cpu_us = per_event(after.cpu_s - before.cpu_s) * 1e6;
    let written_kb = per_event(after.written.saturating_sub(before.written) as f64) / 1e3;
    let ratio = s.events_per_s / verify_all;
    println!(
        "   sustained: {:.0} events/s through the ledger ({} events in {:.1} s; ratio to the verification limit {ratio:.2}, target >= 0.5)",
        s.events_per_s, s.events, s.seconds
    );
    println!(
        "   acknowledged {:.0}/s while sending, ledger {:.1} s behind at the end (largest backlog {}), processor CPU {cpu:.0} %, peak RSS {rss:.1} MB ({:.1} after registering){}",
        s.acknowledged_per_s,
        s.drain_s,
        s.max_backlog,
        rss_registered as f64 / 1024.0,
        if s.ran_out {
            "; ran out of signed readings before the time was up"
        } else {
            ""
        }
    );
    // On PostgreSQL the server's processes write, and are not counted.
    let written = if args.store.is_some() {
        "writes: PostgreSQL's own, not counted".to_string()
    } else {
        format!("{written_kb:.1} KB written to storage")
    };
    println!("   per event: {cpu_us:.0} us of processor CPU (verification included), {written}");
    if let Some(rows) = &by_thread {
        let parts: Vec<String> = rows.iter().map(|(t, kb)| format!("{t} {kb}")).collect();
        println!("   written per event by thread, KB: {}", parts.join(", "));
    }
    if fleet.unpaid > 0 {
        println!(
            "   ({} readings were older than their device's paid span: accepted, paid nothing)",
            fleet.unpaid
        );
    }
    let summary = json!({
        "events_per_s": s.events_per_s, "ratio": ratio, "devices": devices, "applets": deployed,
        "store": args.store_label(), "events": s.events, "seconds": s.seconds,
        "acknowledged_per_s": s.acknowledged_per_s, "drain_s": s.drain_s, "max_backlog": s.max_backlog,
        "batch": args.batch, "connections": CONNECTIONS, "processor_cpu_percent": cpu, "rss_mb": rss,
        "rss_registered_mb": rss_registered as f64 / 1024.0, "unpaid_readings": fleet.unpaid,
        "cpu_us_per_event": cpu_us, "written_kb_per_event": args.store.is_none().then_some(written_kb),
        "written_kb_per_event_by_thread": by_thread.map(|rows| rows.into_iter().collect::<serde_json::Map<_, _>>()),
    });
    if !latency {
        return Ok((summary, Value::Null));
    }
    let mut summary = summary;
    summary["fleet_page"] = super::dashboard::fleet_page(rt, &admin, devices)?;
    let rate = s.events_per_s / 2.0;
    let bodies = fleet.sign(args.latency_requests * args.latency_batch);
    println!(
        "\n3. Open-loop latency at half the sustained rate: {rate:.0} events/s offered as {} requests of {}, each timed from when it was due",
        args.latency_requests, args.latency_batch
    );
    let turns_before = rt.block_on(super::turns::scrape(&admin))?;
    let started = Instant::now();
    let l = rt.block_on(open_loop(&server.url, bodies, args.latency_batch, rate))?;
    let took = started.elapsed().as_secs_f64();
    let turns = super::turns::StoreTurns::between(&turns_before, &rt.block_on(super::turns::scrape(&admin))?);
    println!(
        "   p50 {:.2} ms   p99 {:.2} ms (target <= 25 ms: ratio {:.2})   p99.9 {:.2} ms   max {:.2} ms{}",
        l.p50_ms,
        l.p99_ms,
        l.p99_ms / 25.0,
        l.p999_ms,
        l.max_ms,
        if l.failed > 0 {
            format!("   ({} requests not accepted)", l.failed)
        } else {
            String::new()
        }
    );
    println!("   {}", turns.line(took));
    let mut latency = serde_json::to_value(l)?;
    latency["store_turns"] = serde_json::to_value(&turns)?;
    latency["seconds"] = json!(took);
    Ok((summary, latency))
}

/// KB written per event by each thread name between two readings, largest
/// first, then `the rest`: the process's total less its threads' (the
/// threads that exited meanwhile, such as idle blocking threads).
fn kb_by_thread(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    total: u64,
    events: u64,
) -> Vec<(String, Value)> {
    let kb = |b: u64| b as f64 / 1e3 / events.max(1) as f64;
    let mut rows: Vec<(String, u64)> = after
        .iter()
        .map(|(t, n)| (t.clone(), n.saturating_sub(before.get(t).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let listed: u64 = rows.iter().map(|(_, n)| n).sum();
    rows.push(("the rest".into(), total.saturating_sub(listed)));
    rows.into_iter()
        .map(|(t, n)| (t, json!((kb(n) * 10.0).round() / 10.0)))
        .collect()
}

/// The scale table.
pub fn print_scale(runs: &[Value]) {
    println!(
        "\n   {:>10} {:>12} {:>8} {:>10} {:>22}",
        "devices", "events/s", "ratio", "RSS MB", "meters at 5 s windows"
    );
    for r in runs {
        let rate = r["events_per_s"].as_f64().unwrap_or(0.0);
        println!(
            "   {:>10} {:>12.0} {:>8.2} {:>10.1} {:>22.0}",
            r["devices"].as_u64().unwrap_or(0),
            rate,
            r["ratio"].as_f64().unwrap_or(0.0),
            r["rss_mb"].as_f64().unwrap_or(0.0),
            rate * 5.0
        );
    }
}

/// Registers the public keys (16 at a time) and deploys the identity and
/// tiered reward applets (when built). Returns the applets deployed.
pub fn prepare(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    admin: &ProcessorClient,
    public_keys: &[String],
) -> Result<Vec<&'static str>> {
    rt.block_on(async {
        let tasks: Vec<_> = public_keys
            .chunks(public_keys.len().div_ceil(16).max(1))
            .map(|c| {
                let (admin, pks) = (admin.clone(), c.to_vec());
                tokio::spawn(async move {
                    for pk in pks {
                        admin.register_device(&pk, Some("bench")).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let mut deployed = Vec::new();
        for name in ["identity", "rewards-tiered"] {
            if let Ok(wasm) = std::fs::read(args.applets.join(format!("{name}.wasm"))) {
                admin
                    .post_bytes(
                        &format!(
                            "/v1/projects/default/applets/{name}?gate={}&stateless={}",
                            name == "identity",
                            !args.fresh_instances
                        ),
                        wasm,
                    )
                    .await?;
                deployed.push(name);
            }
        }
        Ok(deployed)
    })
}

/// Empties the PostgreSQL database under test between fleet sizes, so each
/// starts from nothing (its tables, and the applet schemas of earlier runs).
/// Only a database this benchmark made its own (or an empty one) is touched:
/// a database with anything else in it is refused, never dropped.
async fn empty_store(url: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)) }
    };
    let tables =
        count("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
            .await?;
    let ours =
        count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'ws_bench_marker'")
            .await?;
    anyhow::ensure!(
        tables == 0 || ours == 1,
        "the benchmark's database holds tables it did not make: give it an empty database (createdb one)"
    );
    client
        .batch_execute(
            "DO $$ DECLARE s record; BEGIN
               FOR s IN SELECT nspname FROM pg_namespace
                        WHERE nspname LIKE 'ws\\_%' OR nspname = 'public' LOOP
                 EXECUTE format('DROP SCHEMA %I CASCADE', s.nspname);
               END LOOP;
               CREATE SCHEMA public;
               CREATE TABLE public.ws_bench_marker ();
             END $$;",
        )
        .await?;
    Ok(())
}
