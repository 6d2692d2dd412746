//! `wattstream demo`: the whole system on one machine. A processor on its
//! embedded store (in this process, on the real HTTP path), the example applets
//! deployed, N simulated meters (the real `power-meter` daemon on an emulated
//! INA219, as child processes) with frugal, average and heavy loads, the first
//! meter's screen rendered to a PNG every few seconds, a live table, and a
//! summary at the end with the rewards ledger verified. The web dashboard is
//! served at the printed URL while it runs, and with `--serve` after the
//! meters stop, until Ctrl-C.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wattstream_sdk::client::ProcessorClient;

use wattstream_processor::config::Config;

#[derive(clap::Args)]
pub struct Args {
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
    /// Also settle the rewards on a local EVM chain (ganache) and claim them
    /// for each meter's owner.
    #[arg(long)]
    chain: bool,
    /// ganache's executable, for `--chain`.
    #[arg(long, default_value = "rewards/contracts/node_modules/.bin/ganache")]
    ganache: PathBuf,
    /// Where the processor (and its dashboard) listens; when the port is
    /// taken, any free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Keep the processor and its dashboard up after the meters stop, until
    /// Ctrl-C or SIGTERM.
    #[arg(long)]
    serve: bool,
}

/// What the demo is told.
struct DemoOptions {
    data_dir: PathBuf,
    duration: Duration,
    meters: usize,
    applets: PathBuf,
    /// ganache's executable when the demo settles on a chain.
    chain: Option<PathBuf>,
    listen: std::net::SocketAddr,
    serve: bool,
}

pub fn run(args: Args) -> Result<i32> {
    run_demo(DemoOptions {
        data_dir: args.data_dir,
        duration: Duration::from_secs(args.duration),
        meters: args.meters.max(1),
        applets: args.applets,
        chain: args.chain.then_some(args.ganache),
        listen: args.listen,
        serve: args.serve,
    })?;
    Ok(0)
}

struct Profile {
    name: &'static str,
    watts: f64,
}

const PROFILES: [Profile; 3] = [
    Profile {
        name: "frugal",
        watts: 2.2,
    },
    Profile {
        name: "average",
        watts: 4.1,
    },
    Profile {
        name: "heavy",
        watts: 11.5,
    },
];

pub(super) struct Meter {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) device_id: String,
    /// `demo-NAME`, or an EVM address with `--chain`.
    pub(super) owner: String,
    pub(super) child: Option<Child>,
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to {}: build the workspace (`cargo build --release`)",
            name,
            exe.display()
        );
    }
    Ok(path)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|s| s.trim().to_string())
}

fn token() -> Result<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(hex::encode(b))
}

