//! The meter's configuration: TOML, every key optional with a default suited to a
//! Raspberry Pi with the Adafruit INA219 breakout. README lists every key.
//! Unknown keys and wrong types are errors that name the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sensor::Calibration;

/// Everything `power-meter run` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeterConfig {
    /// Where windows go: the processor's `http://` or `https://` base URL, or
    /// an MQTT broker, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
    pub processor: String,
    /// PEM CA certificate(s) to trust instead of the system roots, for an
    /// `https://` processor or an `mqtts://` broker with a private CA.
    pub tls_ca: Option<PathBuf>,
    /// Where rewards are fetched (HTTP(S)); default: `processor` when that is
    /// HTTP(S). Over MQTT without it the meter shows no rewards.
    pub rewards_url: Option<String>,
    /// The device key (PKCS#8 PEM).
    pub key: PathBuf,
    /// Where the outbox, dead-letter file and state file live.
    pub data_dir: PathBuf,
    /// Window length, seconds.
    pub window_s: u64,
    /// Sampling period, milliseconds.
    pub sample_ms: u64,
    /// The state file for the display; default `DATA_DIR/state.json`.
    pub state_file: Option<PathBuf>,
    /// The processor's public key (SEC1 hex), to check rewards proofs.
    pub processor_public_key: Option<String>,
    /// Asked before the outbox opens: `yes` when the clock is synchronised,
    /// `no` to wait; `[]` does not wait (see `clock.rs`).
    pub clock_sync_command: Vec<String>,
    pub sensor: SensorConfig,
    pub sim: SimConfig,
    pub uplink: UplinkConfig,
    pub mqtt: MqttLogin,
}

/// Logging in to the MQTT broker (`processor = "mqtt://..."`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttLogin {
    /// Broker user name (with per-device ACLs, the device id).
    pub username: Option<String>,
    /// File holding the broker password (first line), mode 0600.
    pub password_file: Option<PathBuf>,
}

/// The INA219 and its bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// I2C bus device.
    pub i2c_bus: PathBuf,
    /// 7-bit address (0x40 with A0 and A1 low).
    pub address: u8,
    /// Shunt resistance, ohms.
    pub shunt_ohms: f64,
    /// Largest current to measure, amperes.
    pub max_current_a: f64,
    /// Bus voltage range, 16 or 32.
    pub bus_range_v: u8,
    /// Attempts per sample before it counts as missed.
    pub retries: u32,
}

/// What `--sim` measures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// `demo` (0/4/8/12 W LED board), `constant` or `csv`.
    pub profile: String,
    /// Supply voltage, volts.
    pub volts: f64,
    /// Power for `constant`, watts.
    pub watts: f64,
    /// Seconds per level of the demo board.
    pub step_s: f64,
    /// `seconds,watts` file for `csv`.
    pub csv: Option<PathBuf>,
    /// Relative measurement noise (0.01 = 1 %).
    pub noise: f64,
    /// Noise seed.
    pub seed: u64,
}

/// Sending to the processor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Most envelopes per request.
    pub batch: usize,
    /// Request timeout, seconds.
    pub timeout_s: u64,
    /// First retry delay, milliseconds; doubles up to `backoff_max_s`, with jitter.
    pub backoff_min_ms: u64,
    pub backoff_max_s: u64,
    /// Most windows kept while offline (default 7 days of 5 s windows).
    pub outbox_max: u64,
    /// How often to fetch rewards, seconds.
    pub rewards_poll_s: u64,
    /// Size of one dead-letter file; the full one becomes
    /// `dead-letter.1.jsonl` (replacing the older), so two are kept.
    pub dead_letter_max_bytes: u64,
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            processor: "http://127.0.0.1:8080".into(),
            tls_ca: None,
            rewards_url: None,
            key: PathBuf::from("/var/lib/wattstream/device.pem"),
            data_dir: PathBuf::from("/var/lib/wattstream"),
            window_s: 5,
            sample_ms: 100,
            state_file: None,
            processor_public_key: None,
            clock_sync_command: ["timedatectl", "show", "-p", "NTPSynchronized", "--value"]
                .map(String::from)
                .to_vec(),
            sensor: SensorConfig::default(),
            sim: SimConfig::default(),
            uplink: UplinkConfig::default(),
            mqtt: MqttLogin::default(),
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        let c = Calibration::default();
        SensorConfig {
            i2c_bus: PathBuf::from("/dev/i2c-1"),
            address: c.address,
            shunt_ohms: c.shunt_ohms,
            max_current_a: c.max_current_a,
            bus_range_v: c.bus_range_v,
            retries: 3,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            profile: "demo".into(),
            volts: 12.0,
            watts: 4.0,
            step_s: 30.0,
            csv: None,
            noise: 0.01,
            seed: 1,
        }
    }
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            batch: 50,
            timeout_s: 10,
            backoff_min_ms: 500,
            backoff_max_s: 60,
            outbox_max: 7 * 24 * 3600 / 5,
            rewards_poll_s: 60,
            dead_letter_max_bytes: crate::deadletter::DEFAULT_MAX_BYTES,
        }
    }
}

