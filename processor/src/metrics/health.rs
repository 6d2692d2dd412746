//! The applet worker's health, shared by `/metrics` and `/healthz`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the applet worker is doing: a heartbeat per applet call and per
/// loop, how many stored events it has not run yet, how often its
/// supervisor restarted it.
#[derive(Default)]
pub struct WorkerHealth {
    beat_ms: AtomicU64,
    lag: AtomicU64,
    restarts: AtomicU64,
}

impl WorkerHealth {
    pub fn beat(&self) {
        self.beat_ms
            .store(wattstream_sdk::time::unix_now_ms(), Ordering::Relaxed);
    }

    /// Time since the last heartbeat (`None` before the first).
    pub fn since_beat(&self) -> Option<Duration> {
        match self.beat_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(
                wattstream_sdk::time::unix_now_ms().saturating_sub(ms),
            )),
        }
    }

    pub fn set_lag(&self, events: u64) {
        self.lag.store(events, Ordering::Relaxed);
    }

    /// Stored events the worker has not run yet.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}
