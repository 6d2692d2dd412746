//! The ingest part of `wattstream bench`: the signature-verification limit,
//! a real `wattstream serve` child process, envelopes signed on every core, and
//! a load generator over HTTP that reports throughput and latency.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use wattstream_sdk::client::{EventStatus, ProcessorClient};
use wattstream_sdk::{DeviceKey, Reading};

use super::procfs;

/// Raw P-256 verification on the fast path: one thread and all cores.
pub fn verify_limit(seconds: f64) -> (f64, f64) {
    use wattstream_sdk::{Envelope, VerifyPath};
    let key = DeviceKey::from_bytes(&[9; 32]).expect("valid key");
    let body = key.sign_reading(&Reading::new(4.2, 1_795_514_495).with_seq(1));
    let env = Envelope::parse(body.as_bytes()).expect("parses");
    let rate = |threads: usize| {
        let start = Instant::now();
        let deadline = Duration::from_secs_f64(seconds);
        let total: u64 = std::thread::scope(|s| {
            (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0u64;
                        while start.elapsed() < deadline {
                            for _ in 0..64 {
                                std::hint::black_box(env.verify(VerifyPath::Fast)).expect("verifies");
                            }
                            n += 64;
                        }
                        n
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .sum()
        });
        total as f64 / start.elapsed().as_secs_f64()
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (rate(1), rate(cores))
}

/// Latency figures, milliseconds.
#[derive(Debug, Serialize, Clone, Copy)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(
                ((samples.len() as f64 * q).ceil() as usize)
                    .saturating_sub(1)
                    .min(samples.len().saturating_sub(1)),
            )
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Latency {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    }
}

/// A `wattstream serve` process under test.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts the sibling `wattstream` binary on a fresh data directory, with
    /// more `serve` arguments.
    pub fn start_with(data_dir: &Path, token: &str, extra: &[&std::ffi::OsStr]) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let exe = std::env::current_exe()?;
        let mut child = std::process::Command::new(exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                token,
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            // As `systemd/wattstream.service` runs it (see there).
            .env(
                "MALLOC_ARENA_MAX",
                std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow::anyhow!("the processor did not start: {line:?}"))?
            .to_string();
        Ok(ServerProcess { child, url })
    }

    /// CPU time and memory now, from /proc.
    pub fn usage_now(&self) -> procfs::Usage {
        procfs::usage(self.child.id())
    }

    /// CPU seconds used so far and peak RSS (KiB), from /proc.
    pub fn usage(&self) -> (f64, u64) {
        let u = procfs::usage(self.child.id());
        (u.cpu_s, u.peak_kib)
    }
}

impl ServerProcess {
    /// Waits (up to `limit`) until the processor is idle: its applet worker and
    /// ledger have caught up with what was ingested.
    pub fn wait_idle(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            let (a, _) = self.usage();
            std::thread::sleep(Duration::from_millis(500));
            if self.usage().0 - a < 0.025 {
                return;
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs `per_device` envelopes for each key, seq `first..`, on every core,
/// timestamped a minute ago plus 5 s per seq: fresh (not `stale_timestamp`)
/// and paid (the keys were registered moments ago, within the clock skew).
pub fn envelopes(keys: &[DeviceKey], first: u64, per_device: u64) -> Vec<String> {
    let base = wattstream_sdk::time::unix_now() - 60;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = keys.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        keys.chunks(chunk)
            .map(|ks| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(ks.len() * per_device as usize);
                    for seq in first..first + per_device {
                        for k in ks {
                            let mut r = Reading::new(2.0 + (seq % 5) as f64, base + seq * 5).with_seq(seq);
                            r.window_s = Some(5);
                            out.push(k.sign_reading(&r));
                        }
                    }
                    out
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    })
}

/// Sends `bodies` in batches of `batch` over `connections` concurrent clients;
/// when `rate` is set, paces requests to that many events per second overall.
pub async fn send(
    url: &str,
    bodies: Vec<String>,
    batch: usize,
    connections: usize,
    rate: Option<f64>,
) -> anyhow::Result<(f64, Latency)> {
    let requests: Vec<Vec<String>> = bodies.chunks(batch).map(<[String]>::to_vec).collect();
    let total_events = bodies.len();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(
        requests
            .into_iter()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let queue = queue.clone();
        let client = ProcessorClient::new(url, None, Duration::from_secs(60))?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let next = queue.lock().expect("queue").pop_front();
                let Some((i, req)) = next else { break };
                if let Some(r) = rate {
                    let due = start + Duration::from_secs_f64((i * batch) as f64 / r);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                let ok = if req.len() == 1 {
                    client
                        .post_event(&req[0])
                        .await
                        .map(|r| r.status != EventStatus::Rejected)
                } else {
                    client
                        .post_events(&req)
                        .await
                        .map(|rs| rs.iter().all(|r| r.status != EventStatus::Rejected))
                };
                lat.push(t.elapsed());
                if !ok.map_err(|e| anyhow::anyhow!("{e}"))? {
                    anyhow::bail!("the processor rejected a benchmark envelope");
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((total_events as f64 / elapsed, latency(all)))
}
