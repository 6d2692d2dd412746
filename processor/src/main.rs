//! `wattstream`: the processor's command line. `serve` runs the server; `verify`
//! checks one envelope offline; `device` talks to a running server's admin API.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use wattstream_processor::config::Config;
use wattstream_processor::pipeline::{admit, unix_now};
use wattstream_processor::server;
use wattstream_sdk::client::ProcessorClient;

#[derive(Parser)]
#[command(name = "wattstream", version, about = "WattStream data-stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor.
    Serve {
        /// TOML configuration file (every key optional).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin bearer token (overrides the config).
        #[arg(long, env = "WATTSTREAM_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Check an envelope on stdin: structure, reading, timestamp and signature.
    /// Prints the device id and exits 0, or prints the reason and exits 1.
    Verify {
        /// Seconds a timestamp may be ahead of this machine's clock.
        #[arg(long, default_value_t = 300)]
        max_future_s: u64,
    },
    /// Manage the device registry of a running processor.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Measure and print performance figures (never a pass/fail test).
    Bench {
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
    },
    /// The local demo: a processor, the example applets, simulated meters, the screen.
    Demo {
        #[arg(long, default_value = "demo-data")]
        data_dir: PathBuf,
        /// How long to run, seconds.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        meters: usize,
        /// Where the built applets are.
        #[arg(long, default_value = "applets/dist")]
        applets: PathBuf,
    },
    /// Check, replay and inspect the rewards ledger in a data directory.
    Rewards {
        #[command(subcommand)]
        command: RewardsCommand,
    },
    /// Work with applets.
    Applet {
        #[command(subcommand)]
        command: AppletCommand,
    },
}

#[derive(Args)]
struct DataDirArgs {
    /// The processor's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The processor's configuration (epoch length, cap, default project).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RewardsCommand {
    /// Recompute the hash chain and every seal; exit 1 naming the first entry or epoch that does not hold.
    Verify {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Re-run the stored events through the deployed applets into a fresh ledger; report whether every seal matches.
    Replay {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// A device's ledger entries and balance.
    Show {
        #[command(flatten)]
        dir: DataDirArgs,
        #[arg(long)]
        device: String,
    },
}

#[derive(Args)]
struct ProjectArgs {
    #[command(flatten)]
    remote: Remote,
    /// The project.
    #[arg(long, default_value = "default")]
    project: String,
}

#[derive(Subcommand)]
enum AppletCommand {
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
    },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Args)]
struct Remote {
    /// The processor's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin bearer token.
    #[arg(long, env = "WATTSTREAM_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device by its public key (SEC1 hex).
    Add {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        public_key: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// List registered devices.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a device: its new envelopes are rejected, its history stays.
    Revoke {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        id: String,
    },
}

fn main() {
    let cli = Cli::parse();
    // The demo and the benchmark print their own tables: only warnings by default.
    let quiet = matches!(cli.command, Command::Demo { .. } | Command::Bench { .. });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| if quiet { "warn" } else { "info" }.into()),
        )
        .init();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wattstream: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            admin_token,
        } => {
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(t) = admin_token {
                if t.len() < 16 {
                    bail!("the admin token must be at least 16 characters");
                }
                cfg.admin_token = Some(t);
            }
            runtime()?.block_on(server::serve(cfg, |addr| {
                println!("listening on http://{addr}");
            }))?;
            Ok(0)
        }
        Command::Verify { max_future_s } => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("reading stdin")?;
            let trimmed = body.trim_ascii();
            match admit::admit(trimmed, unix_now(), max_future_s, None) {
                Ok(event) => {
                    println!("{}", event.device_id);
                    Ok(0)
                }
                Err(r) => {
                    println!("{}: {}", r.reason, r.detail);
                    Ok(1)
                }
            }
        }
        Command::Device { command } => runtime()?.block_on(device(command)).map(|_| 0),
        Command::Applet { command } => applet(command),
        Command::Rewards { command } => rewards(command),
        Command::Demo {
            data_dir,
            duration,
            meters,
            applets,
        } => {
            wattstream_processor::demo::run_demo(wattstream_processor::demo::DemoOptions {
                data_dir,
                duration: Duration::from_secs(duration),
                meters: meters.max(1),
                applets,
            })?;
            Ok(0)
        }
        Command::Bench {
            seconds,
            applets,
            json,
            devices,
            meter_seconds,
        } => bench(seconds, &applets, json.as_deref(), devices, meter_seconds),
    }
}

