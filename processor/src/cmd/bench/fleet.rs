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
    let serve = args.serve_args()?;
    let extra: Vec<&std::ffi::OsStr> = serve.iter().map(|s| s.as_os_str()).collect();
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
    let threads_before = super::procfs::by_thread_of(server.child.id());
    let generator_before = super::procfs::usage(std::process::id()).cpu_s;
    let s = rt.block_on(sustained(
        &server.url,
        bodies,
        args.batch,
        CONNECTIONS,
        args.seconds,
        args.backlog,
    ))?;
    let after = server.usage_now();
    let generator_cpu_s = super::procfs::usage(std::process::id()).cpu_s - generator_before;
    let by_thread = per_thread(
        &threads_before,
        &super::procfs::by_thread_of(server.child.id()),
        (
            after.written.saturating_sub(before.written),
            after.cpu_s - before.cpu_s,
        ),
        s.events,
    );
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
    let generator_us = per_event(generator_cpu_s) * 1e6;
    println!(
        "   per event: {cpu_us:.0} us of processor CPU (verification included), {written}; the load generator (this process) {generator_us:.0} us of CPU on the same cores"
    );
    let cpu_parts: Vec<String> = by_thread.iter().map(|r| format!("{} {:.0}", r.0, r.2)).collect();
    println!(
        "   processor CPU per event by thread, us: {}",
        cpu_parts.join(", ")
    );
    // On PostgreSQL the server's processes write, and are not counted.
    if args.store.is_none() {
        let mut rows = by_thread.clone();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        let parts: Vec<String> = rows.iter().map(|r| format!("{} {:.1}", r.0, r.1)).collect();
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
        "written_kb_per_event_by_thread": args.store.is_none().then(|| {
            by_thread.iter().map(|r| (r.0.clone(), json!((r.1 * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>()
        }),
        "cpu_us_per_event_by_thread": by_thread.iter().map(|r| (r.0.clone(), json!(r.2.round()))).collect::<serde_json::Map<_, _>>(),
        "generator_cpu_us_per_event": generator_us,
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

/// Per event, by thread name between two readings: (name, KB written to
/// storage, µs of CPU), largest CPU first, then `the rest`: the process's
/// totals less its threads' (the threads that exited meanwhile, such as idle
/// blocking threads).
fn per_thread(
    before: &std::collections::BTreeMap<String, super::procfs::ThreadUsage>,
    after: &std::collections::BTreeMap<String, super::procfs::ThreadUsage>,
    (written, cpu_s): (u64, f64),
    events: u64,
) -> Vec<(String, f64, f64)> {
    let per = |x: f64| x / events.max(1) as f64;
    let mut rows: Vec<(String, u64, f64)> = after
        .iter()
        .map(|(t, now)| {
            let then = before.get(t).copied().unwrap_or_default();
            (
                t.clone(),
                now.written.saturating_sub(then.written),
                (now.cpu_s - then.cpu_s).max(0.0),
            )
        })
        .filter(|(_, n, c)| *n > 0 || *c > 0.0)
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let listed: (u64, f64) = rows.iter().fold((0, 0.0), |(n, c), r| (n + r.1, c + r.2));
    rows.push((
        "the rest".into(),
        written.saturating_sub(listed.0),
        (cpu_s - listed.1).max(0.0),
    ));
    rows.into_iter()
        .map(|(t, n, c)| (t, per(n as f64) / 1e3, per(c) * 1e6))
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

#[cfg(test)]
mod tests {
    use super::super::procfs::ThreadUsage;

    #[test]
    fn per_thread_counts_what_each_did_during_the_run_and_leaves_the_rest_to_the_total() {
        let at = |rows: &[(&str, u64, f64)]| {
            rows.iter()
                .map(|(t, written, cpu_s)| {
                    (
                        t.to_string(),
                        ThreadUsage {
                            written: *written,
                            cpu_s: *cpu_s,
                        },
                    )
                })
                .collect()
        };
        let before = at(&[("store-writer", 1_000, 1.0), ("applet-worker", 0, 2.0)]);
        // A thread that started during the run counts from zero; one that
        // did nothing is left out.
        let after = at(&[
            ("store-writer", 5_000, 1.5),
            ("applet-worker", 2_000, 4.0),
            ("tokio-rt-worker", 0, 1.0),
            ("idle", 0, 0.0),
        ]);
        // The process did 10,000 bytes and 4 s in all: 4,000 bytes and 0.5 s
        // in threads gone since.
        let rows = super::per_thread(&before, &after, (10_000, 4.0), 1_000);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            ["applet-worker", "tokio-rt-worker", "store-writer", "the rest"]
        );
        // Bytes per event (KB x 1000) and µs per event, rounded.
        let (bytes, us): (Vec<i64>, Vec<i64>) = rows
            .iter()
            .map(|r| ((r.1 * 1e3).round() as i64, r.2.round() as i64))
            .unzip();
        assert_eq!(bytes, [2, 0, 4, 4]);
        assert_eq!(us, [2000, 1000, 500, 500]);
    }
}
