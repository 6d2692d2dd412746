//! `wattstream bench --soak SECONDS`: a fleet held at a steady load for a long
//! time, to show what a short run cannot: whether the processor's memory grows
//! with the events it has taken, and what a meter's rewards query costs while
//! ingest, the applets, accrual and sealing all run.
//!
//! The load is open-loop: batches of readings are due on a fixed schedule (the
//! fleet's own rate, one 5 s window per meter, or `--soak-rate`), signed as
//! they are due (timestamp = now, so every reading is fresh and paid), and sent
//! over several connections; a late batch is counted late, never skipped.
//! Every device polls its rewards once a minute, spread evenly. The processor
//! seals an epoch a minute, so proofs come from a tree that keeps changing.
//! RSS is sampled every 5 s; its slope against the events accepted is a
//! least-squares fit over the second half of the run (the first half includes
//! caches and allocator arenas filling).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use wattstream_sdk::client::{EventStatus, ProcessorClient};
use wattstream_sdk::{DeviceKey, Reading};

use super::ingest::{Latency, ServerProcess, latency};

/// What the soak is run with.
pub struct Plan {
    pub seconds: u64,
    /// Events per second.
    pub rate: f64,
    pub connections: usize,
    /// The processor's data directory (its size per event is the disk use).
    pub data_dir: std::path::PathBuf,
    /// The PostgreSQL store, when the processor runs on one (its database's
    /// size is then the disk use).
    pub store: Option<String>,
}

/// Runs the soak against `server` (devices registered, applets deployed).
pub fn soak(
    server: &ServerProcess,
    rt: &tokio::runtime::Runtime,
    keys: Vec<DeviceKey>,
    plan: &Plan,
) -> Result<Value> {
    let keys = Arc::new(keys);
    let accepted = Arc::new(AtomicU64::new(0));
    let seqs: Arc<Vec<AtomicU64>> = Arc::new((0..keys.len()).map(|_| AtomicU64::new(1_000)).collect());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(plan.seconds);
    let batch = 100usize;
    let batches = (plan.rate * plan.seconds as f64 / batch as f64) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let (rss, queries, ingest) = rt.block_on(async {
        // Ingest: each connection takes the next due batch, waits for its
        // scheduled time, signs it and sends it.
        let mut senders = Vec::new();
        for _ in 0..plan.connections {
            let client = ProcessorClient::new(&server.url, None, Duration::from_secs(60))?;
            let (keys, seqs, next, accepted) = (keys.clone(), seqs.clone(), next.clone(), accepted.clone());
            let rate = plan.rate;
            senders.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        return Ok::<_, anyhow::Error>(lat);
                    }
                    let due = start + Duration::from_secs_f64((i * batch as u64) as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let now = wattstream_sdk::time::unix_now();
                    let bodies: Vec<String> = (0..batch as u64)
                        .map(|j| {
                            let d = ((i * batch as u64 + j) % keys.len() as u64) as usize;
                            let seq = seqs[d].fetch_add(1, Ordering::Relaxed);
                            let mut r = Reading::new(2.0 + (seq % 5) as f64, now).with_seq(seq);
                            r.window_s = Some(5);
                            keys[d].sign_reading(&r)
                        })
                        .collect();
                    let results = client.post_events(&bodies).await?;
                    lat.push(due.elapsed());
                    let ok = results
                        .iter()
                        .filter(|r| r.status == EventStatus::Accepted)
                        .count();
                    accepted.fetch_add(ok as u64, Ordering::Relaxed);
                }
            }));
        }
        // Rewards: every device once a minute, spread evenly, each query on
        // its own task (meters do not wait for one another).
        let poller = {
            let client = ProcessorClient::new(&server.url, None, Duration::from_secs(60))?;
            let ids: Vec<String> = keys.iter().map(|k| k.device_id().to_string()).collect();
            tokio::spawn(async move {
                let mut queries = Vec::new();
                let every = Duration::from_secs_f64(60.0 / ids.len().max(1) as f64);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for id in ids.iter().cycle() {
                    let due = tick.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    let (client, id) = (client.clone(), id.clone());
                    queries.push(tokio::spawn(async move {
                        client.rewards(&id).await?;
                        Ok::<_, anyhow::Error>(due.elapsed())
                    }));
                }
                let mut lat = Vec::new();
                for q in queries {
                    lat.push(q.await??);
                }
                Ok::<_, anyhow::Error>(lat)
            })
        };
        // RSS against events accepted, every 5 s.
        let mut rss = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        while Instant::now() < deadline {
            tick.tick().await;
            let kib = server.usage_now().rss_kib;
            rss.push((
                start.elapsed().as_secs_f64(),
                accepted.load(Ordering::Relaxed),
                kib,
            ));
        }
        let mut ingest = Vec::new();
        for s in senders {
            ingest.extend(s.await??);
        }
        let queries = poller.await??;
        Ok::<_, anyhow::Error>((rss, queries, ingest))
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let events = accepted.load(Ordering::Relaxed);
    let slope = rss_slope(&rss[rss.len() / 2..]);
    let (first, last) = (rss.first().map_or(0, |r| r.2), rss.last().map_or(0, |r| r.2));
    let q = latency(queries.clone());
    let i = latency(ingest.clone());
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "   {events} events accepted in {elapsed:.0} s ({:.0}/s offered {:.0}/s), {} rewards queries",
        events as f64 / elapsed,
        plan.rate,
        queries.len()
    );
    println!(
        "   processor RSS {:.1} MB at 5 s, {:.1} MB at the end; slope {slope:.2} MB per million events (target ~ 0)",
        mb(first),
        mb(last)
    );
    let bytes = match &plan.store {
        None => dir_bytes(&plan.data_dir),
        Some(url) => rt.block_on(database_bytes(url))?,
    };
    let per_event = bytes as f64 / events.max(1) as f64;
    // A meter sends a 5 s window: 17,280 a day.
    let gb_per_1000_day = per_event * 17_280.0 * 1000.0 / 1e9;
    println!(
        "   disk: {:.0} MB for {events} events = {per_event:.0} bytes per event = {gb_per_1000_day:.1} GB per 1,000 meters per day (before retention)",
        bytes as f64 / 1e6
    );
    let mut files = files_under(&plan.data_dir);
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let top: Vec<String> = files
        .iter()
        .take(4)
        .map(|(f, n)| format!("{f} {:.0} MB", *n as f64 / 1e6))
        .collect();
    println!("   largest files: {}", top.join(", "));
    print_latency("rewards query", &q, 20.0);
    print_latency("ingest batch of 100, from its scheduled time", &i, 25.0);
    Ok(json!({
        "seconds": elapsed, "offered_per_s": plan.rate, "accepted": events,
        "rss_mb": {"start": mb(first), "end": mb(last), "slope_mb_per_million_events": slope,
                    "samples": rss.iter().map(|r| json!([r.0, r.1, mb(r.2)])).collect::<Vec<_>>()},
        "rewards_query": q, "rewards_queries": queries.len(), "ingest_batch": i,
        "disk": {"bytes": bytes, "bytes_per_event": per_event, "gb_per_1000_meters_per_day": gb_per_1000_day},
    }))
}

