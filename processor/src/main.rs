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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let code = match run(Cli::parse()) {
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