async fn device(command: DeviceCommand) -> Result<()> {
    let client = |r: &Remote| ProcessorClient::new(&r.server, Some(r.token.clone()), Duration::from_secs(30));
    let answer = match &command {
        DeviceCommand::Add {
            remote,
            public_key,
            owner,
        } => {
            client(remote)?
                .register_device(public_key, owner.as_deref())
                .await?
        }
        DeviceCommand::List { remote } => client(remote)?.list_devices().await?,
        DeviceCommand::Revoke { remote, id } => client(remote)?.revoke_device(id).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

fn applet(command: AppletCommand) -> Result<i32> {
    use wattstream_processor::applets::runner::{LocalRun, run_local};
    use wattstream_processor::applets::state::AppletLimits;
    let client = |r: &Remote| ProcessorClient::new(&r.server, Some(r.token.clone()), Duration::from_secs(60));
    let remote =
        |f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value>>>>| -> Result<i32> {
            let answer = runtime()?.block_on(f)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(0)
        };
    match command {
        AppletCommand::Deploy {
            target,
            name,
            wasm,
            event_type,
            handler,
            deadline_ms,
            memory_mb,
        } => {
            let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let mut path = format!(
                "/v1/projects/{}/applets/{name}?event_type={event_type}&handler={handler}",
                target.project
            );
            if let Some(d) = deadline_ms {
                path.push_str(&format!("&deadline_ms={d}"));
            }
            if let Some(m) = memory_mb {
                path.push_str(&format!("&memory_mb={m}"));
            }
            let c = client(&target.remote)?;
            remote(Box::pin(async move { Ok(c.post_bytes(&path, bytes).await?) }))
        }
        AppletCommand::List { target } => {
            let c = client(&target.remote)?;
            remote(Box::pin(async move {
                Ok(c.get_json(&format!("/v1/projects/{}/applets", target.project))
                    .await?)
            }))
        }
        AppletCommand::Remove { target, name } => {
            let c = client(&target.remote)?;
            remote(Box::pin(async move {
                Ok(
                    c.delete(&format!("/v1/projects/{}/applets/{name}", target.project))
                        .await?,
                )
            }))
        }
        AppletCommand::Logs { target, limit } => {
            let c = client(&target.remote)?;
            remote(Box::pin(async move {
                Ok(
                    c.get_json(&format!("/v1/projects/{}/logs?limit={limit}", target.project))
                        .await?,
                )
            }))
        }
        AppletCommand::Env { target, vars } => {
            let body: serde_json::Map<String, serde_json::Value> = vars
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        if v.is_empty() {
                            serde_json::Value::Null
                        } else {
                            v.into()
                        },
                    )
                })
                .collect();
            let c = client(&target.remote)?;
            remote(Box::pin(async move {
                Ok(
                    c.put_json(&format!("/v1/projects/{}/env", target.project), &body.into())
                        .await?,
                )
            }))
        }
        AppletCommand::Run {
            wasm,
            event,
            event_type,
            handler,
            env,
            deadline_ms,
            json,
        } => {
            let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let payload =
                std::fs::read(&event).with_context(|| format!("cannot read {}", event.display()))?;
            let limits = AppletLimits {
                deadline_ms,
                ..AppletLimits::default()
            };
            let (hash, handlers, outcome) = run_local(LocalRun {
                wasm: &bytes,
                payload,
                event_type: event_type.clone(),
                handler: handler.clone(),
                env,
                limits,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print_outcome(&hash, &handlers, &handler, &event_type, &outcome);
            }
            Ok(if outcome.ok() { 0 } else { 1 })
        }
    }
}

