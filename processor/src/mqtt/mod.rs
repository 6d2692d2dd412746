//! MQTT ingest: the processor is a client of a broker (Mosquitto, EMQX...)
//! and takes envelopes that meters publish, beside `POST /v1/events`.
//!
//! Invariants, and why they hold:
//! - **Nothing is acknowledged before it is durable.** The session uses
//!   manual acknowledgements: a message's PUBACK is sent only after its
//!   events are committed and its answer is published (`handle.rs`). A
//!   processor killed before that leaves the message unacknowledged in its
//!   persistent session (`clean_start = false`), and the broker delivers it
//!   again when the processor returns; the store's dedupe makes the second
//!   delivery a `duplicate`, never a second event.
//! - **Acknowledgements keep the order of arrival** (MQTT 5 §4.6 asks it of a
//!   receiver), though messages are handled concurrently: a finished message
//!   waits for the ones that came before it.
//! - **What the store could not take is delivered again.** Its answer says
//!   `store_unavailable` (as over HTTP) and it is not acknowledged; the
//!   processor drops the connection and reconnects after a pause, and the
//!   broker, which redelivers unacknowledged messages only on a new
//!   connection, sends it again.
//! - **A message from a dropped connection is never acknowledged on the
//!   next one.** Packet ids are per connection; each ConnAck starts a new
//!   generation and forgets the old one's pending acks (the broker redelivers
//!   those messages itself).
//! - **Bounded work.** `receive_maximum = mqtt.max_inflight` tells the broker
//!   how many unacknowledged messages it may send; the maximum packet size is
//!   `limits.max_body_bytes` plus headers, so a larger message is dropped by
//!   the broker and never reaches memory here.
//! - **Several processors share the stream** through an MQTT 5 shared
//!   subscription (`$share/{mqtt.share_group}/...`): the broker gives each
//!   message to one member of the group.

mod handle;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};

use crate::api::AppState;
use crate::config::MqttConfig;

/// What `/healthz` and `/metrics` say about the broker link.
#[derive(Debug, Default)]
pub struct LinkHealth {
    /// MQTT ingest is configured.
    pub enabled: AtomicBool,
    /// Connected to the broker now.
    pub connected: AtomicBool,
    /// The last connection error, if the link is down.
    pub last_error: Mutex<Option<String>>,
    /// Messages handled.
    pub messages: std::sync::atomic::AtomicU64,
    /// Times the link went down.
    pub disconnects: std::sync::atomic::AtomicU64,
}

impl LinkHealth {
    fn set(&self, connected: bool, error: Option<String>) {
        self.connected.store(connected, Ordering::Relaxed);
        *self.last_error.lock().expect("mqtt health lock") = error;
    }
}

/// The broker address and options from `mqtt.*`.
fn options(cfg: &MqttConfig, data_dir: &Path, max_body: usize) -> Result<MqttOptions> {
    let url = cfg.url.as_deref().context("mqtt.url is not set")?;
    let (tls, host, port) =
        wattstream_sdk::wire::topics::broker_address(url).map_err(|e| anyhow::anyhow!("mqtt.url {e}"))?;
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| default_client_id(data_dir));
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(cfg.session_expiry_s))
        .set_manual_acks(true)
        .set_receive_maximum(Some(cfg.max_inflight))
        .set_max_packet_size(Some(u32::try_from(max_body + 64 * 1024).unwrap_or(u32::MAX)))
        .set_connection_timeout(10);
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_file {
            Some(path) => wattstream_sdk::fsutil::read_secret(path)
                .with_context(|| format!("mqtt.password_file {}", path.display()))?,
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if tls {
        let config = wattstream_sdk::tls::client_config(cfg.ca.as_deref())?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    } else if cfg.ca.is_some() {
        bail!("mqtt.ca is set but mqtt.url is not mqtts://");
    }
    Ok(o)
}

/// Stable across restarts (so the broker's persistent session, and the
/// messages it holds, are found again) and distinct per data directory.
fn default_client_id(data_dir: &Path) -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("wattstream-{}-{}", host.trim(), &hex::encode(digest)[..12])
}

/// A message being handled, in arrival order.
struct Pending {
    id: u64,
    publish: Publish,
    done: bool,
}

