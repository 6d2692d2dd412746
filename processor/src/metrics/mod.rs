//! Counters and histograms for `GET /metrics`, in Prometheus text format. Kept
//! small and dependency-free: a few mutex-guarded maps and fixed-bucket
//! histograms, updated once per request or per commit, never per byte.

mod health;
mod histogram;
pub mod turns;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use health::WorkerHealth;
use histogram::Histogram;

/// All the processor's metrics.
pub struct Metrics {
    /// The applet worker's health (also in `/healthz`).
    pub worker: WorkerHealth,
    /// Turns at the store's write lock ([`crate::store::turns`]).
    pub turns: turns::TurnTimes,
    events: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// (claim|transfer, recorded or the refusal reason) -> requests.
    onboarding: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    commit_events: Histogram,
    commit_seconds: Histogram,
    commit_failures: AtomicU64,
    commit_retries: AtomicU64,
    /// (project, applet, outcome) -> calls.
    applet_calls: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// (project, applet) -> wasm instances made (fewer than calls when kept).
    applet_instances: Mutex<BTreeMap<(String, String), u64>>,
    applet_seconds: Histogram,
    /// (project, applet, key) -> sum of the numbers applets submitted.
    applet_metrics: Mutex<BTreeMap<(String, String, String), f64>>,
    /// Per-applet counts and recent times (the dashboard's applets page).
    pub applet_stats: crate::applets::stats::AppletStats,
    /// The MQTT broker link (also in `/healthz`).
    pub mqtt: crate::mqtt::LinkHealth,
    /// (chain id, what happened to a transaction) -> times (`chain::sender`).
    chain_txs: Mutex<BTreeMap<(u64, &'static str), u64>>,
    /// chain id -> intents not yet confirmed or given up.
    chain_open: Mutex<BTreeMap<u64, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            worker: WorkerHealth::default(),
            turns: turns::TurnTimes::default(),
            events: Mutex::default(),
            onboarding: Mutex::default(),
            requests: Mutex::default(),
            commit_events: Histogram::new(&[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0]),
            commit_seconds: Histogram::new(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0]),
            commit_failures: AtomicU64::new(0),
            commit_retries: AtomicU64::new(0),
            applet_calls: Mutex::default(),
            applet_instances: Mutex::default(),
            applet_seconds: Histogram::new(&[0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.1, 1.0]),
            applet_metrics: Mutex::default(),
            applet_stats: Default::default(),
            mqtt: crate::mqtt::LinkHealth::default(),
            chain_txs: Mutex::default(),
            chain_open: Mutex::default(),
        }
    }
}

impl Metrics {
    /// One envelope's outcome: status `accepted`/`duplicate`/`rejected`, and the
    /// rejection reason (empty otherwise).
    pub fn record_event(&self, status: &'static str, reason: &'static str) {
        *self
            .events
            .lock()
            .expect("metrics lock")
            .entry((status, reason))
            .or_default() += 1;
    }

    /// One claim or transfer: `recorded`, or the reason it was refused.
    pub fn record_onboarding(&self, what: &'static str, outcome: &'static str) {
        *self
            .onboarding
            .lock()
            .expect("metrics lock")
            .entry((what, outcome))
            .or_default() += 1;
    }

    /// One HTTP request.
    pub fn record_request(&self, method: &'static str, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method, route.to_string(), status))
            .or_default() += 1;
    }

