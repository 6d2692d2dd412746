//! The two ingest figures a fleet relies on, against a real `wattstream serve`:
//!
//! 1. **Sustained throughput to the ledger.** An event counts only when it was
//!    accepted (not a duplicate), its applets have run and its credits are
//!    ledger entries: the ledger head's `through_event` has reached it. The
//!    load is closed-loop on that: requests go out as fast as the processor
//!    takes them while the backlog (accepted events the ledger has not
//!    reached) stays under a bound, and wait while it does not. So the rate
//!    found is the one the whole pipeline keeps up with, whichever stage is
//!    slowest; acknowledgements cannot run ahead of the applets. The clock
//!    stops when the ledger reaches the last accepted event, so the drain is
//!    part of the figure.
//! 2. **Open-loop latency.** Requests are due on a fixed schedule, each sent
//!    at its time on its own task whether or not earlier ones have answered,
//!    and timed from when it was due (a stall delays everything due during it,
//!    and all of that counts: no coordinated omission), into an HdrHistogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use wattstream_sdk::client::{EventStatus, ProcessorClient};

/// What a sustained run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Sustained {
    /// Events accepted and through the ledger.
    pub events: u64,
    /// From the first request until the ledger reached the last event.
    pub seconds: f64,
    pub events_per_s: f64,
    /// Accepted events per second while sending (to the acknowledgement).
    pub acknowledged_per_s: f64,
    /// Seconds from the last acknowledgement until the ledger reached it.
    pub drain_s: f64,
    /// Largest backlog seen (accepted, not yet through the ledger).
    pub max_backlog: i64,
    /// The signed readings ran out before the time was up.
    pub ran_out: bool,
}

/// Sends `bodies` in requests of `batch` over `connections` for `seconds`,
/// keeping at most `backlog` accepted events ahead of the ledger, then waits
/// for the ledger to reach the last one.
pub async fn sustained(
    url: &str,
    bodies: Vec<String>,
    batch: usize,
    connections: usize,
    seconds: f64,
    backlog: i64,
) -> Result<Sustained> {
    let head = ProcessorClient::new(url, None, Duration::from_secs(60))?;
    let floor = head.ledger_head().await?.through_event.unwrap_or(0);
    let requests: std::collections::VecDeque<Vec<String>> =
        bodies.chunks(batch).map(<[String]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let newest = Arc::new(AtomicI64::new(floor));
    let accepted = Arc::new(AtomicU64::new(0));
    let (tx, through) = tokio::sync::watch::channel(floor);
    // The ledger's progress, every 20 ms.
    let poller = tokio::spawn(async move {
        loop {
            if let Ok(h) = head.ledger_head().await
                && let Some(t) = h.through_event
            {
                tx.send_if_modified(|v| std::mem::replace(v, t) != t);
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let max_backlog = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = ProcessorClient::new(url, None, Duration::from_secs(60))?;
        let (queue, newest, accepted, max_backlog) = (
            queue.clone(),
            newest.clone(),
            accepted.clone(),
            max_backlog.clone(),
        );
        let mut through = through.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                // Wait while the ledger is too far behind.
                loop {
                    let ahead = newest.load(Ordering::Relaxed) - *through.borrow_and_update();
                    max_backlog.fetch_max(ahead, Ordering::Relaxed);
                    if ahead <= backlog {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, through.changed()).await.is_err() {
                        return Ok(());
                    }
                }
                let Some(req) = queue.lock().expect("queue").pop_front() else {
                    // Faster than planned: the run ends early (reported).
                    return Ok(());
                };
                let results = client.post_events(&req).await?;
                for r in &results {
                    match (r.status, r.event_id) {
                        (EventStatus::Accepted, Some(id)) => {
                            newest.fetch_max(id, Ordering::Relaxed);
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => anyhow::bail!(
                            "the processor did not accept a benchmark reading: {:?} {:?}",
                            r.status,
                            r.reason
                        ),
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sent = start.elapsed().as_secs_f64();
    let ran_out = queue.lock().expect("queue").is_empty() && sent < seconds;
    let last = newest.load(Ordering::Relaxed);
    let mut through = through.clone();
    tokio::time::timeout(Duration::from_secs(600), through.wait_for(|t| *t >= last))
        .await
        .context("the ledger did not reach the last event within 10 minutes")??;
    let elapsed = start.elapsed().as_secs_f64();
    poller.abort();
    let events = accepted.load(Ordering::Relaxed);
    Ok(Sustained {
        events,
        seconds: elapsed,
        events_per_s: events as f64 / elapsed,
        acknowledged_per_s: events as f64 / sent,
        drain_s: elapsed - sent,
        max_backlog: max_backlog.load(Ordering::Relaxed),
        ran_out,
    })
}

/// Open-loop latency figures, milliseconds from each request's due time.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub requests: u64,
    pub events_per_request: usize,
    pub offered_per_s: f64,
    /// Requests that were not all accepted (counted in the latency too).
    pub failed: u64,
}

/// Sends `bodies` in requests of `batch`, request `i` due at `i * batch /
/// rate` seconds, each on its own task.
pub async fn open_loop(url: &str, bodies: Vec<String>, batch: usize, rate: f64) -> Result<OpenLoop> {
    let client = ProcessorClient::new(url, None, Duration::from_secs(60))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let failed = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for (i, req) in bodies.chunks(batch).map(<[String]>::to_vec).enumerate() {
        let due = start + Duration::from_secs_f64((i * batch) as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (client, failed) = (client.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let ok = client
                .post_events(&req)
                .await
                .map(|rs| rs.iter().all(|r| r.status == EventStatus::Accepted));
            if !matches!(ok, Ok(true)) {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            due.elapsed()
        }));
    }
    for t in tasks {
        let took = t.await?;
        hist.saturating_record(took.as_micros().max(1) as u64);
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    Ok(OpenLoop {
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1e3,
        requests: hist.len(),
        events_per_request: batch,
        offered_per_s: rate,
        failed: failed.load(Ordering::Relaxed),
    })
}
