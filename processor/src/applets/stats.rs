//! Per-applet call counts and recent call times, for the dashboard's applets
//! page (`GET /v1/projects/{p}/applets` answers them beside each applet).
//! Prometheus gets the counts too, but its histogram is one for all applets;
//! an operator looking for the slow applet needs each one's p99.
//!
//! Times are kept in two HdrHistograms per applet that take turns every
//! [`TURN`]: the percentiles cover the last one to two turns, so an applet
//! that was slow an hour ago and is fast now shows as fast. Memory is
//! bounded by the applets deployed (a few KiB each).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// How long each of the two histograms collects before it is cleared.
pub const TURN: Duration = Duration::from_secs(300);

struct Slot {
    ok: u64,
    failed: u64,
    last_failure: Option<u64>,
    /// Microseconds: `[current, previous]`.
    times: [Histogram<u64>; 2],
    turned: Instant,
}

impl Slot {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid bounds");
        Slot {
            ok: 0,
            failed: 0,
            last_failure: None,
            times: [h(), h()],
            turned: Instant::now(),
        }
    }

    fn turn(&mut self, now: Instant) {
        if now.duration_since(self.turned) >= TURN {
            self.times.swap(0, 1);
            self.times[0].reset();
            if now.duration_since(self.turned) >= 2 * TURN {
                self.times[1].reset();
            }
            self.turned = now;
        }
    }
}

/// One applet's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Calls since the processor started.
    pub ok: u64,
    pub failed: u64,
    /// When the last failure happened, Unix seconds.
    pub last_failure: Option<u64>,
    /// Over the last five to ten minutes (`null` without calls in them).
    pub recent_calls: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Every applet's figures, by (project, applet).
#[derive(Default)]
pub struct AppletStats {
    slots: Mutex<BTreeMap<(String, String), Slot>>,
}

impl AppletStats {
    /// One call.
    pub fn record(&self, project: &str, applet: &str, ok: bool, took: Duration) {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("stats lock");
        let slot = slots
            .entry((project.to_string(), applet.to_string()))
            .or_insert_with(Slot::new);
        slot.turn(now);
        if ok {
            slot.ok += 1;
        } else {
            slot.failed += 1;
            slot.last_failure = Some(crate::pipeline::unix_now());
        }
        slot.times[0].saturating_record((took.as_micros() as u64).max(1));
    }

    /// The figures of `project`'s applets, by name.
    pub fn of(&self, project: &str) -> BTreeMap<String, Figures> {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("stats lock");
        slots
            .iter_mut()
            .filter(|((p, _), _)| p == project)
            .map(|((_, a), s)| {
                s.turn(now);
                let mut both = s.times[0].clone();
                both.add(&s.times[1]).expect("same bounds");
                let n = both.len();
                let ms = |q: f64| (n > 0).then(|| both.value_at_quantile(q) as f64 / 1000.0);
                (
                    a.clone(),
                    Figures {
                        ok: s.ok,
                        failed: s.failed,
                        last_failure: s.last_failure,
                        recent_calls: n,
                        p50_ms: ms(0.5),
                        p99_ms: ms(0.99),
                        max_ms: (n > 0).then(|| both.max() as f64 / 1000.0),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_per_applet_and_per_project() {
        let s = AppletStats::default();
        for i in 1..=100u64 {
            s.record("p", "slow", true, Duration::from_millis(i));
        }
        s.record("p", "slow", false, Duration::from_millis(1));
        s.record("p", "fast", true, Duration::from_micros(50));
        s.record("q", "slow", true, Duration::from_secs(9));
        let f = s.of("p");
        assert_eq!(f.len(), 2);
        let slow = &f["slow"];
        assert_eq!((slow.ok, slow.failed, slow.recent_calls), (100, 1, 101));
        assert!(slow.last_failure.is_some());
        let p99 = slow.p99_ms.unwrap();
        assert!((98.0..=100.5).contains(&p99), "{p99}");
        assert!((slow.max_ms.unwrap() - 100.0).abs() < 1.0);
        assert!(f["fast"].p99_ms.unwrap() < 0.06);
        assert!(s.of("q")["slow"].p50_ms.unwrap() > 8000.0);
        assert!(s.of("none").is_empty());
    }

    #[test]
    fn old_times_leave_after_two_turns() {
        let mut slot = Slot::new();
        slot.times[0].record(5000).unwrap();
        let t0 = slot.turned;
        slot.turn(t0 + TURN);
        assert_eq!((slot.times[0].len(), slot.times[1].len()), (0, 1));
        slot.turn(t0 + TURN * 2);
        assert_eq!((slot.times[0].len(), slot.times[1].len()), (0, 0));
        slot.times[0].record(7).unwrap();
        slot.turn(t0 + TURN * 5);
        assert_eq!(
            (slot.times[0].len(), slot.times[1].len()),
            (0, 0),
            "a long pause clears both"
        );
    }
}
