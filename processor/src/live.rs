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

/// The publishing side; clones share one channel.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Live {
    /// Tells every subscriber (none listening is fine).
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.tx.send(event);
    }

    /// A new subscriber, seeing what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// How many are subscribed now.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged_and_publishing_never_blocks() {
        let live = Live::default();
        let mut rx = live.subscribe();
        for epoch in 0..(CAPACITY as u64 + 10) {
            live.publish(LiveEvent::Seal { epoch });
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        assert_eq!(rx.recv().await.unwrap(), LiveEvent::Seal { epoch: 10 });
    }
}
