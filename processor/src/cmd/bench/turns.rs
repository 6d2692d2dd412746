//! Where the open-loop run's latency went, in the processor's own words: its
//! account of the store's write lock (`/metrics`,
//! `wattstream_store_turn_{wait,held}_seconds` by writer), read before and
//! after the run and subtracted. A p99 made of waits behind the ledger's
//! pages shows as ingest groups that waited long and the share of the run
//! the ledger held the lock; a p99 with quiet turns lies elsewhere (CPU, the
//! network, the load generator).

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::Serialize;
use wattstream_sdk::client::ProcessorClient;

/// The turn series of one `/metrics` answer: series (with labels) -> value.
#[derive(Debug, Default)]
pub struct Snapshot(HashMap<String, f64>);

/// Reads the processor's turn metrics.
pub async fn scrape(processor: &ProcessorClient) -> Result<Snapshot> {
    let text = processor.get_text("/metrics").await.context("GET /metrics")?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Snapshot {
    Snapshot(
        text.lines()
            .filter(|l| l.starts_with("wattstream_store_turn_"))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    )
}

/// What the turns did between two snapshots.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreTurns {
    /// Ingest groups committed, how many waited more than 5 and 25 ms for
    /// their turn, and how many then held the lock (wrote and committed)
    /// more than 5 and 25 ms.
    pub ingest_groups: u64,
    pub ingest_waited_over_5ms: u64,
    pub ingest_waited_over_25ms: u64,
    pub ingest_held_over_5ms: u64,
    pub ingest_held_over_25ms: u64,
    /// The ledger's turns (pages), how many held the lock more than 25 ms,
    /// and the seconds they held it in all.
    pub ledger_turns: u64,
    pub ledger_held_over_25ms: u64,
    pub ledger_held_s: f64,
    /// The checkpoint thread's turns (tries to restart the store's WAL), how
    /// many held the lock more than 25 ms, and the seconds they held it.
    pub restart_turns: u64,
    pub restart_held_over_25ms: u64,
    pub restart_held_s: f64,
}

impl StoreTurns {
    pub fn between(before: &Snapshot, after: &Snapshot) -> StoreTurns {
        let d = |key: String| {
            let v = |s: &Snapshot| s.0.get(&key).copied().unwrap_or(0.0);
            (v(after) - v(before)).max(0.0)
        };
        let count = |m: &str, w: &str| {
            d(format!(
                "wattstream_store_turn_{m}_seconds_count{{writer=\"{w}\"}}"
            ))
        };
        let within = |m: &str, w: &str, le: &str| {
            d(format!(
                "wattstream_store_turn_{m}_seconds_bucket{{writer=\"{w}\",le=\"{le}\"}}"
            ))
        };
        let over = |m: &str, w: &str, le: &str| (count(m, w) - within(m, w, le)) as u64;
        StoreTurns {
            ingest_groups: count("wait", "ingest") as u64,
            ingest_waited_over_5ms: over("wait", "ingest", "0.005"),
            ingest_waited_over_25ms: over("wait", "ingest", "0.025"),
            ingest_held_over_5ms: over("held", "ingest", "0.005"),
            ingest_held_over_25ms: over("held", "ingest", "0.025"),
            ledger_turns: count("held", "ledger") as u64,
            ledger_held_over_25ms: over("held", "ledger", "0.025"),
            ledger_held_s: d("wattstream_store_turn_held_seconds_sum{writer=\"ledger\"}".into()),
            restart_turns: count("held", "checkpoint") as u64,
            restart_held_over_25ms: over("held", "checkpoint", "0.025"),
            restart_held_s: d("wattstream_store_turn_held_seconds_sum{writer=\"checkpoint\"}".into()),
        }
    }

    /// One line for the report, over a run of `seconds`.
    pub fn line(&self, seconds: f64) -> String {
        format!(
            "the store's write lock meanwhile (the processor's /metrics): {} ingest groups, {} waited > 5 ms and {} > 25 ms for a turn, {} held it > 5 ms and {} > 25 ms; the ledger held it {:.0} % of the time in {} turns, {} of them > 25 ms; restarts of the WAL held it {:.0} ms in {} turns, {} of them > 25 ms",
            self.ingest_groups,
            self.ingest_waited_over_5ms,
            self.ingest_waited_over_25ms,
            self.ingest_held_over_5ms,
            self.ingest_held_over_25ms,
            self.ledger_held_s / seconds.max(1e-9) * 100.0,
            self.ledger_turns,
            self.ledger_held_over_25ms,
            self.restart_held_s * 1e3,
            self.restart_turns,
            self.restart_held_over_25ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use wattstream_processor::metrics::Metrics;
    use wattstream_processor::metrics::turns::TurnOf;

    /// The bench reads what the processor renders: a change to either side
    /// that breaks the other fails here.
    #[test]
    fn the_difference_of_two_renders_counts_the_turns_between_them() {
        let m = Arc::new(Metrics::default());
        m.turns.record_wait(TurnOf::Ingest, 0.030);
        m.turns.record_held(TurnOf::Ledger, 0.040);
        let before = parse(&m.render());
        for wait in [0.0002, 0.006, 0.030] {
            m.turns.record_wait(TurnOf::Ingest, wait);
        }
        m.turns.record_wait(TurnOf::Ledger, 0.001);
        for held in [0.001, 0.007, 0.008, 0.040] {
            m.turns.record_held(TurnOf::Ingest, held);
        }
        for held in [0.004, 0.030] {
            m.turns.record_held(TurnOf::Ledger, held);
        }
        for held in [0.002, 0.026, 0.003] {
            m.turns.record_held(TurnOf::Checkpoint, held);
        }
        let t = StoreTurns::between(&before, &parse(&m.render()));
        assert_eq!(
            (
                t.ingest_groups,
                t.ingest_waited_over_5ms,
                t.ingest_waited_over_25ms
            ),
            (3, 2, 1)
        );
        assert_eq!((t.ingest_held_over_5ms, t.ingest_held_over_25ms), (3, 1));
        assert_eq!((t.ledger_turns, t.ledger_held_over_25ms), (2, 1));
        assert!((t.ledger_held_s - 0.034).abs() < 1e-6, "{}", t.ledger_held_s);
        assert_eq!((t.restart_turns, t.restart_held_over_25ms), (3, 1));
        assert!((t.restart_held_s - 0.031).abs() < 1e-6, "{}", t.restart_held_s);
        let line = t.line(0.34);
        assert!(line.contains("held it 10 % of the time in 2 turns"), "{line}");
        assert!(
            line.contains("restarts of the WAL held it 31 ms in 3 turns, 1 of them > 25 ms"),
            "{line}"
        );
    }
}