pub use wattstream_sdk::config::ConfigError;

impl MeterConfig {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        wattstream_sdk::config::load_toml(path, Self::check)
    }

    /// Parses TOML text and checks the values.
    pub fn parse(text: &str) -> Result<Self, String> {
        wattstream_sdk::config::parse_toml(text, Self::check)
    }

    /// Checks values that parse but cannot work (also after command-line overrides).
    pub fn check(&self) -> Result<(), String> {
        if self.window_s == 0 || self.window_s > 3600 {
            return Err(format!("window_s: must be 1..=3600, got {}", self.window_s));
        }
        if self.sample_ms < 10
            || self.sample_ms > self.window_s * 1000
            || !(self.window_s * 1000).is_multiple_of(self.sample_ms)
        {
            return Err(format!(
                "sample_ms: must be >= 10 and divide the window ({} ms), got {}",
                self.window_s * 1000,
                self.sample_ms
            ));
        }
        if !["http://", "https://", "mqtt://", "mqtts://"]
            .iter()
            .any(|s| self.processor.starts_with(s))
        {
            return Err(format!(
                "processor: must be an http://, https://, mqtt:// or mqtts:// URL, got {:?}",
                self.processor
            ));
        }
        if let Some(r) = &self.rewards_url
            && !(r.starts_with("http://") || r.starts_with("https://"))
        {
            return Err(format!(
                "rewards_url: must be an http:// or https:// URL, got {r:?}"
            ));
        }
        if !matches!(self.sim.profile.as_str(), "demo" | "constant" | "csv") {
            return Err(format!(
                "sim.profile: must be demo, constant or csv, got {:?}",
                self.sim.profile
            ));
        }
        if self.sim.profile == "csv" && self.sim.csv.is_none() {
            return Err("sim.csv: required when sim.profile = \"csv\"".into());
        }
        if self.uplink.batch == 0 || self.uplink.batch > 1000 {
            return Err("uplink.batch: must be 1..=1000".into());
        }
        self.calibration()
            .configuration()
            .map_err(|e| format!("sensor: {e}"))?;
        self.calibration()
            .driver_calibration()
            .map_err(|e| format!("sensor: {e}"))?;
        Ok(())
    }

    /// The sensor calibration from `[sensor]`.
    pub fn calibration(&self) -> Calibration {
        Calibration {
            address: self.sensor.address,
            shunt_ohms: self.sensor.shunt_ohms,
            max_current_a: self.sensor.max_current_a,
            bus_range_v: self.sensor.bus_range_v,
        }
    }

    /// Whether windows go over MQTT.
    pub fn over_mqtt(&self) -> bool {
        self.processor.starts_with("mqtt://") || self.processor.starts_with("mqtts://")
    }

    /// Where rewards are fetched, if anywhere.
    pub fn rewards_base(&self) -> Option<&str> {
        self.rewards_url
            .as_deref()
            .or((!self.over_mqtt()).then_some(self.processor.as_str()))
    }

    /// The state file path.
    pub fn state_path(&self) -> PathBuf {
        self.state_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("state.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_the_breakout() {
        let c = MeterConfig::parse("").unwrap();
        assert_eq!(c.window_s, 5);
        assert_eq!(c.sample_ms, 100);
        assert_eq!(c.sensor.address, 0x40);
        assert_eq!(c.uplink.outbox_max, 120_960);
    }

    #[test]
    fn rewards_come_from_the_processor_unless_it_is_a_broker() {
        let c = MeterConfig::parse("processor = \"https://p.example\"").unwrap();
        assert_eq!(c.rewards_base(), Some("https://p.example"));
        let c = MeterConfig::parse("processor = \"mqtts://b.example\"").unwrap();
        assert_eq!(c.rewards_base(), None);
        let c = MeterConfig::parse("processor = \"mqtt://b\"\nrewards_url = \"https://p\"").unwrap();
        assert_eq!(c.rewards_base(), Some("https://p"));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("window_s = \"five\"", "window_s"),
            ("sample_ms = 300", "sample_ms"),
            ("[sensor]\nbus_range_v = 20", "16 or 32"),
            ("[sensor]\nshunt_ohm = 0.1", "shunt_ohm"),
            ("processor = \"ftp://x\"", "processor"),
            ("rewards_url = \"mqtt://x\"", "rewards_url"),
            ("[sim]\nprofile = \"csv\"", "sim.csv"),
        ] {
            let e = MeterConfig::parse(text).unwrap_err();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
