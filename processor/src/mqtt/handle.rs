//! One MQTT message: which topic form it came on, what runs, what is answered.
//!
//! 1. `wattstream/v1/devices/{device_id}/events`: the payload is what `POST
//!    /v1/events` takes (an envelope or a JSON array of them) and goes through
//!    the same pipeline, with one more rule: every envelope must be signed by
//!    `{device_id}` (`topic_mismatch`). The answer, the JSON the HTTP endpoint
//!    would return, is published on `.../{device_id}/results` (QoS 1, with the
//!    request's MQTT 5 correlation data) after the commit.
//! 2. W3bstream v1's form: the topic is the project name and the payload
//!    W3bstream's event JSON, `{"header": {"event_type", "pub_id", "token",
//!    "pub_time", "event_id"}, "payload": BASE64}` (W3bstream's
//!    `pkg/modules/mq` unmarshals exactly that, with Go's base64 for bytes).
//!    The token must be one of the project's publisher tokens; the payload
//!    runs through the project's applets like W3bstream's HTTP path. W3bstream
//!    answers nothing on MQTT, and neither does this; failures are logged.
//!
//! [`message`] returns whether the message may be acknowledged: every path
//! returns only once its effects are durable (or there are none), and a
//! message the store could not take is *not* acknowledged (its answer says
//! `store_unavailable`, as over HTTP), so the broker delivers it again.

use std::sync::Arc;

use base64::Engine;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use serde::Deserialize;
use wattstream_sdk::wire::topics;

use crate::api::AppState;
use crate::config::MqttConfig;

/// The subscriptions: every device's events, and W3bstream's project topics.
pub fn filters(cfg: &MqttConfig) -> Vec<String> {
    let group = &cfg.share_group;
    let mut f = vec![format!("$share/{group}/{}", topics::ALL_EVENTS)];
    if cfg.w3bstream_topics {
        // W3bstream's topic is the bare project name: one level.
        f.push(format!("$share/{group}/+"));
    }
    f
}

/// W3bstream v1's event message (`eventpb.Event` as JSON).
#[derive(Deserialize)]
struct W3bEvent {
    #[serde(default)]
    header: W3bHeader,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize, Default)]
struct W3bHeader {
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    token: String,
}

/// Handles one message; returns `true` when it may be acknowledged, `false`
/// when the store failed and the broker must deliver it again.
pub async fn message(state: &Arc<AppState>, client: &AsyncClient, p: Publish) -> bool {
    let Ok(topic) = std::str::from_utf8(&p.topic) else {
        tracing::warn!("MQTT message on a topic that is not UTF-8: dropped");
        return true;
    };
    if p.payload.len() > state.pipeline.limits.max_body_bytes {
        tracing::warn!(
            topic,
            bytes = p.payload.len(),
            "MQTT message over limits.max_body_bytes: dropped"
        );
        state.metrics.record_event("rejected", "too_large");
        return true;
    }
    if let Some(device) = topics::device_of_events(topic) {
        let result = state.pipeline.ingest_for(&p.payload, Some(device)).await;
        let stored = !matches!(result, Err(crate::pipeline::IngestError::Store(_)));
        let (_, body) = crate::api::events::answer(state, result);
        let props = PublishProperties {
            correlation_data: p.properties.as_ref().and_then(|pr| pr.correlation_data.clone()),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        if let Err(e) = client
            .publish_with_properties(topics::results(device), QoS::AtLeastOnce, false, body, props)
            .await
        {
            tracing::error!(error = %e, device, "MQTT result not published");
        }
        stored
    } else if !topic.contains('/') && !topic.is_empty() {
        w3bstream(state, topic, &p.payload).await;
        true
    } else {
        tracing::debug!(
            topic,
            "MQTT message on a topic this processor does not serve: dropped"
        );
        true
    }
}

async fn w3bstream(state: &Arc<AppState>, project: &str, payload: &[u8]) {
    if state.projects.get(project).is_none() {
        // `+` catches every one-level topic on the broker; only projects count.
        tracing::debug!(
            project,
            "MQTT message on a one-level topic that is no project: dropped"
        );
        return;
    }
    let event: W3bEvent = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(project, error = %e, "W3bstream MQTT message is not an event JSON: dropped");
            return;
        }
    };
    let data = match base64::engine::general_purpose::STANDARD.decode(event.payload.as_bytes()) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(project, error = %e, "W3bstream MQTT payload is not base64: dropped");
            return;
        }
    };
    if let Err(e) = crate::api::w3bstream::authorize(state, project, &event.header.token).await {
        tracing::warn!(project, reason = e.reason, "W3bstream MQTT message refused");
        return;
    }
    let event_type = if event.header.event_type.is_empty() {
        "DEFAULT".to_string()
    } else {
        event.header.event_type
    };
    match crate::api::w3bstream::run(state, project, event_type, data).await {
        Ok(answer) => tracing::debug!(project, %answer, "W3bstream MQTT event handled"),
        Err(e) => {
            tracing::warn!(project, reason = e.reason, detail = %e.detail, "W3bstream MQTT event failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscription_is_shared_by_the_group() {
        let cfg = MqttConfig::default();
        let f = filters(&cfg);
        assert_eq!(f[0], "$share/wattstream/wattstream/v1/devices/+/events");
        assert_eq!(f[1], "$share/wattstream/+");
        let off = MqttConfig {
            w3bstream_topics: false,
            ..MqttConfig::default()
        };
        assert_eq!(filters(&off).len(), 1);
    }

    #[test]
    fn w3bstream_event_json_parses_as_go_writes_it() {
        let text = r#"{"header":{"event_type":"DATA","pub_id":"p1","token":"t","pub_time":1700000000000},"payload":"aGVsbG8="}"#;
        let e: W3bEvent = serde_json::from_str(text).unwrap();
        assert_eq!(e.header.event_type, "DATA");
        assert_eq!(e.header.token, "t");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(e.payload)
                .unwrap(),
            b"hello"
        );
    }
}
