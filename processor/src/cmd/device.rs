//! `wattstream device …`: the device registry of a running processor, through
//! its admin API, and onboarding (claims and transfers, in `onboarding.rs`).

use anyhow::Result;
use clap::Subcommand;

use super::client::{Public, Remote};
use super::onboarding;

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
    /// Bind a device to its owner: the device's request (`power-meter bind`)
    /// and the owner's wallet signature (EIP-191) over its `owner_message`.
    Claim {
        #[command(flatten)]
        remote: Public,
        #[arg(long)]
        request: std::path::PathBuf,
        #[arg(long)]
        owner_signature: String,
    },
    /// Print a transfer request for the owners to sign (`--unbind` instead of
    /// `--to` unbinds the device).
    TransferRequest {
        #[arg(long)]
        id: String,
        /// The current owner.
        #[arg(long)]
        from: String,
        #[arg(long, required_unless_present = "unbind")]
        to: Option<String>,
        #[arg(long, conflicts_with = "to")]
        unbind: bool,
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
    },
    /// Submit a transfer request: the current owner's signature (or the admin
    /// token) and the new owner's.
    Transfer {
        #[command(flatten)]
        remote: Public,
        #[arg(long)]
        request: std::path::PathBuf,
        #[arg(long)]
        from_signature: Option<String>,
        #[arg(long)]
        owner_signature: Option<String>,
    },
    /// Print a device's binding records (public).
    Bindings {
        #[command(flatten)]
        remote: Public,
        #[arg(long)]
        id: String,
    },
    /// Re-verify a device's binding records offline: every signature and the
    /// hash chain. Exits 1 when they do not verify.
    VerifyBindings {
        #[command(flatten)]
        remote: Public,
        /// Fetch them from `--server` for this device…
        #[arg(long)]
        id: Option<String>,
        /// …or read a saved `GET /v1/devices/{id}/bindings` answer.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Also print who owned the device in this epoch.
        #[arg(long)]
        epoch: Option<u64>,
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
        Command::Claim {
            remote,
            request,
            owner_signature,
        } => onboarding::claim(remote, &request, owner_signature),
        Command::TransferRequest {
            id,
            from,
            to,
            unbind: _,
            chain_id,
        } => onboarding::transfer_request(&id, &from, to.as_deref(), chain_id),
        Command::Transfer {
            remote,
            request,
            from_signature,
            owner_signature,
        } => onboarding::transfer(remote, &request, from_signature, owner_signature),
        Command::Bindings { remote, id } => {
            remote.call(|c| async move { c.get_json(&format!("/v1/devices/{id}/bindings")).await })
        }
        Command::VerifyBindings {
            remote,
            id,
            file,
            epoch,
        } => onboarding::verify_bindings(remote, id, file, epoch),
    }
}
