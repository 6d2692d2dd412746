//! `wattstream rewards verify|replay|show`: the ledger in a data directory,
//! checked, replayed from the stored stream, or listed for one device.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use wattstream_processor::config::Config;
use wattstream_processor::rewards::{device_entries, replay, verify_stored};

#[derive(Args)]
pub struct DataDirArgs {
    /// The processor's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The processor's configuration (epoch length, cap, default project).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl DataDirArgs {
    fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        c.data_dir = self.data_dir.clone();
        Ok(c)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Recompute the hash chain and every seal; exit 1 naming the first entry or epoch that does not hold.
    Verify {
        #[command(flatten)]
        dir: DataDirArgs,
        /// The processor's public key (SEC1 hex) from a source you trust (a
        /// meter's `processor_public_key`); default: the key file beside the data.
        #[arg(long)]
        public_key: Option<String>,
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

pub fn run(command: Command) -> Result<i32> {
    match command {
        Command::Verify { dir, public_key } => {
            let pinned = public_key
                .map(|h| wattstream_sdk::PublicKey::from_hex(h.trim()))
                .transpose()
                .context("--public-key is not a P-256 public key")?;
            verify(&dir, pinned.as_ref())
        }
        Command::Replay { dir } => {
            let report = replay(&dir.data_dir, &dir.config()?)?;
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
            let clean = report.problems.is_empty() && report.seals.iter().all(|s| s.1);
            Ok(if clean { 0 } else { 1 })
        }
        Command::Show { dir, device } => {
            let id = wattstream_sdk::DeviceId::from_hex(&device).context("not a device id")?;
            let path = wattstream_processor::store::db_path(&dir.data_dir);
            if !path.exists() {
                bail!("no processor store at {}", path.display());
            }
            let conn =
                rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            println!(
                "{:>6} {:>8} {:>26} {:>10} {:<18} {:>12}",
                "seq", "epoch", "amount (units)", "event", "applet", "timestamp"
            );
            let mut total = 0u128;
            for (e, t) in device_entries(&conn, &id.0)? {
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

fn verify(dir: &DataDirArgs, pinned: Option<&wattstream_sdk::PublicKey>) -> Result<i32> {
    match verify_stored(&dir.data_dir, &dir.config()?.rewards, pinned)? {
        Ok(v) => {
            println!("ok: {} entries and {} seals verify", v.entries, v.seals);
            Ok(0)
        }
        Err(t) => {
            println!("TAMPERED: {t}");
            Ok(1)
        }
    }
}
