//! `wattstream bench`: performance figures, printed with their ratio to the
//! limit they are held to and written as JSON; never a pass/fail test.
//!
//! 1. the signature-verification limit (one thread, all cores);
//! 2. ingest end to end against a real `wattstream serve` (batch 1 and 100);
//! 3. latency at half the batch-100 rate;
//! 4. applet runtime overhead per event;
//! 5. the meter's footprint (`power-meter run --sim`).

mod applets;
mod ingest;
mod meter;
mod procfs;
mod soak;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use serde_json::{Value, json};
use wattstream_sdk::DeviceKey;
use wattstream_sdk::client::ProcessorClient;

use ingest::{ServerProcess, envelopes, send, verify_limit};

/// A part of the benchmark.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    Verify,
    Ingest,
    Applets,
    Meter,
}

#[derive(ClapArgs)]
pub struct Args {
    /// Seconds per figure.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Directory of example applets (.wasm) to include.
    #[arg(long, default_value = "applets/dist")]
    applets: PathBuf,
    /// Also write every figure to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Registered devices for the ingest runs.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Seconds of meter footprint (0 skips it).
    #[arg(long, default_value_t = 60)]
    meter_seconds: u64,
    /// The meter binary the footprint measures (default: `power-meter`
    /// beside this one), such as an ARM package's.
    #[arg(long)]
    meter_bin: Option<PathBuf>,
    /// Run the meter through this command, such as
    /// "qemu-aarch64 -L /usr/aarch64-linux-gnu" (figures are then emulated).
    #[arg(long, default_value = "")]
    meter_runner: String,
    /// Run only these parts (repeatable; default: all).
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Instead of the figures above: hold the fleet at a steady load for this
    /// many seconds, every device polling its rewards each minute, and report
    /// RSS growth and rewards-query latency.
    #[arg(long)]
    soak: Option<u64>,
    /// Events per second for --soak (default: the fleet's own rate, devices / 5).
    #[arg(long)]
    soak_rate: Option<f64>,
    /// Run the processor on this PostgreSQL database
    /// (`postgres://USER@HOST:PORT/DB`, empty: create it with `createdb`)
    /// instead of SQLite in a scratch data directory.
    #[arg(long)]
    store: Option<String>,
}

impl Args {
    /// `serve` arguments for the store under test.
    fn store_args(&self) -> Result<Vec<std::ffi::OsString>> {
        let Some(url) = &self.store else {
            return Ok(Vec::new());
        };
        wattstream_processor::store::pg::check_url(url)?;
        Ok(vec!["--store".into(), url.into()])
    }

    /// What the figures were measured on.
    fn store_label(&self) -> &'static str {
        if self.store.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }
}

const TOKEN: &str = "bench-admin-token-0123456789";

