//! The processor's answers as typed values, written once: the processor
//! serializes these types and the meter, the demo, the CLI and the tests
//! parse them, so a renamed field is a compile error on both sides rather
//! than a silently missing balance.

use serde::{Deserialize, Serialize};

pub use crate::proof::{ProofView, SealView, Step};

/// What happened to one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Stored durably for the first time.
    Accepted,
    /// Already stored with the same bytes: nothing changed.
    Duplicate,
    /// Not stored; `reason` says why.
    Rejected,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Accepted => "accepted",
            EventStatus::Duplicate => "duplicate",
            EventStatus::Rejected => "rejected",
        }
    }
}

/// The processor's verdict on one envelope (`POST /v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventResult {
    /// Position in the batch (absent for a single envelope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub status: EventStatus,
    /// Stable rejection code, when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail, when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The signer's device id, when the envelope could be parsed that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The stored event's id, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i64>,
}

/// The answer to a batch: one result per envelope, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub results: Vec<EventResult>,
}

/// `GET /v1/devices/{id}/rewards`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardsView {
    pub device_id: String,
    /// Tokens (18 decimals) as a float, for display.
    pub balance: f64,
    /// The exact balance in token units, decimal.
    pub balance_units: String,
    /// Tokens credited over the last hour of readings.
    pub rate_per_h: f64,
    /// The newest sealed epoch, once there is one.
    pub latest_epoch: Option<SealView>,
    /// This device's leaf in that epoch and its path to the root.
    pub proof: Option<ProofView>,
    /// Epoch length, seconds (to tell how old the seal is).
    #[serde(default)]
    pub epoch_s: u64,
}

impl RewardsView {
    /// The exact balance, `None` when the processor sent something else than a decimal.
    pub fn balance_units(&self) -> Option<u128> {
        self.balance_units.parse().ok()
    }
}

/// `GET /v1/ledger/head`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerHead {
    /// Entries so far.
    pub seq: u64,
    /// Hash of the newest entry, hex.
    pub hash: String,
    pub last_sealed_epoch: Option<u64>,
    pub epoch_s: u64,
    /// The key seals are signed with: what meters pin.
    pub processor_public_key: String,
    /// Every event up to this id has been run by the applets and its credits
    /// are in the ledger (absent until the first accrual after start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_event: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_results_keep_their_wire_form() {
        let r = EventResult {
            index: None,
            status: EventStatus::Rejected,
            reason: Some("bad_signature".into()),
            detail: Some("x".into()),
            device_id: None,
            event_id: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"status":"rejected","reason":"bad_signature","detail":"x"}"#
        );
        assert_eq!(serde_json::from_str::<EventResult>(&text).unwrap(), r);
        let accepted: EventResult =
            serde_json::from_str(r#"{"index":3,"status":"accepted","device_id":"ab","event_id":9}"#).unwrap();
        assert_eq!(
            (accepted.index, accepted.status, accepted.event_id),
            (Some(3), EventStatus::Accepted, Some(9))
        );
    }
}

/// MQTT topics of the WattStream link (README "MQTT topics"): a device
/// publishes envelopes (one, or a JSON array) on its events topic and reads
/// the processor's answer, the same JSON as `POST /v1/events` returns, on its
/// results topic.
pub mod topics {
    const PREFIX: &str = "wattstream/v1/devices/";

    /// `wattstream/v1/devices/{device_id}/events`.
    pub fn events(device_id: &str) -> String {
        format!("{PREFIX}{device_id}/events")
    }

    /// `wattstream/v1/devices/{device_id}/results`.
    pub fn results(device_id: &str) -> String {
        format!("{PREFIX}{device_id}/results")
    }

    /// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` as (TLS?, host, port),
    /// with MQTT's ports (1883, 8883) by default and IPv6 brackets removed.
    pub fn broker_address(url: &str) -> Result<(bool, String, u16), String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("mqtt", rest)) => (false, rest),
            Some(("mqtts", rest)) => (true, rest),
            _ => return Err(format!("{url:?}: use mqtt://HOST:PORT or mqtts://HOST:PORT")),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !rest.ends_with(']') => {
                (h, p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok((tls, host.to_string(), port))
    }

    /// The subscription filter for every device's events.
    pub const ALL_EVENTS: &str = "wattstream/v1/devices/+/events";

    /// The device id in an events topic (any 1–64 character segment; the
    /// envelope's signer must match it).
    pub fn device_of_events(topic: &str) -> Option<&str> {
        let id = topic.strip_prefix(PREFIX)?.strip_suffix("/events")?;
        (!id.is_empty() && id.len() <= 64 && !id.contains('/')).then_some(id)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn broker_urls_give_transport_host_and_port() {
            assert_eq!(
                broker_address("mqtt://h:1884").unwrap(),
                (false, "h".into(), 1884)
            );
            assert_eq!(broker_address("mqtts://h").unwrap(), (true, "h".into(), 8883));
            assert_eq!(
                broker_address("mqtt://[::1]:1883").unwrap(),
                (false, "::1".into(), 1883)
            );
            assert_eq!(
                broker_address("mqtt://[::1]").unwrap(),
                (false, "::1".into(), 1883)
            );
            assert!(broker_address("https://h").is_err());
            assert!(broker_address("mqtt://h:port").is_err());
            assert!(broker_address("mqtt://").is_err());
        }

        #[test]
        fn the_device_comes_back_out_of_its_events_topic_only() {
            let id = "00112233445566778899aabbccddeeff00112233";
            assert_eq!(device_of_events(&events(id)), Some(id));
            assert_eq!(device_of_events(&results(id)), None);
            assert_eq!(device_of_events("wattstream/v1/devices//events"), None);
            assert_eq!(device_of_events("wattstream/v1/devices/a/b/events"), None);
            assert_eq!(device_of_events("other/v1/devices/a/events"), None);
        }
    }
}
