//! What happened just now, for whoever watches (the dashboard's live stream,
//! `GET /v1/stream`): each reading as its commit becomes durable, each batch
//! of credits as it enters the ledger, each seal as it is signed.
//!
//! A `tokio::sync::broadcast` channel: publishing never waits and never
//! fails, so ingest and the ledger do not slow down for a slow viewer. A
//! viewer that falls more than [`CAPACITY`] events behind is told it lagged
//! (and reloads what it shows) rather than holding memory for it. Nothing is
//! published for a duplicate or a rejected envelope, and nothing before its
//! commit: what a viewer sees is in the store.
//!
//! Each event is serialized once, into the SSE frame every viewer gets, and
//! not at all while nobody watches: ingest pays nothing for the dashboard
//! until one is open.

use std::sync::Arc;

use axum::body::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind before it is told it lagged.
pub const CAPACITY: usize = 4096;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A reading was stored.
    Reading {
        device_id: String,
        event_id: i64,
        /// The reading's own time, Unix seconds.
        timestamp: u64,
        /// Mean power over the window, watts.
        w: f64,
    },
    /// Credits entered the ledger.
    Ledger { credits: usize },
    /// An epoch was sealed.
    Seal { epoch: u64 },
}

impl LiveEvent {
    /// The device the event is about (`None`: the whole fleet).
    pub fn device(&self) -> Option<&str> {
        match self {
            LiveEvent::Reading { device_id, .. } => Some(device_id),
            LiveEvent::Ledger { .. } | LiveEvent::Seal { .. } => None,
        }
    }

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Reading { .. } => "reading",
            LiveEvent::Ledger { .. } => "ledger",
            LiveEvent::Seal { .. } => "seal",
        }
    }
}

/// An event as the stream sends it.
#[derive(Debug)]
pub struct Frame {
    /// The device it is about (`None`: the whole fleet).
    pub device: Option<String>,
    /// `event: NAME\ndata: JSON\n\n`.
    pub bytes: Bytes,
}

impl Frame {
    /// A frame named `name` carrying `data` (one line of JSON).
    pub fn new(name: &str, data: &str, device: Option<String>) -> Frame {
        Frame {
            device,
            bytes: Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        }
    }
}

/// The publishing side; clones share one channel.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<Arc<Frame>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Live {
    /// Tells every subscriber; with none, does nothing (not even serialize).
    pub fn publish(&self, event: LiveEvent) {
        if !self.watched() {
            return;
        }
        let data = serde_json::to_string(&event).expect("a live event serializes");
        let frame = Frame::new(event.name(), &data, event.device().map(str::to_string));
        let _ = self.tx.send(Arc::new(frame));
    }

    /// Whether anyone is subscribed (callers skip building events otherwise).
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A new subscriber, seeing what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged_and_publishing_never_blocks() {
        let live = Live::default();
        live.publish(LiveEvent::Seal { epoch: 99 }); // nobody watches: dropped
        let mut rx = live.subscribe();
        for epoch in 0..(CAPACITY as u64 + 10) {
            live.publish(LiveEvent::Seal { epoch });
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        let next = rx.recv().await.unwrap();
        assert_eq!(
            &next.bytes[..],
            b"event: seal\ndata: {\"kind\":\"seal\",\"epoch\":10}\n\n"
        );
        assert_eq!(next.device, None);
    }

    #[test]
    fn a_reading_names_its_device() {
        let live = Live::default();
        let mut rx = live.subscribe();
        live.publish(LiveEvent::Reading {
            device_id: "ab".into(),
            event_id: 7,
            timestamp: 5,
            w: 2.5,
        });
        let f = rx.try_recv().unwrap();
        assert_eq!(f.device.as_deref(), Some("ab"));
        assert!(
            std::str::from_utf8(&f.bytes)
                .unwrap()
                .starts_with("event: reading\ndata: {")
        );
    }
}
