//! `power-meter`: the WattStream meter binary. This file is the command-line
//! edge; the daemon is `daemon.rs`, provisioning `provision.rs`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use wattstream_device::config::MeterConfig;
use wattstream_device::{daemon, provision};

#[derive(Parser)]
#[command(name = "power-meter", version, about = "WattStream smart energy meter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a new device key (PKCS#8 PEM, mode 0600) and print its device id and public key.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        key: PathBuf,
        /// Replace an existing key. The old identity is lost.
        #[arg(long)]
        force: bool,
        /// Install this maker certificate (`wattstream maker sign`) beside the
        /// key, keeping an existing key: it must certify that key.
        #[arg(long)]
        maker_cert: Option<PathBuf>,
    },
    /// Print a binding request (JSON) for the owner's wallet to sign: give it
    /// to `wattstream device claim` with the wallet's EIP-191 signature over
    /// its `owner_message`.
    Bind {
        /// The owner's EVM address.
        #[arg(long)]
        owner: String,
        /// Device key (default: the configuration's `key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// TOML configuration (for `key`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The chain the owner's address is on (the processor's `onboarding.chain_id`).
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
    },
    /// Print the device id and public key of an existing key.
    Id {
        #[arg(long)]
        key: PathBuf,
    },
    /// Read a `data` JSON object on stdin and print the signed envelope on stdout.
    Sign {
        #[arg(long)]
        key: PathBuf,
    },
    /// Run the meter daemon.
    Run(RunArgs),
    /// Put the windows of the dead-letter file back in the outbox (after a
    /// clock or registration fault); the running daemon sends them.
    ResendDeadLetters {
        /// TOML configuration (for `data_dir`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// TOML configuration (every key optional; see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Emulate the INA219 instead of opening the I2C bus.
    #[arg(long)]
    sim: bool,
    /// Processor URL, http(s):// or an MQTT broker mqtt(s):// (overrides `processor`).
    #[arg(long)]
    processor: Option<String>,
    /// Trust only this CA (PEM) for an https:// processor or mqtts:// broker (overrides `tls_ca`).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Device key (overrides `key`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Window length in seconds (overrides `window_s`).
    #[arg(long)]
    window: Option<u64>,
    /// Sampling period in milliseconds (overrides `sample_ms`).
    #[arg(long)]
    sample_ms: Option<u64>,
}

impl RunArgs {
    fn config(self) -> Result<(MeterConfig, bool)> {
        let mut cfg = match &self.config {
            Some(path) => MeterConfig::load(path)?,
            None => MeterConfig::default(),
        };
        if let Some(p) = self.processor {
            cfg.processor = p;
        }
        if let Some(k) = self.key {
            cfg.key = k;
        }
        if let Some(ca) = self.ca_cert {
            cfg.tls_ca = Some(ca);
        }
        if let Some(d) = self.data_dir {
            cfg.data_dir = d;
        }
        if let Some(w) = self.window {
            cfg.window_s = w;
        }
        if let Some(s) = self.sample_ms {
            cfg.sample_ms = s;
        }
        cfg.check()
            .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
        Ok((cfg, self.sim))
    }
}

fn main() {
    wattstream_sdk::logging::init("info");
    if let Err(e) = run(Cli::parse()) {
        eprintln!("power-meter: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Keygen {
            key,
            force,
            maker_cert: None,
        } => provision::keygen(&key, force, &mut out),
        Command::Keygen {
            key,
            force,
            maker_cert: Some(cert),
        } => provision::install_maker_cert(&key, &cert, force, &mut out),
        Command::Bind {
            owner,
            key,
            config,
            chain_id,
        } => {
            let key = match key {
                Some(k) => k,
                None => match &config {
                    Some(p) => MeterConfig::load(p)?.key,
                    None => MeterConfig::default().key,
                },
            };
            provision::bind(&key, &owner, chain_id, &mut out)
        }
        Command::Id { key } => provision::id(&key, &mut out),
        Command::Sign { key } => provision::sign(&key, &mut std::io::stdin().lock(), &mut out),
        Command::ResendDeadLetters { config, data_dir } => {
            let cfg = match &config {
                Some(p) => MeterConfig::load(p)?,
                None => MeterConfig::default(),
            };
            let dir = data_dir.unwrap_or(cfg.data_dir);
            let n = wattstream_device::outbox::Outbox::open(&dir, cfg.uplink.outbox_max)?
                .with_dead_letter_limit(cfg.uplink.dead_letter_max_bytes)
                .resend_dead_letters()?;
            use std::io::Write;
            writeln!(out, "{n} dead letters back in the outbox of {}", dir.display())?;
            Ok(())
        }
        Command::Run(args) => {
            let (cfg, sim) = args.config()?;
            daemon::run(cfg, sim)
        }
    }
}
