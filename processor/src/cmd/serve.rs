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
    /// Data directory (overrides the config): the SQLite store, and this
    /// processor's keys and state files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the store on PostgreSQL, `postgres://USER@HOST:PORT/DB`, shared
    /// with any other processor on it (overrides `store.url`).
    #[arg(long)]
    store: Option<String>,
    /// Listen address (overrides the config).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// PEM certificate chain: serve HTTPS (with --tls-key; reloaded on SIGHUP).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Take envelopes from an MQTT broker too: mqtt://HOST:PORT or mqtts://HOST:PORT.
    #[arg(long)]
    mqtt: Option<String>,
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
    if let Some(url) = args.store {
        wattstream_processor::store::pg::check_url(&url)?;
        cfg.store.url = Some(url);
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let (Some(c), Some(k)) = (args.tls_cert, args.tls_key) {
        cfg.tls.cert = Some(c);
        cfg.tls.key = Some(k);
    }
    if let Some(m) = args.mqtt {
        wattstream_sdk::wire::topics::broker_address(&m).map_err(|e| anyhow::anyhow!("--mqtt {e}"))?;
        cfg.mqtt.url = Some(m);
    }
    if let Some(t) = args.admin_token {
        if t.len() < 16 {
            bail!("the admin token must be at least 16 characters");
        }
        cfg.admin_token = Some(t);
    }
    let scheme = if cfg.tls.cert.is_some() { "https" } else { "http" };
    super::runtime()?.block_on(server::serve(cfg, |addr| {
        println!("listening on {scheme}://{addr}");
    }))?;
    Ok(0)
}
