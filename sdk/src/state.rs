//! The meter's state file: what `power-meter` knows right now, written about once
//! a second for the screen (`power-meter-display`) and anyone else to read. It
//! lives in the sdk because both sides need the same type.
//!
//! Format: one JSON object (see [`MeterState`]; README shows an example). It is
//! written to a temporary file in the same directory and renamed over the old
//! one, so a reader never sees half a file.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Version of the state format; readers refuse a newer major version.
pub const STATE_VERSION: u32 = 1;

/// Whether the meter can reach its processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// The last send succeeded.
    Online,
    /// The last send failed; windows wait in the outbox.
    Offline,
    /// Nothing sent yet.
    #[default]
    Unknown,
    /// The server's TLS certificate is not trusted (wrong CA, wrong name,
    /// expired): windows wait in the outbox; `last_send` says why. Retrying
    /// does not fix this; the configuration (or the server) must change.
    Untrusted,
}

/// What the meter made of the processor's rewards proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProofStatus {
    /// The proof checks against the pinned processor key.
    Verified,
    /// No proof to check (no sealed epoch yet, or no processor key pinned).
    Unverified,
    /// A proof was given and it does not check.
    Mismatch,
    /// Rewards not fetched yet.
    #[default]
    Unknown,
}

/// Whether the meter trusts its clock (readings are signed with wall-clock
/// timestamps; a Pi without a real-time clock boots in the past).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClockStatus {
    /// The kernel says the clock is synchronised (NTP).
    Synchronized,
    /// Not synchronised yet: the meter waits before signing anything.
    Waiting,
    /// No way to tell here (no systemd-timedated): the meter goes on.
    #[default]
    Unknown,
}

/// The uplink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LinkState {
    pub status: LinkStatus,
    /// Windows waiting to be sent.
    pub outbox_depth: u64,
    /// Unix seconds of the last send attempt.
    pub last_send_at: Option<u64>,
    /// `ok (N accepted)` or the error of the last attempt.
    pub last_send: Option<String>,
    /// Windows dropped because the outbox was full.
    pub dropped: u64,
    /// Windows the processor rejected (in the dead-letter file).
    pub dead_lettered: u64,
    /// Of those, refused as `conflict`: the processor holds another reading
    /// signed with this meter's key for the same `seq` (an alarm).
    pub conflicts: u64,
}

/// Rewards as the processor last reported them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RewardsState {
    /// Token balance.
    pub balance: Option<f64>,
    /// Tokens per hour over the last hour, as computed by the processor.
    pub rate_per_h: Option<f64>,
    pub proof: ProofStatus,
    /// The balance the latest seal proves for this meter (when `proof` is
    /// `verified`): what the screen shows as the balance.
    pub proven: Option<f64>,
    /// Earned since that seal, not proven yet (when `proof` is `verified`).
    pub pending: Option<f64>,
    /// Unix seconds of the last successful fetch.
    pub updated_at: Option<u64>,
}

/// The sensor's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SensorState {
    /// Failed bus reads (each retry counts).
    pub errors: u64,
    /// Samples given up on after all retries.
    pub missed: u64,
    /// Whether the bus is the emulated one (`--sim`).
    pub simulated: bool,
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterState {
    pub version: u32,
    /// Unix seconds when written.
    pub time: u64,
    pub device_id: String,
    /// Power of the latest sample, watts.
    pub power_w: Option<f64>,
    /// Average power of the latest window, watts.
    pub window_w: Option<f64>,
    /// Window length, seconds.
    pub window_s: u64,
    /// Energy since midnight UTC, watt-hours.
    pub energy_today_wh: f64,
    /// Window averages of the last 10 minutes, oldest first, watts.
    pub history_w: Vec<f64>,
    #[serde(default)]
    pub link: LinkState,
    #[serde(default)]
    pub rewards: RewardsState,
    #[serde(default)]
    pub sensor: SensorState,
    #[serde(default)]
    pub clock: ClockStatus,
}

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("state file {0} is not valid: {1}")]
    Invalid(String, String),
}

impl MeterState {
    /// Writes atomically: temporary file, then rename.
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let name = path.display().to_string();
        let mut bytes =
            serde_json::to_vec(self).map_err(|e| StateError::Invalid(name.clone(), e.to_string()))?;
        bytes.push(b'\n');
        crate::fsutil::write_atomic(path, &bytes, crate::fsutil::WriteOptions::SHARED)
            .map_err(|e| StateError::Io(name, e))
    }

    /// Reads and checks a state file.
    pub fn read(path: &Path) -> Result<Self, StateError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| StateError::Io(name.clone(), e))?;
        Self::parse(&bytes).map_err(|e| StateError::Invalid(name, e))
    }

    /// Parses and checks state bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let state: MeterState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.version > STATE_VERSION {
            return Err(format!(
                "version {} is newer than this reader ({STATE_VERSION})",
                state.version
            ));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let s = MeterState {
            version: STATE_VERSION,
            time: 1,
            device_id: "ab".into(),
            power_w: Some(4.2),
            window_w: None,
            window_s: 5,
            energy_today_wh: 1.5,
            history_w: vec![1.0, 2.0],
            link: LinkState {
                status: LinkStatus::Offline,
                outbox_depth: 12,
                ..Default::default()
            },
            rewards: RewardsState::default(),
            sensor: SensorState::default(),
            clock: ClockStatus::Synchronized,
        };
        s.write(&path).unwrap();
        assert_eq!(MeterState::read(&path).unwrap(), s);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"status\":\"offline\""));
    }

    #[test]
    fn garbage_and_future_versions_are_errors() {
        assert!(MeterState::parse(b"{").is_err());
        assert!(MeterState::parse(br#"{"version":9,"time":1,"device_id":"x","power_w":null,"window_w":null,"window_s":5,"energy_today_wh":0,"history_w":[]}"#).unwrap_err().contains("newer"));
    }
}