pub fn run(args: Args) -> Result<i32> {
    let wants = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let seconds = args.seconds;
    println!("wattstream bench: {cores} cores, commit {commit}, {seconds} s per micro-benchmark\n");
    let mut doc = json!({"cores": cores, "commit": commit});
    if let Some(seconds) = args.soak {
        doc["soak"] = run_soak(&args, seconds)?;
        return write_json(&args, &doc);
    }

    // 1. The limit (the ingest ratios need it too).
    let mut verify_all = f64::NAN;
    if wants(Part::Verify) || wants(Part::Ingest) {
        let (one, all) = verify_limit(seconds);
        verify_all = all;
        println!("1. Signature verification limit (ring, P-256)");
        println!("   1 thread {one:>10.0} /s    {cores} threads {all:>10.0} /s\n");
        doc["verify_limit"] = json!({"one_thread_per_s": one, "all_cores_per_s": all});
    }

    let dir = std::env::temp_dir().join(format!("wattstream-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let meter_seconds = if wants(Part::Meter) { args.meter_seconds } else { 0 };
    let server = if wants(Part::Ingest) || meter_seconds > 0 {
        let store = args.store_args()?;
        let extra: Vec<&std::ffi::OsStr> = store.iter().map(|s| s.as_os_str()).collect();
        let server = ServerProcess::start_with(&dir, TOKEN, &extra)?;
        doc["store"] = json!(args.store_label());
        let admin = ProcessorClient::new(&server.url, Some(TOKEN.to_string()), Duration::from_secs(60))?;
        Some((server, admin))
    } else {
        None
    };
    let rt = super::runtime()?;

    // 2-3. Ingest end to end against a real `wattstream serve`.
    if let (true, Some((server, admin))) = (wants(Part::Ingest), &server) {
        ingest(&args, server, &rt, admin, verify_all, &mut doc)?;
    }

    // 4. Applet overhead.
    if wants(Part::Applets) {
        println!("\n4. Applet runtime overhead per event (fresh instance, limits, savepoint, call, effects)");
        println!(
            "   {:<24} {:>12} {:>14} {:>18}",
            "applet", "us/event", "events/s", "vs 10 us target"
        );
        let figures = applets::applets(&args.applets, seconds)?;
        for f in &figures {
            let ratio = if f.applet.starts_with("trivial") {
                format!("{:.2}", f.us_per_event / 10.0)
            } else {
                "-".into()
            };
            println!(
                "   {:<24} {:>12.2} {:>14.0} {:>18}",
                f.applet, f.us_per_event, f.events_per_s, ratio
            );
        }
        doc["applets"] = serde_json::to_value(&figures)?;
    }

    // 5. Meter footprint.
    if let (true, Some((server, admin))) = (meter_seconds > 0, &server) {
        let launch = meter::Launch {
            bin: args.meter_bin.clone(),
            runner: args.meter_runner.clone(),
        };
        let (rss, cpu) = meter::footprint(&server.url, admin, &rt, &dir, meter_seconds, &launch)?;
        let how = match args.meter_runner.trim() {
            "" => String::new(),
            runner => format!(" (EMULATED: under `{runner}`; RSS and CPU are the emulator's)"),
        };
        println!("\n5. Meter: power-meter run --sim, 10 Hz, 5 s windows, {meter_seconds} s{how}");
        println!(
            "   RSS {rss:.2} MB (target <= 10 MB: ratio {:.2})   CPU {cpu:.3} % of a core (target <= 1 %: ratio {:.2})",
            rss / 10.0,
            cpu / 1.0
        );
        doc["meter"] =
            json!({"rss_mb": rss, "cpu_percent": cpu, "seconds": meter_seconds, "runner": args.meter_runner});
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    write_json(&args, &doc)
}

fn write_json(args: &Args, doc: &Value) -> Result<i32> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(doc)?)?;
        println!("\nfigures written to {}", path.display());
    }
    Ok(0)
}