fn print_outcome(
    hash: &str,
    handlers: &[String],
    handler: &str,
    event_type: &str,
    o: &wattstream_processor::applets::runtime::RunOutcome,
) {
    let handlers: Vec<&str> = handlers
        .iter()
        .map(String::as_str)
        .filter(|h| *h != "alloc")
        .collect();
    println!("applet   sha256 {hash}");
    println!("handlers {}", handlers.join(", "));
    println!("ran      {handler} on a {event_type} event");
    match (o.code, &o.error) {
        (Some(0), _) => println!("result   0 (accepted; effects committed)"),
        (Some(c), _) => println!("result   {c} (rejected; database changes rolled back, no credits)"),
        (None, Some(e)) => println!("result   failed: {e}"),
        (None, None) => println!("result   failed"),
    }
    println!("time     {} µs", o.duration.as_micros());
    println!(
        "logs     {}",
        if o.effects.logs.is_empty() { "(none)" } else { "" }
    );
    for l in &o.effects.logs {
        println!("  [{}] {}", l.level, l.message);
    }
    if o.effects.dropped_log_bytes > 0 {
        println!(
            "  ({} log bytes over the limit were dropped)",
            o.effects.dropped_log_bytes
        );
    }
    println!(
        "sql      {}",
        if o.effects.sql.is_empty() { "(none)" } else { "" }
    );
    for (stmt, n) in &o.effects.sql {
        println!("  {stmt}  -- {n} row(s)");
    }
    println!(
        "credits  {}",
        if o.effects.credits.is_empty() {
            "(none)"
        } else {
            ""
        }
    );
    for c in &o.effects.credits {
        println!(
            "  {} +{} units ({:.6} tokens)",
            c.address,
            c.amount,
            c.amount as f64 / 1e18
        );
    }
    for m in &o.effects.metrics {
        println!("metrics  {m}");
    }
    if let Some(r) = &o.effects.response {
        println!("response {r}");
    }
}

