//! `wattstream serve`: the processor, configured from TOML with command-line
//! overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use wattstream_processor::config::Config;
use wattstream_processor::server;

#[derive(ClapArgs)]
pub struct Args {
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
}

pub fn run(args: Args) -> Result<i32> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(t) = args.admin_token {
        if t.len() < 16 {
            bail!("the admin token must be at least 16 characters");
        }
        cfg.admin_token = Some(t);
    }
    super::runtime()?.block_on(server::serve(cfg, |addr| {
        println!("listening on http://{addr}");
    }))?;
    Ok(0)
}