/// Runs the demo to its summary.
fn run_demo(opts: DemoOptions) -> Result<()> {
    let power_meter = sibling("power-meter")?;
    let display = sibling("power-meter-display")?;
    let dir = &opts.data_dir;
    std::fs::create_dir_all(dir)?;
    // A fresh processor and fresh outboxes each run; meter keys are kept.
    let _ = std::fs::remove_dir_all(dir.join("processor"));
    let admin = token()?;
    // The dashboard's login reads it from here too (0600, like every secret).
    wattstream_sdk::fsutil::write_atomic(
        &dir.join("admin-token"),
        admin.as_bytes(),
        wattstream_sdk::fsutil::WriteOptions::SECRET,
    )?;
    let listen = match std::net::TcpListener::bind(opts.listen) {
        Ok(_) => opts.listen,
        Err(e) => {
            println!("{} is not free ({e}): listening on any free port", opts.listen);
            std::net::SocketAddr::new(opts.listen.ip(), 0)
        }
    };
    let mut config = Config {
        data_dir: dir.join("processor"),
        listen,
        admin_token: Some(admin.clone()),
        ..Config::default()
    };
    config.rewards.epoch_s = 20;
    config.rewards.seal_after_s = 1;

    let runtime = super::runtime()?;
    // With a chain, the processor reads each seal's settlement from its
    // distributor (the dashboard's epochs page).
    let chain = match &opts.chain {
        Some(ganache) => {
            let c = super::demo_chain::DemoChain::start(&runtime, ganache, dir, config.rewards.epoch_s)?;
            config.chains.insert(
                "1337".into(),
                serde_json::from_value(serde_json::json!({"rpc": c.rpc, "key_file": dir.join("chain.key")}))?,
            );
            config.dashboard.settlement_chain = Some(1337);
            config.dashboard.distributor = Some(c.book.distributor.to_string());
            Some(c)
        }
        None => None,
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_config = config.clone();
    let server = runtime.spawn(wattstream_processor::server::serve_until(
        server_config,
        move |addr| {
            let _ = addr_tx.send(addr);
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .context("the processor did not start")?;
    let url = format!("http://{addr}");
    println!(
        "WattStream demo: processor on {url}, store in {}",
        config.data_dir.display()
    );
    println!(
        "dashboard: {url}/ (log in with the admin token {admin}, also in {})",
        dir.join("admin-token").display()
    );
    let client = ProcessorClient::new(&url, Some(admin), Duration::from_secs(30))?;
    if let Some(c) = &chain {
        println!("chain: ganache at {}, distributor {}", c.rpc, c.book.distributor);
    }

    // Applets: identity first (it gates), then the rewards and the AssemblyScript one.
    let order = ["identity", "rewards-tiered", "rewards-baseline", "as-readings"];
    let mut deployed = Vec::new();
    for name in order {
        let path = opts.applets.join(format!("{name}.wasm"));
        if let Ok(wasm) = std::fs::read(&path) {
            // identity gates the rewards: it must run before any applet that mints.
            let gate = name == "identity";
            // The Rust ones keep nothing between events (their SDK resets its
            // heap on each call): one instance serves a batch.
            let stateless = name != "as-readings";
            runtime.block_on(client.post_bytes(
                &format!("/v1/projects/default/applets/{name}?gate={gate}&stateless={stateless}"),
                wasm,
            ))?;
            deployed.push(name);
        }
    }
    if !deployed.contains(&"rewards-tiered") {
        bail!(
            "no applets in {}: run applets/build.sh first",
            opts.applets.display()
        );
    }
    println!("applets deployed: {}", deployed.join(", "));
    let head = runtime.block_on(client.get_json("/v1/ledger/head"))?;
    let processor_key = head["processor_public_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Meters.
    let mut meters = Vec::new();
    for i in 0..opts.meters {
        let p = &PROFILES[i % PROFILES.len()];
        let name = if i < PROFILES.len() {
            p.name.to_string()
        } else {
            format!("{}-{i}", p.name)
        };
        let mdir = dir.join(format!("meter-{name}"));
        let _ = std::fs::remove_dir_all(mdir.join("data"));
        std::fs::create_dir_all(&mdir)?;
        let key = mdir.join("device.pem");
        if !key.exists() {
            output(Command::new(&power_meter).args(["keygen", "--key"]).arg(&key))?;
        }
        let id = output(Command::new(&power_meter).args(["id", "--key"]).arg(&key))?;
        let (device_id, public_key) = (
            field(&id, "device_id:").unwrap_or_default(),
            field(&id, "public_key:").unwrap_or_default(),
        );
        let owner = match chain {
            Some(_) => super::demo_chain::owner()?,
            None => format!("demo-{name}"),
        };
        runtime.block_on(client.register_device(&public_key, Some(&owner)))?;
        let cfg = mdir.join("meter.toml");
        std::fs::write(
            &cfg,
            format!(
                "processor = \"{url}\"\nkey = \"{}\"\ndata_dir = \"{}\"\nprocessor_public_key = \"{processor_key}\"\n\
                 [sim]\nprofile = \"constant\"\nwatts = {}\nnoise = 0.02\nseed = {}\n[uplink]\nrewards_poll_s = 3\n",
                key.display(),
                mdir.join("data").display(),
                p.watts,
                i + 1
            ),
        )?;
        let log = std::fs::File::create(mdir.join("meter.log"))?;
        let child = Command::new(&power_meter)
            .args(["run", "--sim", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        meters.push(Meter {
            name,
            dir: mdir,
            device_id,
            owner,
            child: Some(child),
        });
    }
    println!(
        "{} simulated meters running (5 s windows, rewards epochs of {} s); Ctrl-C ends early\n",
        meters.len(),
        config.rewards.epoch_s
    );

    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        runtime.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let screen = dir.join("screen.png");
    let start = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut printed = 0;
    let mut last_render = Instant::now() - Duration::from_secs(10);
    // The first meter's screen, as `power-meter-display render` draws it.
    let state_file = meters[0].dir.join("data/state.json");
    let render_screen = || {
        let _ = output(
            Command::new(&display)
                .args(["render", "--scale", "2", "--state"])
                .arg(&state_file)
                .arg("--out")
                .arg(&screen),
        );
    };
    while start.elapsed() < opts.duration && !interrupted.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1000));
        if last_render.elapsed() >= Duration::from_secs(3) {
            render_screen();
            last_render = Instant::now();
        }
        let table = super::demo_report::table(&runtime, &client, &meters, start.elapsed(), opts.duration);
        if tty {
            if printed > 0 {
                print!("\x1b[{printed}A");
            }
            print!("{table}");
            printed = table.lines().count();
        } else if start.elapsed().as_secs().is_multiple_of(10) {
            print!("{table}");
        }
        std::io::stdout().flush()?;
    }

    // Stop the meters (they store their partial window and send what they can).
    for m in &mut meters {
        if let Some(child) = &m.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }
    for m in &mut meters {
        if let Some(mut child) = m.child.take() {
            let _ = child.wait();
        }
    }
    // Let the applets and the ledger catch up, then render a last screen.
    std::thread::sleep(Duration::from_secs(3));
    render_screen();
    let mut summary = super::demo_report::summary(&runtime, &client, &meters);
    if let Some(chain) = &chain {
        let owners: Vec<(String, String, String)> = meters
            .iter()
            .map(|m| (m.name.clone(), m.device_id.clone(), m.owner.clone()))
            .collect();
        let store = wattstream_processor::store::db_path(&config.data_dir);
        summary.push_str(&chain.settle_and_claim(&runtime, &client, &store, &owners, &processor_key)?);
        summary.push_str(&super::demo_report::settlements(&runtime, &client)?);
    }
    let interrupted = interrupted.load(std::sync::atomic::Ordering::Relaxed);
    if opts.serve && !interrupted {
        println!("\n{summary}");
        println!("the meters have stopped; the dashboard stays up at {url}/ until Ctrl-C");
        std::io::stdout().flush()?;
        runtime.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            Ok::<_, std::io::Error>(())
        })?;
    }
    let _ = stop_tx.send(());
    runtime.block_on(server)??;

    // The ledger, checked from the store as `wattstream rewards verify` does.
    let verdict = wattstream_processor::rewards::verify_stored(&config.data_dir, &config.rewards, None)?;
    if !opts.serve || interrupted {
        println!("\n{summary}");
    }
    match verdict {
        Ok(v) => println!(
            "rewards verify: ok ({} entries, {} sealed epochs)",
            v.entries, v.seals
        ),
        Err(t) => println!("rewards verify: FAILED: {t}"),
    }
    println!("screen of the {} meter: {}", meters[0].name, screen.display());
    println!("everything is kept in {}", dir.display());
    Ok(())
}