/// Bytes in the files under `dir` (the store, its WAL, project databases).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    files_under(dir).iter().map(|f| f.1).sum()
}

/// Every file under `dir` (path relative to it) with its size.
fn files_under(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => {
                    let rel = e
                        .path()
                        .strip_prefix(dir)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    out.push((rel, m.len()));
                }
                Err(_) => {}
            }
        }
    }
    out
}

fn print_latency(what: &str, l: &Latency, target_ms: f64) {
    println!(
        "   {what}: p50 {:.2} ms  p99 {:.2} ms (target <= {target_ms} ms: ratio {:.2})  max {:.2} ms",
        l.p50_ms,
        l.p99_ms,
        l.p99_ms / target_ms,
        l.max_ms
    );
}

/// Least-squares slope of RSS (MB) over accepted events (millions).
fn rss_slope(samples: &[(f64, u64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let xs: Vec<f64> = samples.iter().map(|s| s.1 as f64 / 1e6).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.2 as f64 / 1024.0).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if den == 0.0 { f64::NAN } else { num / den }
}

/// `pg_database_size` of the store's database.
async fn database_bytes(url: &str) -> Result<u64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let n: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_slope_is_megabytes_per_million_events() {
        // 1 MiB more per 100k events: 10 MB per million.
        let s: Vec<(f64, u64, u64)> = (0..10)
            .map(|i| (i as f64, i * 100_000, 50_000 + i * 1024))
            .collect();
        assert!((super::rss_slope(&s) - 10.0).abs() < 1e-9);
        let flat: Vec<(f64, u64, u64)> = (0..10).map(|i| (i as f64, i * 100_000, 50_000)).collect();
        assert_eq!(super::rss_slope(&flat), 0.0);
    }
}