/// Connects to the broker and serves MQTT ingest until `stop` turns true.
/// Connection errors are retried with backoff forever (the broker may start
/// after the processor); only a bad configuration is an error here.
pub fn start(
    cfg: &MqttConfig,
    data_dir: &Path,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let opts = options(cfg, data_dir, state.pipeline.limits.max_body_bytes)?;
    let inflight = usize::from(cfg.max_inflight);
    let (client, mut events) = AsyncClient::new(opts, 2 * inflight + 16);
    let filters = handle::filters(cfg);
    let metrics = state.metrics.clone();
    metrics.mqtt.enabled.store(true, Ordering::Relaxed);
    // Acks go through their own task: `ack().await` waits for room in the
    // client's request queue (result publishes fill it under load), and the
    // loop below must keep polling the connection meanwhile.
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, Publish)>();
    let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acker = {
        let (client, generation) = (client.clone(), generation.clone());
        tokio::spawn(async move {
            while let Some((gen_of, p)) = ack_rx.recv().await {
                // An ack from an earlier connection is dropped: the broker
                // delivers that message again and it comes back a duplicate.
                if gen_of == generation.load(Ordering::SeqCst)
                    && let Err(e) = client.ack(&p).await
                {
                    tracing::debug!(error = %e, "MQTT ack not sent; the broker will deliver again");
                }
            }
        })
    };
    Ok(tokio::spawn(async move {
        let health = &metrics.mqtt;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, bool)>();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut next_id = 0u64;
        let mut failures = 0u32;
        // Store failures in a row: the pause before redelivery grows with them.
        let mut store_failures = 0u32;
        // Set when the connection is left on purpose after a store failure.
        let mut redeliver_after: Option<Duration> = None;
        loop {
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        failures = 0;
                        generation.fetch_add(1, Ordering::SeqCst);
                        // A new connection: the old one's packet ids mean nothing now.
                        pending.clear();
                        // One SUBSCRIBE for every filter, so one SubAck means all hold.
                        let all = filters.iter().map(|f| Filter::new(f.clone(), QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(all) {
                            tracing::error!(error = %e, "MQTT subscribe not queued");
                        }
                        tracing::info!(filters = ?filters, "MQTT connected");
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        // Subscribed (again): from now on nothing published is missed.
                        health.set(true, None);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        next_id += 1;
                        pending.push_back(Pending { id: next_id, publish: p.clone(), done: false });
                        health.messages.fetch_add(1, Ordering::Relaxed);
                        let (state, client, done) = (state.clone(), client.clone(), done_tx.clone());
                        let id = next_id;
                        tokio::spawn(async move {
                            let ack = handle::message(&state, &client, p).await;
                            let _ = done.send((id, ack));
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Acks for this connection's messages can no longer be sent.
                        pending.clear();
                        health.disconnects.fetch_add(1, Ordering::Relaxed);
                        generation.fetch_add(1, Ordering::SeqCst);
                        health.set(false, Some(e.to_string()));
                        failures = failures.saturating_add(1);
                        let delay = match redeliver_after.take() {
                            Some(d) => d,
                            None => {
                                let d = Duration::from_millis(200u64 << failures.min(6)).min(Duration::from_secs(10));
                                tracing::warn!(error = %e, retry_in = ?d, "MQTT broker link down");
                                d
                            }
                        };
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = stop.changed() => break,
                        }
                    }
                },
                Some((id, ack)) = done_rx.recv() => {
                    if !ack && pending.iter().any(|p| p.id == id) {
                        // The store failed: leave the connection (after the
                        // answers already queued, which go out first) so the
                        // broker delivers this message, and those behind it,
                        // again on the next one. Nothing more is acked here.
                        pending.clear();
                        generation.fetch_add(1, Ordering::SeqCst);
                        store_failures = store_failures.saturating_add(1);
                        let delay = Duration::from_millis(200u64 << store_failures.min(6)).min(Duration::from_secs(10));
                        redeliver_after = Some(delay);
                        let _ = client.try_disconnect();
                        tracing::warn!(retry_in = ?delay, "MQTT message not stored: the broker will deliver it again");
                        continue;
                    }
                    if ack {
                        store_failures = 0;
                    }
                    if let Some(p) = pending.iter_mut().find(|p| p.id == id) {
                        p.done = true;
                    }
                    while pending.front().is_some_and(|p| p.done) {
                        let p = pending.pop_front().expect("front exists");
                        let _ = ack_tx.send((generation.load(Ordering::SeqCst), p.publish));
                    }
                }
                _ = stop.changed() => break,
            }
        }
        // Unacknowledged messages stay with the broker for the next start.
        drop(ack_tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), acker).await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(e) = events.poll().await {
                if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        health.set(false, None);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_transport() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |url: &str| MqttConfig {
            url: Some(url.into()),
            ..MqttConfig::default()
        };
        let o = options(&cfg("mqtt://broker.example:1884"), dir.path(), 1000).unwrap();
        assert_eq!(o.broker_address(), ("broker.example".into(), 1884));
        let o = options(&cfg("mqtt://127.0.0.1"), dir.path(), 1000).unwrap();
        assert_eq!(o.broker_address().1, 1883);
        assert!(o.manual_acks() && !o.clean_start());
        assert!(options(&cfg("http://x:1"), dir.path(), 1000).is_err());
        let mut c = cfg("mqtt://x:1");
        c.ca = Some("/nonexistent".into());
        assert!(
            options(&c, dir.path(), 1000).is_err(),
            "a CA without mqtts is a mistake"
        );
    }

    #[test]
    fn the_default_client_id_is_stable_and_differs_per_data_dir() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(default_client_id(a.path()), default_client_id(a.path()));
        assert_ne!(default_client_id(a.path()), default_client_id(b.path()));
    }
}