    /// One group commit of `events` events that took `took`.
    pub fn record_commit(&self, events: usize, took: Duration) {
        self.commit_events.observe(events as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// A group commit that failed and was rolled back.
    pub fn record_commit_failure(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A group commit that the engine aborted (a lost connection, a
    /// deadlock) and that is tried again.
    pub fn record_commit_retry(&self) {
        self.commit_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Group commits rolled back, and group commits tried again.
    pub fn commit_trouble(&self) -> (u64, u64) {
        (
            self.commit_failures.load(Ordering::Relaxed),
            self.commit_retries.load(Ordering::Relaxed),
        )
    }

    /// A wasm instance made for a call.
    pub fn record_applet_instance(&self, project: &str, applet: &str) {
        *self
            .applet_instances
            .lock()
            .expect("metrics lock")
            .entry((project.to_string(), applet.to_string()))
            .or_default() += 1;
    }

    /// One applet call.
    pub fn record_applet(&self, project: &str, applet: &str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "failed" };
        *self
            .applet_calls
            .lock()
            .expect("metrics lock")
            .entry((project.to_string(), applet.to_string(), outcome))
            .or_default() += 1;
        self.applet_seconds.observe(took.as_secs_f64());
        self.applet_stats.record(project, applet, ok, took);
    }

    /// What an applet passed to `ws_submit_metrics`: numeric fields are summed.
    pub fn record_applet_metrics(&self, project: &str, applet: &str, object: &serde_json::Value) {
        let Some(map) = object.as_object() else { return };
        let mut m = self.applet_metrics.lock().expect("metrics lock");
        for (k, v) in map.iter().take(32) {
            let valid =
                !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if let (true, Some(x)) = (valid, v.as_f64()) {
                *m.entry((project.to_string(), applet.to_string(), k.clone()))
                    .or_default() += x;
            }
        }
    }

    /// A chain sender's step: `signed`, `broadcast`, `confirmed`,
    /// `reverted`, `retried`, `failed`, `replaced`, `broadcast_failed`,
    /// `pass_failed`.
    pub fn record_chain_tx(&self, chain: u64, what: &'static str) {
        *self
            .chain_txs
            .lock()
            .expect("metrics lock")
            .entry((chain, what))
            .or_default() += 1;
    }

    /// Intents of `chain` not yet confirmed or given up.
    pub fn set_chain_open(&self, chain: u64, open: u64) {
        self.chain_open.lock().expect("metrics lock").insert(chain, open);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP wattstream_events_total Envelopes processed, by outcome and rejection reason.\n",
        );
        out.push_str("# TYPE wattstream_events_total counter\n");
        for ((status, reason), n) in self.events.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_events_total{{status=\"{status}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP wattstream_onboarding_total Claims and transfers, by outcome (recorded or the refusal reason).\n",
        );
        out.push_str("# TYPE wattstream_onboarding_total counter\n");
        for ((what, outcome), n) in self.onboarding.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_onboarding_total{{request=\"{what}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP wattstream_http_requests_total HTTP requests, by method, route and status.\n");
        out.push_str("# TYPE wattstream_http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        self.commit_events.render(
            &mut out,
            "wattstream_commit_batch_events",
            "Events per group commit.",
        );
        self.commit_seconds.render(
            &mut out,
            "wattstream_commit_seconds",
            "Group commit latency, seconds.",
        );
        let _ = writeln!(
            out,
            "# HELP wattstream_commit_failures_total Group commits rolled back.\n# TYPE wattstream_commit_failures_total counter\nwattstream_commit_failures_total {}",
            self.commit_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wattstream_commit_retries_total Group commits the engine aborted and that were tried again.\n# TYPE wattstream_commit_retries_total counter\nwattstream_commit_retries_total {}",
            self.commit_retries.load(Ordering::Relaxed)
        );
        out.push_str("# HELP wattstream_applet_calls_total Applet calls by project, applet and outcome.\n");
        out.push_str("# TYPE wattstream_applet_calls_total counter\n");
        for ((p, a, o), n) in self.applet_calls.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_applet_calls_total{{project=\"{p}\",applet=\"{a}\",outcome=\"{o}\"}} {n}"
            );
        }
        out.push_str("# HELP wattstream_applet_instances_total Wasm instances made for applet calls (fewer than the calls for a stateless applet).\n# TYPE wattstream_applet_instances_total counter\n");
        for ((p, a), n) in self.applet_instances.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_applet_instances_total{{project=\"{p}\",applet=\"{a}\"}} {n}"
            );
        }
        out.push_str("# HELP wattstream_chain_transactions_total Applet transactions by chain and step (signed, broadcast, confirmed, reverted, retried, failed, ...).\n");
        out.push_str("# TYPE wattstream_chain_transactions_total counter\n");
        for ((chain, what), n) in self.chain_txs.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_chain_transactions_total{{chain=\"{chain}\",step=\"{what}\"}} {n}"
            );
        }
        out.push_str("# HELP wattstream_chain_outbox_open Applet transactions not yet confirmed or given up, by chain.\n");
        out.push_str("# TYPE wattstream_chain_outbox_open gauge\n");
        for (chain, n) in self.chain_open.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "wattstream_chain_outbox_open{{chain=\"{chain}\"}} {n}");
        }
        self.turns.render(&mut out);
        self.applet_seconds.render(
            &mut out,
            "wattstream_applet_call_seconds",
            "Applet call duration, seconds.",
        );
        let w = &self.worker;
        let _ = writeln!(
            out,
            "# HELP wattstream_applet_worker_lag_events Stored events the applet worker has not run yet.\n# TYPE wattstream_applet_worker_lag_events gauge\nwattstream_applet_worker_lag_events {}",
            w.lag()
        );
        let _ = writeln!(
            out,
            "# HELP wattstream_applet_worker_restarts_total Times the supervisor restarted the applet worker after a panic.\n# TYPE wattstream_applet_worker_restarts_total counter\nwattstream_applet_worker_restarts_total {}",
            w.restarts()
        );
        if let Some(age) = w.since_beat() {
            let _ = writeln!(
                out,
                "# HELP wattstream_applet_worker_heartbeat_age_seconds Seconds since the applet worker last made progress.\n# TYPE wattstream_applet_worker_heartbeat_age_seconds gauge\nwattstream_applet_worker_heartbeat_age_seconds {:.3}",
                age.as_secs_f64()
            );
        }
        out.push_str(
            "# HELP wattstream_applet_metric Sums of the numbers applets submitted with ws_submit_metrics.\n",
        );
        out.push_str("# TYPE wattstream_applet_metric counter\n");
        for ((p, a, k), v) in self.applet_metrics.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "wattstream_applet_metric{{project=\"{p}\",applet=\"{a}\",name=\"{k}\"}} {v}"
            );
        }
        if self.mqtt.enabled.load(Ordering::Relaxed) {
            let _ = write!(
                out,
                "# HELP wattstream_mqtt_connected 1 while subscribed at the MQTT broker.\n# TYPE wattstream_mqtt_connected gauge\n\
                 wattstream_mqtt_connected {}\n\
                 # HELP wattstream_mqtt_messages_total MQTT messages handled (then acknowledged).\n# TYPE wattstream_mqtt_messages_total counter\n\
                 wattstream_mqtt_messages_total {}\n\
                 # HELP wattstream_mqtt_disconnects_total Times the broker link went down.\n# TYPE wattstream_mqtt_disconnects_total counter\n\
                 wattstream_mqtt_disconnects_total {}\n",
                u8::from(self.mqtt.connected.load(Ordering::Relaxed)),
                self.mqtt.messages.load(Ordering::Relaxed),
                self.mqtt.disconnects.load(Ordering::Relaxed),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.record_event("rejected", "bad_signature");
        m.record_event("rejected", "bad_signature");
        m.record_commit(7, Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("wattstream_events_total{status=\"rejected\",reason=\"bad_signature\"} 2"));
        assert!(text.contains("wattstream_commit_batch_events_bucket{le=\"5\"} 0"));
        assert!(text.contains("wattstream_commit_batch_events_bucket{le=\"10\"} 1"));
        assert!(text.contains("wattstream_commit_seconds_count 1"));
    }
}