fn bench(
    seconds: f64,
    applets: &std::path::Path,
    json: Option<&std::path::Path>,
    devices: usize,
    meter_seconds: u64,
) -> Result<i32> {
    use wattstream_processor::bench::{
        ServerProcess, applets as applet_figures, envelopes, send, verify_limit,
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("wattstream bench: {cores} cores, commit {commit}, {seconds} s per micro-benchmark\n");

    // 1. The limit.
    let (verify_one, verify_all) = verify_limit(seconds);
    println!("1. Signature verification limit (ring, P-256)");
    println!("   1 thread {verify_one:>10.0} /s    {cores} threads {verify_all:>10.0} /s\n");

    // 2-3. Ingest end to end against a real `wattstream serve`.
    let dir = tempfile_dir()?;
    let token = "bench-admin-token-0123456789";
    let server = ServerProcess::start(&dir, token)?;
    let rt = runtime()?;
    let keys: Vec<wattstream_sdk::DeviceKey> = (0..devices)
        .map(|_| wattstream_sdk::DeviceKey::generate())
        .collect();
    let admin = ProcessorClient::new(&server.url, Some(token.to_string()), Duration::from_secs(60))?;
    let deployed = rt.block_on(async {
        let chunks: Vec<Vec<String>> = keys
            .chunks(devices.div_ceil(16).max(1))
            .map(|c| c.iter().map(|k| k.public_key().to_hex()).collect())
            .collect();
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                let admin = admin.clone();
                tokio::spawn(async move {
                    for pk in c {
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
            if let Ok(wasm) = std::fs::read(applets.join(format!("{name}.wasm"))) {
                admin
                    .post_bytes(&format!("/v1/projects/default/applets/{name}"), wasm)
                    .await?;
                deployed.push(name);
            }
        }
        Ok::<_, anyhow::Error>(deployed)
    })?;
    let (_, rss_registered) = server.usage();
    let singles = envelopes(&keys, 1, 1);
    let batched = envelopes(&keys, 2, 2);
    let paced = envelopes(&keys, 4, 1);
    let applets_note = if deployed.is_empty() {
        "no applets".to_string()
    } else {
        format!("applets {}", deployed.join(" + "))
    };
    println!(
        "2. Ingest over loopback HTTP: {devices} registered devices, {applets_note}, durable store (SQLite, synchronous=FULL)"
    );
    println!(
        "   {:<10} {:>9} {:>12} {:>9} {:>9} {:>9} {:>10} {:>16}",
        "batch", "events", "events/s", "p50 ms", "p99 ms", "max ms", "proc CPU", "vs verify limit"
    );
    let mut ingest = Vec::new();
    for (batch, bodies, connections) in [(1usize, singles, 32usize), (100, batched, 8)] {
        server.wait_idle(Duration::from_secs(60));
        let n = bodies.len();
        let (cpu0, _) = server.usage();
        let t = std::time::Instant::now();
        let (rate, lat) = rt.block_on(send(&server.url, bodies, batch, connections, None))?;
        let cpu = (server.usage().0 - cpu0) / t.elapsed().as_secs_f64() * 100.0;
        println!(
            "   {:<10} {:>9} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.0}% {:>16.2}",
            batch,
            n,
            rate,
            lat.p50_ms,
            lat.p99_ms,
            lat.max_ms,
            cpu,
            rate / verify_all
        );
        ingest.push(
            serde_json::json!({"batch": batch, "events": n, "events_per_s": rate, "latency": lat,
            "processor_cpu_percent": cpu, "ratio_to_verify_limit": rate / verify_all}),
        );
    }
    let max_rate = ingest[1]["events_per_s"].as_f64().unwrap_or(1000.0);
    // Let the applet worker finish the backlog so the paced run measures ingest.
    server.wait_idle(Duration::from_secs(60));
    let (moderate_rate, moderate) = rt.block_on(send(&server.url, paced, 100, 8, Some(max_rate / 2.0)))?;
    println!(
        "\n3. Latency at half the batch-100 maximum ({:.0} events/s offered, {:.0} achieved), per request of 100",
        max_rate / 2.0,
        moderate_rate
    );
    println!(
        "   p50 {:.2} ms   p99 {:.2} ms (target <= 25 ms: ratio {:.2})   max {:.2} ms",
        moderate.p50_ms,
        moderate.p99_ms,
        moderate.p99_ms / 25.0,
        moderate.max_ms
    );
    let (_, rss_peak) = server.usage();
    println!(
        "\n   processor peak RSS: {:.1} MB after registering {devices} devices, {:.1} MB at the end (target <= 200 MB: ratio {:.2})",
        rss_registered as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        rss_peak as f64 / 1024.0 / 200.0
    );

    // 4. Applet overhead.
    println!("\n4. Applet runtime overhead per event (fresh instance, limits, savepoint, call, effects)");
    println!(
        "   {:<24} {:>12} {:>14} {:>18}",
        "applet", "us/event", "events/s", "vs 10 us target"
    );
    let figures = applet_figures(applets, seconds)?;
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

    // 5. Meter footprint.
    let meter = if meter_seconds > 0 {
        Some(meter_footprint(&server.url, &admin, &rt, &dir, meter_seconds)?)
    } else {
        None
    };
    if let Some((rss, cpu)) = meter {
        println!("\n5. Meter: power-meter run --sim, 10 Hz, 5 s windows, {meter_seconds} s");
        println!(
            "   RSS {:.2} MB (target <= 10 MB: ratio {:.2})   CPU {:.3} % of a core (target <= 1 %: ratio {:.2})",
            rss,
            rss / 10.0,
            cpu,
            cpu / 1.0
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(path) = json {
        let doc = serde_json::json!({
            "cores": cores,
            "commit": commit,
            "verify_limit": {"one_thread_per_s": verify_one, "all_cores_per_s": verify_all},
            "ingest": ingest,
            "applets_deployed": deployed,
            "moderate": {"offered_per_s": max_rate / 2.0, "achieved_per_s": moderate_rate, "latency": moderate},
            "processor_rss_mb": {"registered": rss_registered as f64 / 1024.0, "peak": rss_peak as f64 / 1024.0, "devices": devices},
            "applets": figures,
            "meter": meter.map(|(rss, cpu)| serde_json::json!({"rss_mb": rss, "cpu_percent": cpu, "seconds": meter_seconds})),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        println!("\nfigures written to {}", path.display());
    }
    Ok(0)
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wattstream-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// RSS (MB) and CPU (% of a core) of `power-meter run --sim` over `seconds`.
fn meter_footprint(
    url: &str,
    admin: &ProcessorClient,
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    seconds: u64,
) -> Result<(f64, f64)> {
    let exe = std::env::current_exe()?.with_file_name("power-meter");
    anyhow::ensure!(exe.exists(), "{} is not built", exe.display());
    let key = dir.join("meter/device.pem");
    let out = std::process::Command::new(&exe)
        .args(["keygen", "--key"])
        .arg(&key)
        .output()?;
    let pk = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public_key: ").map(str::to_string))
        .unwrap_or_default();
    rt.block_on(admin.register_device(&pk, Some("bench")))?;
    let mut child = std::process::Command::new(&exe)
        .args([
            "run",
            "--sim",
            "--sample-ms",
            "100",
            "--window",
            "5",
            "--processor",
            url,
            "--key",
        ])
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.join("meter"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let ticks = || -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest: Vec<String> = s
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
            })
            .unwrap_or(0.0)
    };
    let rss = || -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("VmRSS:")
                        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
                })
            })
            .unwrap_or(0.0)
    };
    let (t0, start) = (ticks(), std::time::Instant::now());
    let mut max_rss = 0f64;
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        max_rss = max_rss.max(rss());
    }
    let cpu = (ticks() - t0) / 100.0 / start.elapsed().as_secs_f64() * 100.0;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    Ok((max_rss / 1024.0, cpu))
}

