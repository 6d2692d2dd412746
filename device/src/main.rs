//! `power-meter`: the WattStream meter binary. This file is the command-line edge;
//! provisioning lives in `provision.rs`.

mod provision;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("power-meter: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Keygen { key, force } => provision::keygen(&key, force, &mut out),
        Command::Id { key } => provision::id(&key, &mut out),
        Command::Sign { key } => provision::sign(&key, &mut std::io::stdin().lock(), &mut out),
    }
}
