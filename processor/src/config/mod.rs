//! The processor's configuration: a TOML file whose every key has a default, so
//! an empty file (or none) is a working local setup. Each key is documented in
//! README under "Processor configuration".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod sections;
pub use sections::{
    AppletsConfig, DashboardConfig, Limits, LogLevel, MqttConfig, RewardsConfig, StoreConfig, TlsConfig,
};

/// Everything `wattstream serve` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding the store (`wattstream.db`).
    pub data_dir: PathBuf,
    /// Bearer token for the admin API; admin endpoints are disabled without one.
    pub admin_token: Option<String>,
    /// Limits on untrusted input.
    pub limits: Limits,
    /// The embedded store.
    pub store: StoreConfig,
    /// Applets.
    pub applets: AppletsConfig,
    /// The rewards ledger.
    pub rewards: RewardsConfig,
    /// HTTPS (plain HTTP without it).
    pub tls: TlsConfig,
    /// MQTT ingest (off without `url`).
    pub mqtt: MqttConfig,
    /// Who may bind devices to owners, and on which chain.
    pub onboarding: crate::onboarding::OnboardingConfig,
    /// EVM chains applets send transactions to and call (`ws_send_tx`,
    /// `ws_call_contract`), by chain id: `[chains.4690]`.
    pub chains: std::collections::BTreeMap<String, crate::chain::adapter::ChainConfig>,
    /// The web dashboard at `/` and its live stream.
    pub dashboard: DashboardConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: PathBuf::from("wattstream-data"),
            admin_token: None,
            limits: Limits::default(),
            store: StoreConfig::default(),
            applets: AppletsConfig::default(),
            rewards: RewardsConfig::default(),
            tls: TlsConfig::default(),
            mqtt: MqttConfig::default(),
            onboarding: crate::onboarding::OnboardingConfig::default(),
            chains: Default::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

pub use wattstream_sdk::config::ConfigError;

impl Config {
    /// `[chains.ID]` by numeric chain id.
    pub fn chain_configs(
        &self,
    ) -> Result<std::collections::BTreeMap<u64, crate::chain::adapter::ChainConfig>, String> {
        let mut out = std::collections::BTreeMap::new();
        for (id, c) in &self.chains {
            let n: u64 = id
                .parse()
                .ok()
                .filter(|n| *n > 0 && *n <= i32::MAX as u64)
                .ok_or_else(|| format!("chains.{id}: the key must be a chain id (1 to 2^31-1)"))?;
            if c.confirmations == 0 || c.max_gas == 0 {
                return Err(format!("chains.{id}: confirmations and max_gas must be > 0"));
            }
            out.insert(n, c.clone());
        }
        Ok(out)
    }
}

