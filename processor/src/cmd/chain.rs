//! `wattstream chain deploy` and `wattstream rewards settle|claim`: the
//! settlement contracts deployed to an EVM chain, sealed epochs published to
//! them, and claims paid to device owners (`wattstream_processor::chain`).

use std::path::PathBuf;

use alloy::primitives::Address;
use anyhow::{Context, Result};
use clap::Args;
use wattstream_processor::chain::{claim, load_key, provider, settle};

use super::rewards::DataDirArgs;

/// Where the chain is and who signs.
#[derive(Args, Clone)]
pub struct ChainArgs {
    /// The chain's JSON-RPC endpoint.
    #[arg(long)]
    pub rpc: String,
    /// A file holding the secp256k1 private key (`0x` + 64 hex, mode 0600).
    #[arg(long)]
    pub chain_key: PathBuf,
}

impl ChainArgs {
    fn provider(&self) -> Result<alloy::providers::DynProvider> {
        provider(&self.rpc, load_key(&self.chain_key)?)
    }
}

#[derive(Args)]
pub struct DeployArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The epoch length the distributor records (the processor's `rewards.epoch_s`).
    #[arg(long, default_value_t = 3600)]
    epoch_s: u64,
    #[arg(long, default_value = "WattStream")]
    name: String,
    #[arg(long, default_value = "WATT")]
    symbol: String,
    /// Also write the address book (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct SettleArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    #[command(flatten)]
    chain: ChainArgs,
    /// The distributor's address (from `wattstream chain deploy`).
    #[arg(long)]
    distributor: Address,
}

#[derive(Args)]
pub struct ClaimArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The distributor's address.
    #[arg(long)]
    distributor: Address,
    /// The processor serving the proof.
    #[command(flatten)]
    server: super::client::Public,
    #[arg(long)]
    device: String,
    #[arg(long)]
    epoch: u64,
    /// The processor's public key (SEC1 hex) from a source you trust (a
    /// meter's `processor_public_key`); default: the one the server states.
    #[arg(long)]
    public_key: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Deploy the token and the epoch distributor; print their address book.
    Deploy(DeployArgs),
}

pub fn run(command: Command) -> Result<i32> {
    match command {
        Command::Deploy(args) => deploy(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Deploys the token and the distributor, lets the distributor mint, and
/// prints the address book.
pub fn deploy(args: DeployArgs) -> Result<i32> {
    runtime()?.block_on(async {
        let key = load_key(&args.chain.chain_key)?;
        let me = key.address();
        let p = provider(&args.chain.rpc, key)?;
        let book =
            wattstream_processor::chain::deploy(&p, me, &args.name, &args.symbol, args.epoch_s).await?;
        let text = serde_json::to_string_pretty(&book)?;
        if let Some(out) = &args.out {
            std::fs::write(out, format!("{text}\n")).with_context(|| format!("writing {}", out.display()))?;
        }
        println!("{text}");
        Ok(0)
    })
}

/// Publishes owners and sealed roots the distributor does not hold yet.
pub fn settle(args: SettleArgs) -> Result<i32> {
    let plan = args.dir.read(|c, _| settle::plan(c))?;
    let sent = runtime()?.block_on(async {
        let p = args.chain.provider()?;
        settle::settle(&p, args.distributor, &plan).await
    })?;
    for (device, from, owner, tx) in &sent.owners {
        println!("owner {device} from epoch {from}: {owner} (tx {tx})");
    }
    for (epoch, tx) in &sent.roots {
        println!("settled epoch {epoch} (tx {tx})");
    }
    println!(
        "{} roots and {} owner changes sent; {} sealed epochs and {} devices with an EVM owner in the store",
        sent.roots.len(),
        sent.owners.len(),
        plan.roots.len(),
        plan.owners.len()
    );
    Ok(0)
}

/// Claims one epoch for one device.
pub fn claim(args: ClaimArgs) -> Result<i32> {
    let path = format!("/v1/epochs/{}/proofs/{}", args.epoch, args.device);
    let body = args.server.fetch(async |c| c.get_json(&path).await)?;
    runtime()?.block_on(async {
        let seal: wattstream_sdk::proof::SealView = serde_json::from_value(body["seal"].clone())?;
        let proof: wattstream_sdk::proof::ProofView = serde_json::from_value(body["proof"].clone())?;
        let pinned = match &args.public_key {
            Some(k) => k.clone(),
            None => {
                eprintln!("note: trusting the processor key the server states; pin it with --public-key");
                seal.public_key.clone()
            }
        };
        let pinned = wattstream_sdk::PublicKey::from_hex(pinned.trim()).context("--public-key")?;
        let p = args.chain.provider()?;
        match claim::claim(&p, args.distributor, &seal, &proof, &pinned).await? {
            claim::Claimed::Sent(tx) => println!(
                "claimed epoch {} for {}: {} units (tx {tx})",
                seal.epoch, proof.address, proof.epoch_total
            ),
            claim::Claimed::Already => {
                println!("epoch {} for {} was claimed before", seal.epoch, proof.address)
            }
        }
        Ok(0)
    })
}
