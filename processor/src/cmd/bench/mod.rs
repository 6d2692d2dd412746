//! `wattstream bench`: performance figures, printed with their ratio to the
//! limit they are held to and written as JSON; never a pass/fail test.
//!
//! 1. the signature-verification limit (one thread, all cores);
//! 2. sustained throughput to the ledger against a real `wattstream serve`
//!    (and at other fleet sizes with `--scale`);
//! 3. open-loop latency at half that rate;
//! 4. applet runtime overhead per event;
//! 5. the meter's footprint (`power-meter run --sim`).

mod applets;
mod config;
mod dashboard;
mod fleet;
mod ingest;
mod load;
mod meter;
mod procfs;
mod soak;
mod sustained;
mod turns;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use serde_json::{Value, json};
use wattstream_sdk::DeviceKey;
use wattstream_sdk::client::ProcessorClient;

use ingest::{ServerProcess, verify_limit};

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
    /// Seconds of sustained ingest (the clock then runs on until the ledger
    /// has the last event).
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds per micro-benchmark (verification limit, applet overhead).
    #[arg(long, default_value_t = 2.0)]
    micro_seconds: f64,
    /// Where the benchmark's processor keeps its store (a real disk: fsync on
    /// a tmpfs is free). Its filesystem type is printed.
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
    /// Events per request in the sustained run.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Accepted events allowed ahead of the ledger in the sustained run.
    #[arg(long, default_value_t = 60_000)]
    backlog: i64,
    /// Requests in the open-loop latency run.
    #[arg(long, default_value_t = 10_000)]
    latency_requests: usize,
    /// Events per request in the open-loop latency run.
    #[arg(long, default_value_t = 10)]
    latency_batch: usize,
    /// Also run the sustained figure at these fleet sizes (comma-separated,
    /// such as 1000,10000,100000), each on a fresh processor.
    #[arg(long, value_delimiter = ',')]
    scale: Vec<usize>,
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
    /// Deploy the applets without `stateless`, so every call gets a fresh
    /// instance (as before instances were kept across a batch).
    #[arg(long)]
    fresh_instances: bool,
    /// A processor config (TOML, as for `wattstream serve --config`) for
    /// every processor the benchmark starts: to measure a tuning (`[store]`,
    /// `[rewards]`, `[applets]`, `[limits]`, ...). The benchmark's own
    /// settings win (its listen address, data directory, admin token), and
    /// `--soak` sets `rewards.epoch_s` and `rewards.seal_after_s`. Refused:
    /// `[tls]`, `[mqtt]`, `[chains]`, `[onboarding]` and `store.url` (use
    /// `--store`), which would reach outside the benchmark.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Args {
    /// `serve` arguments: `--config` and the store under test.
    fn serve_args(&self) -> Result<Vec<std::ffi::OsString>> {
        let mut v: Vec<std::ffi::OsString> = match &self.config {
            Some(path) => vec!["--config".into(), path.into()],
            None => Vec::new(),
        };
        v.extend(self.store_args()?);
        Ok(v)
    }

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

pub fn run(mut args: Args) -> Result<i32> {
    let dir = args.dir.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Checked before minutes of setup; the processors get the copy.
    let config = match args.config.take() {
        Some(given) => {
            let (copy, settings) = config::bench_config(&given, &dir)?;
            args.config = Some(copy);
            Some((given, settings))
        }
        None => None,
    };
    let wants = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let micro = args.micro_seconds;
    println!("wattstream bench: {cores} cores, commit {commit}, {micro} s per micro-benchmark\n");
    let mut doc = json!({"cores": cores, "commit": commit});
    if let Some((given, settings)) = &config {
        println!(
            "processor config: {} (for every processor this benchmark starts)\n",
            given.display()
        );
        doc["processor_config"] = json!({"path": given, "settings": settings});
    }
    if let Some(seconds) = args.soak {
        doc["soak"] = run_soak(&args, seconds, config.as_ref().map(|(_, settings)| settings))?;
        let _ = std::fs::remove_dir_all(&dir);
        return write_json(&args, &doc);
    }

    // 1. The limit (the ingest ratios need it too).
    let mut verify_all = f64::NAN;
    if wants(Part::Verify) || wants(Part::Ingest) {
        let (one, all) = verify_limit(micro);
        verify_all = all;
        println!("1. Signature verification limit (ring, P-256)");
        println!("   1 thread {one:>10.0} /s    {cores} threads {all:>10.0} /s\n");
        doc["verify_limit"] = json!({"one_thread_per_s": one, "all_cores_per_s": all});
        doc["limit"] = json!({"all_cores": all});
    }

    let rt = super::runtime()?;

    // 2-3. Sustained to the ledger, then open-loop latency at half of it.
    if wants(Part::Ingest) {
        let fs = procfs::fs_type(&dir);
        println!(
            "2. Sustained ingest to the ledger on {}, store in {} ({fs})",
            args.store_label(),
            dir.display()
        );
        let (sustained, latency) = fleet::run(&args, &rt, &dir, args.devices, verify_all, true)?;
        doc["sustained"] = sustained;
        doc["sustained"]["filesystem"] = json!(fs);
        doc["latency_half"] = latency;
        let mut scale = Vec::new();
        for &devices in &args.scale {
            println!("\n   at {devices} devices:");
            scale.push(fleet::run(&args, &rt, &dir, devices, verify_all, false)?.0);
        }
        if !scale.is_empty() {
            fleet::print_scale(&scale);
            doc["scale"] = json!(scale);
        }
    }

    // 4. Applet overhead.
    if wants(Part::Applets) {
        println!("\n4. Applet runtime overhead per event (fresh instance, limits, savepoint, call, effects)");
        println!(
            "   {:<24} {:>12} {:>14} {:>18}",
            "applet", "us/event", "events/s", "vs 10 us target"
        );
        let figures = applets::applets(&args.applets, micro)?;
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
    let meter_seconds = if wants(Part::Meter) { args.meter_seconds } else { 0 };
    if meter_seconds > 0 {
        let serve = args.serve_args()?;
        let extra: Vec<&std::ffi::OsStr> = serve.iter().map(|s| s.as_os_str()).collect();
        let server = ServerProcess::start_with(&dir.join("meter"), TOKEN, &extra)?;
        let admin = ProcessorClient::new(&server.url, Some(TOKEN.to_string()), Duration::from_secs(60))?;
        let launch = meter::Launch {
            bin: args.meter_bin.clone(),
            runner: args.meter_runner.clone(),
        };
        let (rss, cpu) = meter::footprint(&server.url, &admin, &rt, &dir, meter_seconds, &launch)?;
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
fn run_soak(args: &Args, seconds: u64, settings: Option<&toml::Table>) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!("wattstream-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("soak.toml");
    std::fs::write(&config, config::soak_config(settings)?)?;
    let store = args.store_args()?;
    let mut extra: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), config.as_os_str()];
    extra.extend(store.iter().map(|s| s.as_os_str()));
    let server = ServerProcess::start_with(&dir.join("data"), TOKEN, &extra)?;
    let admin = ProcessorClient::new(&server.url, Some(TOKEN.to_string()), Duration::from_secs(60))?;
    let rt = super::runtime()?;
    let keys: Vec<DeviceKey> = (0..args.devices).map(|_| DeviceKey::generate()).collect();
    let pks: Vec<String> = keys.iter().map(|k| k.public_key().to_hex()).collect();
    let deployed = fleet::prepare(args, &rt, &admin, &pks)?;
    // The fleet's own rate (a window per meter every 5 s) unless told (the
    // sustained figure is the most it keeps up with).
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
