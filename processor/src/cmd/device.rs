//! `wattstream device add|list|revoke`: the device registry of a running
//! processor, through its admin API.

use anyhow::Result;
use clap::Subcommand;

use super::client::Remote;

#[derive(Subcommand)]
pub enum Command {
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
    /// Print a device's read token: with it, its owner may read the device's
    /// readings (`GET /v1/devices/{id}` and `/events`) without the admin token.
    Token {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        id: String,
    },
    /// Revoke a device: its new envelopes are rejected, its history stays.
    Revoke {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        id: String,
    },
}

pub fn run(command: Command) -> Result<i32> {
    match command {
        Command::Add {
            remote,
            public_key,
            owner,
        } => remote.call(|c| async move { c.register_device(&public_key, owner.as_deref()).await }),
        Command::List { remote } => remote.call(|c| async move { c.list_devices().await }),
        Command::Revoke { remote, id } => remote.call(|c| async move { c.revoke_device(&id).await }),
        Command::Token { remote, id } => remote.call(|c| async move { c.read_token(&id).await }),
    }
}
