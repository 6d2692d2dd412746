//! `wattstream device claim|transfer-request|transfer|bindings|verify-bindings`
//! and `wattstream maker keygen|sign`: onboarding from the command line. The
//! owner's signatures come from their wallet (any EIP-191 `personal_sign`);
//! these commands never hold an owner's key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use wattstream_processor::onboarding::record::{Record, owner_in, verify_chain};
use wattstream_sdk::binding::{ClaimRequest, MakerCertificate, TransferRequest};
use wattstream_sdk::{DeviceKey, PublicKey, load_key, save_key};

use super::client::Public;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a {what}", path.display()))
}

/// Submits a claim: the device's request (`power-meter bind`) and the owner's
/// wallet signature over its `owner_message`.
pub fn claim(remote: Public, request: &Path, owner_signature: String) -> Result<i32> {
    let request: ClaimRequest = read_json(request, "binding request")?;
    let body = json!({"request": request, "owner_signature": owner_signature});
    remote.call(|c| async move { c.post_json("/v1/devices/claim", &body).await })
}

/// Prints a transfer (or, without `to`, an unbinding) request for the owners
/// to sign.
pub fn transfer_request(id: &str, from: &str, to: Option<&str>, chain_id: u64) -> Result<i32> {
    let now = wattstream_sdk::time::unix_now();
    let request = TransferRequest::new(id, from, to, chain_id, now)?;
    request.check_form()?;
    println!("{}", serde_json::to_string_pretty(&request)?);
    Ok(0)
}

/// Submits a transfer request with the signatures given.
pub fn transfer(
    remote: Public,
    request: &Path,
    from_signature: Option<String>,
    owner_signature: Option<String>,
) -> Result<i32> {
    let request: TransferRequest = read_json(request, "transfer request")?;
    let path = format!("/v1/devices/{}/transfer", request.device_id);
    let body = json!({
        "request": request,
        "from_signature": from_signature,
        "owner_signature": owner_signature,
    });
    remote.call(|c| async move { c.post_json(&path, &body).await })
}

/// Re-verifies a device's binding records, from a file or a processor, and
/// prints who owns it from which epoch. Exits 1 when they do not verify.
pub fn verify_bindings(
    remote: Public,
    id: Option<String>,
    file: Option<PathBuf>,
    epoch: Option<u64>,
) -> Result<i32> {
    let answer: Value = match (file, id) {
        (Some(f), _) => read_json(&f, "bindings answer")?,
        (None, Some(id)) => {
            remote.fetch(|c| async move { c.get_json(&format!("/v1/devices/{id}/bindings")).await })?
        }
        (None, None) => bail!("give --file FILE (a saved bindings answer) or --id DEVICE with --server"),
    };
    let device = answer["device_id"]
        .as_str()
        .context("the answer has no `device_id`")?
        .to_string();
    let records: Vec<Record> = serde_json::from_value(answer["records"].clone())
        .context("the answer's `records` are not binding records")?;
    match verify_chain(&device, &records) {
        Ok(spans) => {
            let mut out = json!({
                "device_id": device,
                "verified": true,
                "records": records.len(),
                "owners": spans,
                "admin_authorised": records.iter().filter(|r| r.authorized_by == wattstream_processor::onboarding::Authority::Admin).map(|r| r.seq).collect::<Vec<_>>(),
            });
            if let Some(e) = epoch {
                out["owner_in_epoch"] = json!({"epoch": e, "owner": owner_in(&spans, e)});
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"device_id": device, "verified": false, "problem": e.to_string()})
                )?
            );
            Ok(1)
        }
    }
}

/// `wattstream maker …`: a small manufacturer's certificates.
#[derive(Subcommand)]
pub enum MakerCommand {
    /// Create a maker key (P-256, mode 0600) and print its public key: the
    /// value processors list in `onboarding.makers`.
    Keygen {
        #[arg(long)]
        key: PathBuf,
        /// Replace an existing key (the certificates it issued stop counting
        /// wherever its public key is removed from `onboarding.makers`).
        #[arg(long)]
        force: bool,
    },
    /// Certify a device's public key; prints the certificate (JSON) for
    /// `power-meter keygen --maker-cert`.
    Sign {
        #[arg(long)]
        key: PathBuf,
        /// The device's public key (SEC1 hex), as `power-meter id` prints it.
        #[arg(long)]
        public_key: String,
        /// Write the certificate here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn maker(command: MakerCommand) -> Result<i32> {
    match command {
        MakerCommand::Keygen { key, force } => {
            let maker = DeviceKey::generate();
            save_key(&key, &maker, force)
                .context("could not write the maker key (use --force to replace one)")?;
            println!("maker_public_key: {}", maker.public_key().to_hex());
        }
        MakerCommand::Sign { key, public_key, out } => {
            let maker = load_key(&key)?;
            let device = PublicKey::from_hex(public_key.trim()).context("--public-key")?;
            let cert = serde_json::to_string_pretty(&MakerCertificate::issue(&maker, &device))?;
            match out {
                Some(path) => std::fs::write(&path, cert + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => println!("{cert}"),
            }
        }
    }
    Ok(0)
}