/// `--soak`: a processor sealing an epoch a minute, the fleet registered and
/// the reward applets deployed, then the steady load (see `soak.rs`).
fn run_soak(args: &Args, seconds: u64) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!("wattstream-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("soak.toml");
    std::fs::write(&config, "[rewards]\nepoch_s = 60\nseal_after_s = 5\n")?;
    let store = args.store_args()?;
    let mut extra: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), config.as_os_str()];
    extra.extend(store.iter().map(|s| s.as_os_str()));
    let server = ServerProcess::start_with(&dir.join("data"), TOKEN, &extra)?;
    let admin = ProcessorClient::new(&server.url, Some(TOKEN.to_string()), Duration::from_secs(60))?;
    let rt = super::runtime()?;
    let (keys, deployed) = prepare(args, &rt, &admin)?;
    // The fleet's own rate (a window per meter every 5 s) unless told: the
    // batch-100 burst maximum is measured with the applets and the ledger idle
    // and is not a rate they sustain (the throughput issue measures that).
    let rate = args.soak_rate.unwrap_or(keys.len() as f64 / 5.0);
    println!(
        "Soak on {}: {} devices, applets {}, {rate:.0} events/s for {seconds} s, every device polling its rewards each minute, an epoch sealed every minute",
        args.store_label(),
        keys.len(),
        deployed.join(" + ")
    );
    let plan = soak::Plan {
        seconds,
        rate,
        connections: 8,
        data_dir: dir.join("data"),
        store: args.store.clone(),
    };
    let figures = soak::soak(&server, &rt, keys, &plan)?;
    let head = rt.block_on(admin.ledger_head())?;
    println!(
        "   ledger at the end: {} entries, newest sealed epoch {:?}",
        head.seq, head.last_sealed_epoch
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

/// 2-3: ingest over loopback HTTP with `devices` registered and the identity
/// and tiered reward applets deployed, then latency at half that rate.
fn ingest(
    args: &Args,
    server: &ServerProcess,
    rt: &tokio::runtime::Runtime,
    admin: &ProcessorClient,
    verify_all: f64,
    doc: &mut Value,
) -> Result<()> {
    let devices = args.devices;
    let (keys, deployed) = prepare(args, rt, admin)?;
    let (_, rss_registered) = server.usage();
    let applets_note = if deployed.is_empty() {
        "no applets".to_string()
    } else {
        format!("applets {}", deployed.join(" + "))
    };
    let durable = if args.store.is_some() {
        "PostgreSQL on the same cores, synchronous_commit as the server has it"
    } else {
        "SQLite, synchronous=FULL"
    };
    println!(
        "2. Ingest over loopback HTTP: {devices} registered devices, {applets_note}, durable store ({durable})"
    );
    println!(
        "   {:<10} {:>9} {:>12} {:>9} {:>9} {:>9} {:>10} {:>16}",
        "batch", "events", "events/s", "p50 ms", "p99 ms", "max ms", "proc CPU", "vs verify limit"
    );
    let mut runs = Vec::new();
    let plan = [
        (1usize, envelopes(&keys, 1, 1), 32usize),
        (100, envelopes(&keys, 2, 2), 8),
    ];
    for (batch, bodies, connections) in plan {
        server.wait_idle(Duration::from_secs(60));
        let n = bodies.len();
        let (cpu0, _) = server.usage();
        let t = std::time::Instant::now();
        let (rate, lat) = rt.block_on(send(&server.url, bodies, batch, connections, None))?;
        let cpu = (server.usage().0 - cpu0) / t.elapsed().as_secs_f64() * 100.0;
        let ratio = rate / verify_all;
        println!(
            "   {:<10} {:>9} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.0}% {:>16.2}",
            batch, n, rate, lat.p50_ms, lat.p99_ms, lat.max_ms, cpu, ratio
        );
        runs.push(
            json!({"batch": batch, "events": n, "events_per_s": rate, "latency": lat,
            "processor_cpu_percent": cpu, "ratio_to_verify_limit": ratio}),
        );
    }
    let max_rate = runs[1]["events_per_s"].as_f64().unwrap_or(1000.0);
    // Let the applet worker finish the backlog so the paced run measures ingest.
    server.wait_idle(Duration::from_secs(60));
    let paced = envelopes(&keys, 4, 1);
    let (moderate_rate, moderate) = rt.block_on(send(&server.url, paced, 100, 8, Some(max_rate / 2.0)))?;
    println!(
        "\n3. Latency at half the batch-100 maximum ({:.0} events/s offered, {moderate_rate:.0} achieved), per request of 100",
        max_rate / 2.0
    );
    println!(
        "   p50 {:.2} ms   p99 {:.2} ms (target <= 25 ms: ratio {:.2})   max {:.2} ms",
        moderate.p50_ms,
        moderate.p99_ms,
        moderate.p99_ms / 25.0,
        moderate.max_ms
    );
    let (_, rss_peak) = server.usage();
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\n   processor peak RSS: {:.1} MB after registering {devices} devices, {:.1} MB at the end (target <= 200 MB: ratio {:.2})",
        mb(rss_registered),
        mb(rss_peak),
        mb(rss_peak) / 200.0
    );
    doc["ingest"] = json!(runs);
    doc["applets_deployed"] = json!(deployed);
    doc["moderate"] =
        json!({"offered_per_s": max_rate / 2.0, "achieved_per_s": moderate_rate, "latency": moderate});
    doc["processor_rss_mb"] =
        json!({"registered": mb(rss_registered), "peak": mb(rss_peak), "devices": devices});
    Ok(())
}

/// Registers `args.devices` fresh keys and deploys the identity and tiered
/// reward applets (when built). Returns the keys and the applets deployed.
fn prepare(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    admin: &ProcessorClient,
) -> Result<(Vec<DeviceKey>, Vec<&'static str>)> {
    let devices = args.devices;
    let keys: Vec<DeviceKey> = (0..devices).map(|_| DeviceKey::generate()).collect();
    let deployed = rt.block_on(async {
        let tasks: Vec<_> = keys
            .chunks(devices.div_ceil(16).max(1))
            .map(|c| {
                let (admin, pks) = (
                    admin.clone(),
                    c.iter().map(|k| k.public_key().to_hex()).collect::<Vec<_>>(),
                );
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
                        &format!("/v1/projects/default/applets/{name}?gate={}", name == "identity"),
                        wasm,
                    )
                    .await?;
                deployed.push(name);
            }
        }
        Ok::<_, anyhow::Error>(deployed)
    })?;
    Ok((keys, deployed))
}