fn rewards(command: RewardsCommand) -> Result<i32> {
    use wattstream_processor::rewards::{key_path, load, replay};
    let config = |d: &DataDirArgs| -> Result<Config> {
        let mut c = match &d.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        c.data_dir = d.data_dir.clone();
        Ok(c)
    };
    let open = |d: &DataDirArgs| -> Result<rusqlite::Connection> {
        let path = wattstream_processor::store::db_path(&d.data_dir);
        if !path.exists() {
            bail!("no processor store at {}", path.display());
        }
        Ok(rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?)
    };
    match command {
        RewardsCommand::Verify { dir } => {
            let cfg = config(&dir)?;
            let (entries, _, seals) = load(&open(&dir)?)?;
            let key = wattstream_sdk::load_key(&key_path(&dir.data_dir))?;
            match wattstream_rewards::verify_ledger(
                &entries,
                &seals,
                cfg.rewards.cap_units(),
                Some(key.public_key()),
            ) {
                Ok(()) => {
                    println!("ok: {} entries and {} seals verify", entries.len(), seals.len());
                    Ok(0)
                }
                Err(t) => {
                    println!("TAMPERED: {t}");
                    Ok(1)
                }
            }
        }
        RewardsCommand::Replay { dir } => {
            let report = replay(&dir.data_dir, &config(&dir)?)?;
            println!(
                "replayed {} events into {} entries",
                report.events, report.entries
            );
            for (epoch, ok) in &report.seals {
                println!(
                    "epoch {epoch}: {}",
                    if *ok { "seal matches" } else { "SEAL DIFFERS" }
                );
            }
            for p in &report.problems {
                println!("problem: {p}");
            }
            Ok(
                if report.problems.is_empty() && report.seals.iter().all(|s| s.1) {
                    0
                } else {
                    1
                },
            )
        }
        RewardsCommand::Show { dir, device } => {
            let id = wattstream_sdk::DeviceId::from_hex(&device).context("not a device id")?;
            let (entries, stamps, _) = load(&open(&dir)?)?;
            let mut total = 0u128;
            println!(
                "{:>6} {:>8} {:>26} {:>10} {:<18} {:>12}",
                "seq", "epoch", "amount (units)", "event", "applet", "timestamp"
            );
            for (e, t) in entries.iter().zip(&stamps).filter(|(e, _)| e.address == id.0) {
                total += e.amount;
                println!(
                    "{:>6} {:>8} {:>26} {:>10} {:<18} {:>12}",
                    e.seq, e.epoch, e.amount, e.event_id, e.applet, t
                );
            }
            println!("balance: {total} units ({:.6} tokens)", total as f64 / 1e18);
            Ok(0)
        }
    }
}
