//! The processor's configuration: a TOML file whose every key has a default, so
//! an empty file (or none) is a working local setup. Each key is documented in
//! README under "Processor configuration".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// The web dashboard (`processor/web`, served at `/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the pages at `/` (the JSON API is there either way).
    pub enabled: bool,
    /// Live streams (`GET /v1/stream`) open at once; one more is refused
    /// with 503 rather than holding a connection and a subscriber.
    pub max_streams: usize,
    /// A device counts as online when its last reading arrived at most this
    /// long ago (three 5-second windows).
    pub online_after_s: u64,
    /// The chain rewards settle on (`rewards settle`): the epochs page shows
    /// each seal's settlement read from there. Needs `[chains.ID]` for it.
    pub settlement_chain: Option<u64>,
    /// The `EpochDistributor` on that chain (`0x` address).
    pub distributor: Option<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            max_streams: 64,
            online_after_s: 15,
            settlement_chain: None,
            distributor: None,
        }
    }
}

/// HTTPS: both keys or neither.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). Reloaded on SIGHUP.
    pub cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// MQTT ingest: the processor is a client of a broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://HOST:PORT` or `mqtts://HOST:PORT`; MQTT ingest is off without it.
    pub url: Option<String>,
    /// Broker user name.
    pub username: Option<String>,
    /// File holding the broker password (first line).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate(s) for `mqtts://`; the system roots without it.
    pub ca: Option<PathBuf>,
    /// Client id; `wattstream-<host>-<pid>` without it. Must differ per processor.
    pub client_id: Option<String>,
    /// Shared-subscription group: processors with the same group split the stream.
    pub share_group: String,
    /// Subscribe to W3bstream v1's topic form (the project name as topic).
    pub w3bstream_topics: bool,
    /// Most messages handled at once (the broker holds the rest).
    pub max_inflight: u16,
    /// How long the broker keeps this processor's session (its subscriptions
    /// and the messages it has not acknowledged) while it is away, seconds.
    pub session_expiry_s: u32,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: None,
            username: None,
            password_file: None,
            ca: None,
            client_id: None,
            share_group: "wattstream".into(),
            w3bstream_topics: true,
            max_inflight: 64,
            session_expiry_s: 86_400,
        }
    }
}

/// The rewards ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardsConfig {
    /// Epoch length, seconds.
    pub epoch_s: u64,
    /// Most tokens a device earns per epoch.
    pub cap_per_epoch: f64,
    /// How long after an epoch ends it is sealed, seconds (late readings still count).
    pub seal_after_s: u64,
    /// How long an accrual page should hold the store's write lock, ms: the
    /// most an ingest group waits for the ledger, traded against the
    /// ledger's commits per credit ([`crate::rewards`]'s `pace`).
    pub page_lock_ms: u64,
}

impl Default for RewardsConfig {
    fn default() -> Self {
        RewardsConfig {
            epoch_s: 3600,
            cap_per_epoch: 100.0,
            seal_after_s: 60,
            page_lock_ms: 5,
        }
    }
}

impl RewardsConfig {
    /// The cap in token units (18 decimals).
    pub fn cap_units(&self) -> u128 {
        (self.cap_per_epoch.max(0.0) * 1e18) as u128
    }

    /// [`RewardsConfig::page_lock_ms`] as a duration.
    pub fn page_lock(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.page_lock_ms)
    }
}

/// Applets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppletsConfig {
    /// The project whose applets run over events from `POST /v1/events`.
    pub default_project: String,
    /// `/healthz` says `degraded` when the applet worker is more than this
    /// many stored events behind.
    pub max_lag_events: u64,
    /// An event whose batch fails this many times in a row is quarantined:
    /// listed in the project's failures and skipped, so one poisonous event
    /// cannot stop the stream.
    pub quarantine_after: u32,
    /// Seconds without progress (an applet call or a loop) after which the
    /// applet worker counts as stalled: `/healthz` says `degraded` and the
    /// systemd watchdog is no longer pinged. Above the 10 s longest call.
    pub stall_after_s: u64,
    /// The least severe applet log line the worker stores with the project
    /// (what `applet logs` and the dashboard show). Lines below it are
    /// dropped before they reach the database: per-event chatter at fleet
    /// rates is rows written and deleted again (10,000 kept per project).
    pub log_level: LogLevel,
}

/// Applet log levels, most severe first (`ws_log`'s, with W3bstream's panic
/// and fatal counted as errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Whether a line of level `name` (as [`wattstream_abi::Level::name`]
    /// gives it) is stored at this setting.
    pub fn keeps(self, name: &str) -> bool {
        let level = match name {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => LogLevel::Trace,
        };
        level <= self
    }
}

impl Default for AppletsConfig {
    fn default() -> Self {
        AppletsConfig {
            default_project: "default".into(),
            max_lag_events: 100_000,
            quarantine_after: 3,
            stall_after_s: 30,
            log_level: LogLevel::Info,
        }
    }
}

/// Limits on what a client can send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Most envelopes in one batch.
    pub max_batch: usize,
    /// Deepest JSON nesting accepted in a body.
    pub max_json_depth: usize,
    /// How far in the future a reading's timestamp may be, seconds (also the
    /// clock difference the paid-time rule allows at registration).
    pub max_future_s: u64,
    /// Longest window one reading is paid for, seconds, whatever it claims.
    pub max_window_s: u64,
    /// Oldest reading accepted, seconds before now: older is
    /// `stale_timestamp` (a meter keeps 7 days in its outbox).
    pub max_age_s: u64,
    /// Time a client has to send a request's headers, and the longest a
    /// kept-alive connection may sit idle between requests, seconds.
    pub header_read_timeout_s: u64,
    /// Time a client has to send a request's body, seconds.
    pub body_read_timeout_s: u64,
    /// Most client connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// The store: SQLite in `data_dir` (the default), or PostgreSQL at `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB`: keep the stream, registry and
    /// ledger on PostgreSQL instead of SQLite (unset: SQLite in `data_dir`).
    pub url: Option<String>,
    /// Most events written in one group commit.
    pub max_commit_events: usize,
    /// Connections for queries (the writer has its own).
    pub read_connections: usize,
    /// Days after which processed, sealed events, taken credits and applet
    /// failures are removed (0: keep everything). Ledger entries and seals
    /// are kept. See `retention.rs`.
    pub retention_days: u64,
    /// Seconds between retention passes.
    pub retention_every_s: u64,
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

impl Limits {
    /// The paid-time rule these limits set.
    pub fn paid_time(&self) -> wattstream_rewards::PaidTime {
        wattstream_rewards::PaidTime {
            max_window_s: self.max_window_s,
            skew_s: self.max_future_s,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            max_json_depth: 32,
            max_future_s: 300,
            max_window_s: 60,
            max_age_s: 604_800,
            header_read_timeout_s: 10,
            body_read_timeout_s: 30,
            max_connections: 4096,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            max_commit_events: 10_000,
            read_connections: 4,
            retention_days: 90,
            retention_every_s: 3600,
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
}
