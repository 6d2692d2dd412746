//! How this process's writers share the store's write lock
//! ([`crate::store::turns`]): per writer, how long each turn waited for the
//! lock and how long it then held it. An open-loop tail made of lock waits
//! shows here, in every run and in production, without a special build; and
//! `wattstream bench` reads it to say where its latency went.

use super::histogram::{Histogram, header};

/// Who took a turn at the store's write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOf {
    /// The ingest writer's group commit.
    Ingest,
    /// A ledger page (accrual) or another rewards write.
    Ledger,
    /// The checkpoint thread starting the WAL again from its beginning
    /// ([`crate::store::checkpoint`]).
    Checkpoint,
    /// A batch of old events deleted by retention ([`crate::retention`]).
    Retention,
}

impl TurnOf {
    const ALL: [TurnOf; 4] = [
        TurnOf::Ingest,
        TurnOf::Ledger,
        TurnOf::Checkpoint,
        TurnOf::Retention,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TurnOf::Ingest => "ingest",
            TurnOf::Ledger => "ledger",
            TurnOf::Checkpoint => "checkpoint",
            TurnOf::Retention => "retention",
        }
    }
}

/// Seconds: the ledger's pages are sized to a few milliseconds of lock
/// (`rewards.page_lock_ms`), a group commit to well under that.
const BOUNDS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Per writer: waits for a turn, and the lock held during one.
pub struct TurnTimes {
    waited: [Histogram; 4],
    held: [Histogram; 4],
}

impl Default for TurnTimes {
    fn default() -> Self {
        TurnTimes {
            waited: std::array::from_fn(|_| Histogram::new(BOUNDS)),
            held: std::array::from_fn(|_| Histogram::new(BOUNDS)),
        }
    }
}

impl TurnTimes {
    pub fn record_wait(&self, who: TurnOf, seconds: f64) {
        self.waited[who as usize].observe(seconds);
    }

    pub fn record_held(&self, who: TurnOf, seconds: f64) {
        self.held[who as usize].observe(seconds);
    }

    pub fn render(&self, out: &mut String) {
        for (name, help, hists) in [
            (
                "wattstream_store_turn_wait_seconds",
                "Waits for a turn at the store's write lock, by writer (ingest groups, ledger pages, WAL restarts, retention's batches), seconds.",
                &self.waited,
            ),
            (
                "wattstream_store_turn_held_seconds",
                "The store's write lock held during a turn, by writer, seconds.",
                &self.held,
            ),
        ] {
            header(out, name, help);
            for who in TurnOf::ALL {
                hists[who as usize].render_series(out, name, &format!("writer=\"{}\"", who.label()));
            }
        }
    }
}
