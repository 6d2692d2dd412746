//! `wattstream rewards verify|replay|show` (and `settle|claim`, in `chain.rs`): the ledger in a data directory
//! (SQLite) or on PostgreSQL (`--store`, or `store.url` in the config),
//! checked, replayed from the stored stream, or listed for one device.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use wattstream_processor::config::Config;
use wattstream_processor::rewards::{device_entries, replay, replay_postgres, verify_on};
use wattstream_processor::store::sql::{PgSql, Sql};

#[derive(Args)]
pub struct DataDirArgs {
    /// The processor's data directory: its SQLite store, and its key file.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The store on PostgreSQL instead (`postgres://USER@HOST:PORT/DB`);
    /// default: `store.url` of the config, else SQLite in `--data-dir`.
    #[arg(long)]
    store: Option<String>,
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
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(url) = &self.store {
            wattstream_processor::store::pg::check_url(url)?;
            c.store.url = Some(url.clone());
        }
        if c.store.url.is_none() && self.data_dir.is_none() {
            bail!("give --data-dir (SQLite) or --store postgres://… (or store.url in --config)");
        }
        Ok(c)
    }

    /// [`DataDirArgs::with_store`] for other commands.
    pub fn read<T>(&self, f: impl FnOnce(&dyn Sql, &Config) -> Result<T>) -> Result<T> {
        self.with_store(f)
    }

    /// Runs `f` on a connection to the store: the data directory's SQLite
    /// file (read-only), or PostgreSQL (not migrated: these tools only read).
    fn with_store<T>(&self, f: impl FnOnce(&dyn Sql, &Config) -> Result<T>) -> Result<T> {
        let config = self.config()?;
        match &config.store.url {
            None => {
                let path = wattstream_processor::store::db_path(&config.data_dir);
                if !path.exists() {
                    bail!("no processor store at {}", path.display());
                }
                let c =
                    rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                f(&c, &config)
            }
            Some(url) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let pool = wattstream_processor::store::pg::pool(url, 1)?;
                let c = PgSql::get(&pool, rt.handle())
                    .with_context(|| format!("cannot reach the store at {url}"))?;
                f(&c, &config)
            }
        }
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
    /// Publish to the chain's distributor the sealed roots and device owners it does not hold yet (idempotent).
    Settle(super::chain::SettleArgs),
    /// Claim a sealed epoch's total for a device from the distributor, paid to the device's owner (idempotent).
    Claim(super::chain::ClaimArgs),
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
        Command::Settle(args) => super::chain::settle(args),
        Command::Claim(args) => super::chain::claim(args),
        Command::Verify { dir, public_key } => {
            let pinned = public_key
                .map(|h| wattstream_sdk::PublicKey::from_hex(h.trim()))
                .transpose()
                .context("--public-key is not a P-256 public key")?;
            verify(&dir, pinned.as_ref())
        }
        Command::Replay { dir } => {
            let config = dir.config()?;
            let report = match &config.store.url {
                None => replay(&config.data_dir, &config)?,
                Some(url) => {
                    let Some(data_dir) = &dir.data_dir else {
                        bail!("replay signs its seals with the processor key: give --data-dir holding it");
                    };
                    let key = wattstream_sdk::load_key(&wattstream_processor::rewards::key_path(data_dir))?;
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()?;
                    let pool = wattstream_processor::store::pg::pool(url, 2)?;
                    replay_postgres(&pool, rt.handle(), &key, &config)?
                }
            };
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
            let entries = dir.with_store(|c, _| Ok(device_entries(c, &id)?))?;
            println!(
                "{:>6} {:>8} {:>26} {:>10} {:<18} {:>12}",
                "seq", "epoch", "amount (units)", "event", "applet", "timestamp"
            );
            let mut total = 0u128;
            for (e, t) in entries {
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
    let verdict = dir.with_store(|c, config| {
        if pinned.is_none() && dir.data_dir.is_none() {
            bail!(
                "give the processor's public key (--public-key, from a meter's config) or \
                 --data-dir holding its key file"
            );
        }
        verify_on(c, &config.data_dir, &config.rewards, pinned)
    })?;
    match verdict {
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
