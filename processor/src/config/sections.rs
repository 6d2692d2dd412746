//! The sections of the processor's configuration (`[limits]`, `[store]`,
//! `[applets]`, `[rewards]`, `[tls]`, `[mqtt]`, `[dashboard]`), each with
//! its defaults: the values an empty file means. README's "Processor
//! configuration" documents every key; [`super::Config::parse`] checks the
//! bounds that span keys.

use std::path::PathBuf;

use serde::Deserialize;

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
    /// are kept. See `retention/mod.rs`.
    pub retention_days: u64,
    /// Seconds between retention passes.
    pub retention_every_s: u64,
    /// SQLite: MiB of WAL past which the checkpoint thread starts the WAL
    /// over (see `store/checkpoint.rs`): the WAL file's size under a
    /// sustained load, and at most what a crash replays at the next start.
    pub wal_restart_mib: u64,
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
            wal_restart_mib: (crate::store::checkpoint::RESTART_BYTES >> 20) as u64,
        }
    }
}
