//! Sending the outbox to the processor: oldest first, in batches, each entry
//! removed only once the processor has it (`accepted` or `duplicate`). Network
//! failures and 5xx answers back off exponentially with jitter; a rejected entry
//! goes to the dead-letter file, except the answers that say "not yet" and are
//! retried: `unknown_device` (the device is not registered yet) and
//! `future_timestamp` (one of the two clocks is wrong, and will be set right).
//!
//! The same rules hold over HTTP(S) and over MQTT ([`Sender`]): only the
//! processor's answer removes an entry. A server whose TLS certificate is
//! not trusted is `untrusted` in the state file, with the reason, and nothing
//! leaves the outbox.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use wattstream_sdk::client::{ClientError, EventResult, EventStatus, ProcessorClient};
use wattstream_sdk::state::{LinkState, LinkStatus};

use crate::outbox::{Entry, Outbox};
use crate::sensor::load::Rng;

/// Backoff with full jitter between `min` and a cap that doubles per failure.
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    rng: Rng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            min,
            max,
            current: min,
            rng: Rng::new(seed),
        }
    }

    /// The next delay: uniform in [min, cap], then the cap doubles.
    pub fn next_delay(&mut self) -> Duration {
        let span = self.current.saturating_sub(self.min).as_secs_f64();
        let delay = self.min + Duration::from_secs_f64(span * self.rng.unit());
        self.current = (self.current * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// How batches reach the processor.
#[derive(Clone)]
pub enum Sender {
    Http(ProcessorClient),
    Mqtt(crate::mqtt::MqttLink),
}

/// Why a send got no verdict.
enum SendError {
    /// The request as a whole was refused (HTTP 4xx, or the error shape over
    /// MQTT): send one by one so each entry gets its own verdict.
    Refused,
    /// No answer: the link is down, the processor failed, or it is untrusted.
    Down { text: String, untrusted: bool },
}

impl From<ClientError> for SendError {
    fn from(e: ClientError) -> Self {
        if e.status().is_some_and(|s| (400..500).contains(&s)) {
            return SendError::Refused;
        }
        match e.certificate_error() {
            Some(problem) => SendError::Down {
                text: problem,
                untrusted: true,
            },
            None => SendError::Down {
                text: short_error(&e),
                untrusted: false,
            },
        }
    }
}

impl From<crate::mqtt::LinkDown> for SendError {
    fn from(e: crate::mqtt::LinkDown) -> Self {
        SendError::Down {
            text: e.text,
            untrusted: e.untrusted,
        }
    }
}

/// The processor's answer over MQTT: the same JSON as over HTTP.
fn mqtt_answer<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SendError> {
    if let Ok(answer) = serde_json::from_slice::<T>(bytes) {
        return Ok(answer);
    }
    // The error shape: `{"status":"rejected","reason":..,"detail":..}`.
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    match v.get("reason").and_then(|r| r.as_str()) {
        Some("store_unavailable") | None => Err(SendError::Down {
            text: format!(
                "processor answered {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
            untrusted: false,
        }),
        Some(_) => Err(SendError::Refused),
    }
}

impl Sender {
    async fn batch(&self, bodies: &[String]) -> Result<Vec<EventResult>, SendError> {
        match self {
            Sender::Http(c) => Ok(c.post_events(bodies).await?),
            Sender::Mqtt(m) => {
                let answer: wattstream_sdk::wire::BatchAnswer =
                    mqtt_answer(&m.request(format!("[{}]", bodies.join(","))).await?)?;
                if answer.results.len() != bodies.len() {
                    return Err(SendError::Down {
                        text: format!("{} results for {} envelopes", answer.results.len(), bodies.len()),
                        untrusted: false,
                    });
                }
                Ok(answer.results)
            }
        }
    }

    async fn one(&self, body: &str) -> Result<EventResult, SendError> {
        match self {
            Sender::Http(c) => Ok(c.post_event(body).await?),
            Sender::Mqtt(m) => mqtt_answer(&m.request(body.to_string()).await?),
        }
    }
}

/// What the uplink shares with the rest of the daemon.
pub struct Uplink {
    pub sender: Sender,
    pub outbox: Arc<Mutex<Outbox>>,
    pub link: Arc<Mutex<LinkState>>,
    pub wake: Arc<Notify>,
    pub batch: usize,
}

use wattstream_sdk::time::unix_now as now_s;

/// The result of one attempt.
enum Attempt {
    /// Nothing to send.
    Idle,
    /// Sent; `retry_later` when some entries were kept for a later try.
    Sent { retry_later: bool },
    /// Could not reach the processor (or it failed); back off.
    Failed,
}

impl Uplink {
    fn record(&self, status: LinkStatus, text: String) {
        let mut link = self.link.lock().expect("link lock");
        link.status = status;
        link.last_send_at = Some(now_s());
        link.last_send = Some(text);
    }

    fn apply(&self, entries: &[Entry], results: &[EventResult]) -> anyhow::Result<bool> {
        let mut outbox = self.outbox.lock().expect("outbox lock");
        let mut delivered = Vec::new();
        let mut retry_later = false;
        for (entry, result) in entries.iter().zip(results) {
            match (result.status, result.reason.as_deref()) {
                (EventStatus::Accepted | EventStatus::Duplicate, _) => delivered.push(entry.seq),
                (_, Some(reason @ ("unknown_device" | "future_timestamp"))) => {
                    retry_later = true;
                    tracing::warn!(seq = entry.seq, reason, "kept in the outbox, to be sent again");
                }
                (_, reason) => outbox.dead_letter(
                    entry,
                    reason.unwrap_or("rejected"),
                    result.detail.as_deref().unwrap_or(""),
                )?,
            }
        }
        outbox.remove(&delivered)?;
        Ok(retry_later)
    }

    /// Sends one batch from the outbox.
    async fn attempt(&self) -> anyhow::Result<Attempt> {
        let entries = self.outbox.lock().expect("outbox lock").peek(self.batch)?;
        if entries.is_empty() {
            return Ok(Attempt::Idle);
        }
        let bodies: Vec<String> = entries.iter().map(|e| e.body.clone()).collect();
        let down = |e: SendError| match e {
            SendError::Down { text, untrusted } => {
                let was = self.link.lock().expect("link lock").status;
                if untrusted && was != LinkStatus::Untrusted {
                    // Once per change, not once per retry.
                    tracing::error!(error = %text, "the processor's TLS certificate is refused; check tls_ca");
                }
                self.record(
                    if untrusted {
                        LinkStatus::Untrusted
                    } else {
                        LinkStatus::Offline
                    },
                    text,
                );
            }
            SendError::Refused => {
                self.record(LinkStatus::Offline, "the processor refused the request".into())
            }
        };
        let results = match self.sender.batch(&bodies).await {
            Ok(results) => results,
            Err(SendError::Refused) => {
                // The request as a whole was refused: send one by one so each
                // entry gets its own verdict.
                let mut results = Vec::with_capacity(entries.len());
                for body in &bodies {
                    match self.sender.one(body).await {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            down(e);
                            return Ok(Attempt::Failed);
                        }
                    }
                }
                results
            }
            Err(e) => {
                down(e);
                return Ok(Attempt::Failed);
            }
        };
        let accepted = results
            .iter()
            .filter(|r| r.status == EventStatus::Accepted)
            .count();
        let retry_later = self.apply(&entries, &results)?;
        self.record(LinkStatus::Online, format!("ok ({accepted} accepted)"));
        Ok(Attempt::Sent { retry_later })
    }

    /// Runs until `stop` turns true; then returns (the outbox keeps the rest).
    pub async fn run(self, mut backoff: Backoff, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let delay = match self.attempt().await {
                Ok(Attempt::Sent { retry_later: false }) => {
                    backoff.reset();
                    continue;
                }
                Ok(Attempt::Sent { retry_later: true }) | Ok(Attempt::Failed) => Some(backoff.next_delay()),
                Ok(Attempt::Idle) => None,
                Err(e) => {
                    tracing::error!(error = %e, "outbox error");
                    Some(backoff.next_delay())
                }
            };
            tokio::select! {
                _ = self.wake.notified(), if delay.is_none() => {}
                _ = tokio::time::sleep(delay.unwrap_or_default()), if delay.is_some() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One last send at shutdown, bounded in time.
    pub async fn flush(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            while let Ok(Attempt::Sent { retry_later: false }) = self.attempt().await {}
        })
        .await;
    }
}

fn short_error(e: &ClientError) -> String {
    match e {
        ClientError::Transport { source, .. } if source.is_connect() => "processor unreachable".into(),
        ClientError::Transport { source, .. } if source.is_timeout() => "processor timed out".into(),
        ClientError::Status { status, .. } => format!("processor answered {status}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattstream_sdk::{DeviceKey, Reading};

    fn result(status: EventStatus, reason: Option<&str>) -> EventResult {
        EventResult {
            index: None,
            status,
            reason: reason.map(str::to_string),
            detail: None,
            device_id: None,
            event_id: None,
        }
    }

    #[test]
    fn not_yet_answers_are_kept_and_retried_and_rejections_are_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 100).unwrap();
        let key = DeviceKey::generate();
        let entries: Vec<Entry> = (0..4)
            .map(|i| outbox.append(&key, Reading::new(1.0, 1_795_515_000 + i)).unwrap())
            .collect();
        let uplink = Uplink {
            sender: Sender::Http(
                ProcessorClient::new("http://127.0.0.1:9", None, Duration::from_secs(1)).unwrap(),
            ),
            outbox: Arc::new(Mutex::new(outbox)),
            link: Arc::default(),
            wake: Arc::default(),
            batch: 10,
        };
        let results = [
            result(EventStatus::Accepted, None),
            result(EventStatus::Rejected, Some("future_timestamp")),
            result(EventStatus::Rejected, Some("unknown_device")),
            result(EventStatus::Rejected, Some("bad_signature")),
        ];
        assert!(
            uplink.apply(&entries, &results).unwrap(),
            "some entries wait for a retry"
        );
        let o = uplink.outbox.lock().unwrap();
        let left: Vec<u64> = o.peek(10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(
            left,
            [entries[1].seq, entries[2].seq],
            "future_timestamp is never dead-lettered"
        );
        assert_eq!(o.dead_lettered().unwrap(), 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 3);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2))
        );
        assert!(
            delays[6..].iter().any(|d| *d > Duration::from_millis(400)),
            "{delays:?}"
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
