//! The meter's MQTT link (`processor = "mqtt://..."` or `"mqtts://..."`): an
//! outbox batch is published on the device's events topic and counts as
//! delivered only when the processor's answer arrives on the device's results
//! topic, never on the broker's PUBACK (the broker holding a message is not
//! the processor storing it).
//!
//! - Each request carries MQTT 5 correlation data; an answer is matched to
//!   its request by it, so a late answer to an earlier try (already given up
//!   on) cannot be taken for the answer to this one.
//! - The session is clean: while the meter is away, answers it would miss are
//!   not needed, because an unanswered batch stays in the outbox and is sent
//!   again (the processor answers `duplicate` for what it already has).
//! - Requests are made only while connected and subscribed to the results
//!   topic; otherwise the uplink backs off as it does over HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::oneshot;
use wattstream_sdk::wire::topics;

/// Broker credentials and trust, from `[mqtt]` and `tls_ca`.
#[derive(Debug, Clone, Default)]
pub struct MqttSettings {
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// Why a request over MQTT got no answer.
#[derive(Debug, Clone)]
pub struct LinkDown {
    pub text: String,
    /// The broker's certificate is not trusted.
    pub untrusted: bool,
}

type Waiting = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<Vec<u8>>>>>;

/// A connection to the broker, kept up by a background task.
#[derive(Clone)]
pub struct MqttLink {
    client: AsyncClient,
    events_topic: String,
    results_topic: String,
    ready: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<LinkDown>>>,
    waiting: Waiting,
    next: Arc<AtomicU64>,
    timeout: Duration,
}

fn parse_url(url: &str) -> Result<(bool, String, u16)> {
    topics::broker_address(url).map_err(anyhow::Error::msg)
}

fn password(path: Option<&Path>) -> Result<String> {
    match path {
        Some(p) => wattstream_sdk::fsutil::read_secret(p)
            .with_context(|| format!("mqtt.password_file {}", p.display())),
        None => Ok(String::new()),
    }
}

impl MqttLink {
    /// Starts connecting (in the background, retrying forever) as `device_id`.
    pub fn start(url: &str, device_id: &str, settings: &MqttSettings, timeout: Duration) -> Result<Self> {
        let (tls, host, port) = parse_url(url)?;
        // The device id is the client id: the broker's ACL can tie the
        // login to the topics of that one device.
        let mut o = MqttOptions::new(device_id, host, port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_connection_timeout(timeout.as_secs().max(1));
        if let Some(user) = &settings.username {
            o.set_credentials(user.clone(), password(settings.password_file.as_deref())?);
        }
        if tls {
            let config = wattstream_sdk::tls::client_config(settings.ca.as_deref())?;
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        } else if settings.ca.is_some() {
            bail!("tls_ca is set but the processor URL {url:?} is not mqtts:// or https://");
        }
        let (client, mut events) = AsyncClient::new(o, 64);
        let link = MqttLink {
            client: client.clone(),
            events_topic: topics::events(device_id),
            results_topic: topics::results(device_id),
            ready: Arc::default(),
            last_error: Arc::new(Mutex::new(Some(LinkDown {
                text: "connecting to the broker".into(),
                untrusted: false,
            }))),
            waiting: Arc::default(),
            next: Arc::default(),
            timeout,
        };
        let (ready, last_error, waiting, results) = (
            link.ready.clone(),
            link.last_error.clone(),
            link.waiting.clone(),
            link.results_topic.clone(),
        );
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        failures = 0;
                        if let Err(e) = client.try_subscribe(results.clone(), QoS::AtLeastOnce) {
                            tracing::error!(error = %e, "MQTT subscribe not queued");
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        ready.store(true, Ordering::SeqCst);
                        *last_error.lock().expect("mqtt lock") = None;
                        tracing::info!(topic = %results, "MQTT link up");
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let corr = p.properties.and_then(|pr| pr.correlation_data);
                        if let Some(tx) =
                            corr.and_then(|c| waiting.lock().expect("mqtt lock").remove(c.as_ref()))
                        {
                            let _ = tx.send(p.payload.to_vec());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        ready.store(false, Ordering::SeqCst);
                        let problem = wattstream_sdk::tls::certificate_problem(&e);
                        let down = LinkDown {
                            untrusted: problem.is_some(),
                            text: problem.unwrap_or_else(|| format!("broker unreachable: {e}")),
                        };
                        if down.untrusted {
                            tracing::error!(error = %down.text, "the broker's TLS certificate is refused; check tls_ca");
                        } else {
                            tracing::debug!(error = %e, "MQTT link down");
                        }
                        *last_error.lock().expect("mqtt lock") = Some(down);
                        failures = failures.saturating_add(1);
                        let delay =
                            Duration::from_millis(250u64 << failures.min(7)).min(Duration::from_secs(30));
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
        Ok(link)
    }

    /// Publishes `payload` and waits for the processor's answer.
    pub async fn request(&self, payload: String) -> Result<Vec<u8>, LinkDown> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err(self
                .last_error
                .lock()
                .expect("mqtt lock")
                .clone()
                .unwrap_or(LinkDown {
                    text: "broker unreachable".into(),
                    untrusted: false,
                }));
        }
        let corr = format!(
            "{:x}-{:x}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
        .into_bytes();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("mqtt lock").insert(corr.clone(), tx);
        let props = PublishProperties {
            correlation_data: Some(corr.clone().into()),
            response_topic: Some(self.results_topic.clone()),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        let sent = self
            .client
            .publish_with_properties(self.events_topic.clone(), QoS::AtLeastOnce, false, payload, props)
            .await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(self.timeout, rx).await,
            Err(e) => {
                self.waiting.lock().expect("mqtt lock").remove(&corr);
                return Err(LinkDown {
                    text: format!("publish failed: {e}"),
                    untrusted: false,
                });
            }
        };
        self.waiting.lock().expect("mqtt lock").remove(&corr);
        match answer {
            Ok(Ok(bytes)) => Ok(bytes),
            _ => Err(LinkDown {
                text: format!("no answer from the processor within {} s", self.timeout.as_secs()),
                untrusted: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_url_is_required() {
        assert!(parse_url("https://h").is_err());
        assert_eq!(parse_url("mqtts://h").unwrap().2, 8883);
    }
}