impl Config {
    /// Reads a TOML file. Unknown keys and wrong types are errors that name the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        wattstream_sdk::config::load_toml(path, Self::check)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        wattstream_sdk::config::parse_toml(text, Self::check)
    }

    fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_body_bytes == 0 || l.max_batch == 0 || l.max_json_depth < 3 {
            return Err("limits: max_body_bytes and max_batch must be > 0, max_json_depth >= 3".into());
        }
        if !(1..=1000).contains(&self.rewards.page_lock_ms) {
            return Err("rewards.page_lock_ms: must be 1 to 1000".into());
        }
        if self.store.max_commit_events == 0 || self.store.read_connections == 0 {
            return Err("store: max_commit_events and read_connections must be > 0".into());
        }
        let min_restart = ((2 * crate::store::checkpoint::WAL_BYTES) >> 20) as u64;
        if !(min_restart..=1 << 20).contains(&self.store.wal_restart_mib) {
            return Err(format!("store.wal_restart_mib: must be {min_restart} to 1048576"));
        }
        if let Some(url) = &self.store.url {
            crate::store::pg::check_url(url).map_err(|e| e.to_string())?;
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err("tls: set both cert and key, or neither".into());
        }
        if let Some(url) = &self.mqtt.url {
            wattstream_sdk::wire::topics::broker_address(url).map_err(|e| format!("mqtt.url: {e}"))?;
        }
        if self.mqtt.max_inflight == 0
            || self.mqtt.share_group.is_empty()
            || self.mqtt.share_group.contains(['/', '+', '#'])
        {
            return Err(
                "mqtt: max_inflight must be > 0 and share_group a non-empty name without / + #".into(),
            );
        }
        self.chain_configs()?;
        if matches!(&self.admin_token, Some(t) if t.len() < 16) {
            return Err("admin_token: must be at least 16 characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.limits.max_batch, 1000);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[limits]\nmax_batch = \"many\"\n").unwrap_err();
        assert!(e.contains("max_batch"), "{e}");
        let e = Config::parse("listen_on = \"x\"\n").unwrap_err();
        assert!(e.contains("listen_on"), "{e}");
        let e = Config::parse("admin_token = \"short\"\n").unwrap_err();
        assert!(e.contains("admin_token"), "{e}");
        let e = Config::parse("[mqtt]\nurl = \"http://broker\"\n").unwrap_err();
        assert!(e.contains("mqtt.url"), "{e}");
        let e = Config::parse("[tls]\ncert = \"a.pem\"\n").unwrap_err();
        assert!(e.contains("tls"), "{e}");
        let e = Config::parse("[chains.goerli]\nrpc = \"http://x\"\nkey_file = \"k\"\n").unwrap_err();
        assert!(e.contains("chains.goerli"), "{e}");
        let e = Config::parse("[chains.5]\nrpc = \"http://x\"\n").unwrap_err();
        assert!(e.contains("key_file"), "{e}");
        let c = Config::parse("[chains.4690]\nrpc = \"http://x\"\nkey_file = \"k\"\n").unwrap();
        let chains = c.chain_configs().unwrap();
        assert_eq!(
            (chains[&4690].confirmations, chains[&4690].max_gas),
            (1, 2_000_000)
        );
    }

    #[test]
    fn the_applet_log_level_keeps_its_level_and_the_more_severe() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.applets.log_level, LogLevel::Info);
        let keeps = |level: LogLevel| -> Vec<&str> {
            ["error", "warn", "info", "debug", "trace"]
                .into_iter()
                .filter(|name| level.keeps(name))
                .collect()
        };
        assert_eq!(keeps(LogLevel::Info), ["error", "warn", "info"]);
        assert_eq!(keeps(LogLevel::Error), ["error"]);
        assert_eq!(keeps(LogLevel::Trace).len(), 5);
        let c = Config::parse("[applets]\nlog_level = \"debug\"\n").unwrap();
        assert_eq!(c.applets.log_level, LogLevel::Debug);
        let e = Config::parse("[applets]\nlog_level = \"verbose\"\n").unwrap_err();
        assert!(e.contains("log_level"), "{e}");
    }

    #[test]
    fn the_ledger_page_lock_is_five_milliseconds_unless_set_within_bounds() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.rewards.page_lock(), std::time::Duration::from_millis(5));
        let c = Config::parse("[rewards]\npage_lock_ms = 8\n").unwrap();
        assert_eq!(c.rewards.page_lock_ms, 8);
        for bad in ["0", "5000"] {
            let e = Config::parse(&format!("[rewards]\npage_lock_ms = {bad}\n")).unwrap_err();
            assert!(e.contains("page_lock_ms"), "{e}");
        }
    }

    #[test]
    fn the_store_restarts_its_wal_past_a_gib_unless_set_within_bounds() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.store.wal_restart_mib, 1024);
        let c = Config::parse("[store]\nwal_restart_mib = 128\n").unwrap();
        assert_eq!(c.store.wal_restart_mib, 128);
        // Below two checkpoints' worth of WAL every checkpoint would restart.
        for bad in ["0", "63", "2000000"] {
            let e = Config::parse(&format!("[store]\nwal_restart_mib = {bad}\n")).unwrap_err();
            assert!(e.contains("wal_restart_mib"), "{e}");
        }
    }
}
