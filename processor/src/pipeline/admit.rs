//! Stage 2: the rules of DESIGN §2 for one envelope, cheapest first: structure
//! (sdk parse), registration, timestamp and sequence bounds, and last the
//! signature on the fast path. An envelope that passes becomes a [`NewEvent`];
//! one that does not gets a stable reason code and a human detail.

use wattstream_sdk::{Envelope, VerifyPath};

use crate::registry::Registry;
use crate::store::NewEvent;

/// Why one envelope was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Stable code (README lists them).
    pub reason: &'static str,
    /// What exactly was wrong.
    pub detail: String,
    /// The signer, when the envelope was parsed far enough to know it.
    pub device_id: Option<String>,
}

impl Rejection {
    fn new(reason: &'static str, detail: impl Into<String>, device_id: Option<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            device_id,
        }
    }

    /// Whether the device is registered, so its rejection counter should move.
    pub fn counts_against_device(&self) -> bool {
        !matches!(
            self.reason,
            "unknown_device" | "malformed" | "bad_public_key" | "topic_mismatch"
        )
    }
}

/// The channel rule: an envelope that came in on `expected`'s own channel (its
/// MQTT topic) must be signed by `expected`. Whatever else was wrong with it,
/// an envelope of another signer is `topic_mismatch` (it is not that device's
/// to send, and its own verdict would tell the sender about someone else).
pub fn on_channel(verdict: Result<NewEvent, Rejection>, expected: &str) -> Result<NewEvent, Rejection> {
    let signer = match &verdict {
        Ok(e) => Some(e.device_id.as_str()),
        Err(r) => r.device_id.as_deref(),
    };
    match signer {
        Some(id) if !id.eq_ignore_ascii_case(expected) => Err(Rejection::new(
            "topic_mismatch",
            format!("signed by device {id}, published on the topic of device {expected}"),
            Some(id.to_string()),
        )),
        _ => verdict,
    }
}

/// Applies every rule. With `registry` set, the device must be registered and
/// not revoked; without it (the `verify` command) registration is not checked.
pub fn admit(
    item: &[u8],
    now: u64,
    max_future_s: u64,
    max_age_s: u64,
    registry: Option<&Registry>,
) -> Result<NewEvent, Rejection> {
    let env = Envelope::parse(item).map_err(|e| Rejection::new(e.code(), e.to_string(), None))?;
    let id = env.device_id();
    let id_text = id.to_string();
    let reject = |reason, detail: String| Rejection::new(reason, detail, Some(id_text.clone()));
    if let Some(registry) = registry {
        match registry.get(&id) {
            None => return Err(reject("unknown_device", format!("device {id} is not registered"))),
            Some(d) if d.revoked => return Err(reject("revoked_device", format!("device {id} is revoked"))),
            Some(_) => {}
        }
    }
    let reading = env.reading();
    if reading.timestamp > now.saturating_add(max_future_s) {
        return Err(reject(
            "future_timestamp",
            format!(
                "timestamp {} is {} s ahead of the processor clock (limit {max_future_s} s)",
                reading.timestamp,
                reading.timestamp - now
            ),
        ));
    }
    if reading.timestamp.saturating_add(max_age_s) < now {
        return Err(reject(
            "stale_timestamp",
            format!(
                "timestamp {} is {} s old (limit {max_age_s} s: older than a meter's outbox keeps)",
                reading.timestamp,
                now - reading.timestamp
            ),
        ));
    }
    if reading.timestamp > i64::MAX as u64 || reading.seq.is_some_and(|s| s > i64::MAX as u64) {
        return Err(reject("malformed", "timestamp or seq above 2^63-1".into()));
    }
    env.verify(VerifyPath::Fast)
        .map_err(|e| reject(e.code(), e.to_string()))?;
    Ok(NewEvent {
        device_id: id_text,
        seq: reading.seq,
        timestamp: reading.timestamp,
        sensor_reading: reading.sensor_reading,
        data: env.data().to_string(),
        signature: env.signature().0,
        received_at: now as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeviceRow;
    use wattstream_sdk::{DeviceKey, Reading};

    fn registry_with(key: &DeviceKey, revoked: bool) -> Registry {
        Registry::from_rows(&[DeviceRow {
            device_id: key.device_id().to_string(),
            public_key: key.public_key().to_hex(),
            owner: None,
            registered_at: 0,
            revoked_at: revoked.then_some(1),
            accepted: 0,
            duplicate: 0,
            rejected: 0,
            last_seen: None,
            conflict: 0,
        }])
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_good_envelope_becomes_an_event() {
        let key = DeviceKey::generate();
        let body = key.sign_reading(&Reading::new(3.5, NOW - 10).with_seq(4));
        let event = admit(
            body.as_bytes(),
            NOW,
            300,
            604_800,
            Some(&registry_with(&key, false)),
        )
        .unwrap();
        assert_eq!(event.seq, Some(4));
        assert_eq!(event.device_id, key.device_id().to_string());
        assert!(body.contains(&event.data));
    }

    #[test]
    fn each_rule_rejects_with_its_code() {
        let key = DeviceKey::generate();
        let active = registry_with(&key, false);
        let reason = |body: &str, reg: &Registry| {
            admit(body.as_bytes(), NOW, 300, 604_800, Some(reg))
                .unwrap_err()
                .reason
        };
        let good = key.sign_reading(&Reading::new(3.5, NOW));
        assert_eq!(reason(&good, &Registry::default()), "unknown_device");
        assert_eq!(reason(&good, &registry_with(&key, true)), "revoked_device");
        let future = key.sign_reading(&Reading::new(3.5, NOW + 301));
        assert_eq!(reason(&future, &active), "future_timestamp");
        assert!(
            admit(
                key.sign_reading(&Reading::new(3.5, NOW + 300)).as_bytes(),
                NOW,
                300,
                604_800,
                Some(&active)
            )
            .is_ok()
        );
        // Up to max_age_s old (a meter catching up after a week offline): accepted.
        let week = key.sign_reading(&Reading::new(3.5, NOW - 604_800));
        assert!(admit(week.as_bytes(), NOW, 300, 604_800, Some(&active)).is_ok());
        let stale = key.sign_reading(&Reading::new(3.5, NOW - 604_801));
        assert_eq!(reason(&stale, &active), "stale_timestamp");
        assert_eq!(
            reason(&key.sign_reading(&Reading::new(3.5, 1_000)), &active),
            "stale_timestamp"
        );
        assert_eq!(reason(&good.replace("3.5", "9.5"), &active), "bad_signature");
        assert_eq!(reason("{}", &active), "malformed");
        let huge_seq = key.sign_reading(&Reading::new(1.0, NOW).with_seq(u64::MAX));
        assert_eq!(reason(&huge_seq, &active), "malformed");
    }
}
