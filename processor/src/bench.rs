//! `wattstream bench`: figures printed, never asserted. This part measures the
//! applet runtime: microseconds per event for a trivial applet and for each
//! example applet (fresh instance, limits, savepoint, call, effects), and bare
//! instantiations per second.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use wattstream_sdk::{DeviceKey, Reading};

use crate::applets::db::ProjectDb;
use crate::applets::runner::device_env;
use crate::applets::runtime::Runtime;
use crate::applets::state::{AppletLimits, EventInput};
use wattstream_abi::LEDGER_TOKEN;

/// The smallest applet that follows the ABI.
pub const TRIVIAL_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "start") (param i32) (result i32) (i32.const 0)))"#;

/// One applet's figures.
#[derive(Debug, Serialize)]
pub struct AppletFigure {
    pub applet: String,
    pub us_per_event: f64,
    pub events_per_s: f64,
    pub runs: u64,
}

/// Runs `wasm` repeatedly for about `seconds`; µs per event.
pub fn applet_overhead(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    seconds: f64,
) -> anyhow::Result<AppletFigure> {
    let applet = runtime.compile(wasm)?;
    let key = DeviceKey::from_bytes(&[7; 32]).expect("valid key");
    let id = key.device_id().to_string();
    let mut db = Some(ProjectDb::open(None, Duration::from_millis(100))?);
    let limits = AppletLimits::default();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut runs, mut busy) = (0u64, Duration::ZERO);
    while Instant::now() < deadline || runs < 100 {
        let mut r = Reading::new(2.0 + (runs % 7) as f64, 1_795_514_495 + runs * 5).with_seq(runs);
        r.window_s = Some(5);
        let input = EventInput {
            rid: 1,
            payload: key.sign_reading(&r).into_bytes(),
            event_type: "DATA".into(),
            env: device_env(&id, Some("bench"), "active", runs as i64),
            token: LEDGER_TOKEN.into(),
            seed: runs,
            time_ns: 0,
        };
        let started = Instant::now();
        let (outcome, back) = runtime.run(&applet, "start", input, db.take().expect("db"), &limits);
        busy += started.elapsed();
        db = Some(back);
        if !outcome.ok() {
            anyhow::bail!(
                "{name} failed in the benchmark: {:?} {:?}",
                outcome.code,
                outcome.error
            );
        }
        runs += 1;
    }
    let us = busy.as_secs_f64() * 1e6 / runs as f64;
    Ok(AppletFigure {
        applet: name.to_string(),
        us_per_event: us,
        events_per_s: 1e6 / us,
        runs,
    })
}

/// The applet part of the benchmark: the trivial applet and every `.wasm` in `dist`.
pub fn applets(dist: &Path, seconds: f64) -> anyhow::Result<Vec<AppletFigure>> {
    let runtime = Runtime::new(None)?;
    let mut out = vec![applet_overhead(
        &runtime,
        "trivial (WAT)",
        TRIVIAL_WAT.as_bytes(),
        seconds,
    )?];
    let mut files: Vec<_> = std::fs::read_dir(dist)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for path in files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(applet_overhead(&runtime, &name, &std::fs::read(&path)?, seconds)?);
    }
    Ok(out)
}

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

fn latency(mut samples: Vec<Duration>) -> Latency {
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

/// One ingest run.
#[derive(Debug, Serialize)]
pub struct IngestFigure {
    pub batch: usize,
    pub events: usize,
    pub events_per_s: f64,
    pub latency: Latency,
    /// `events_per_s` over the all-cores verification rate.
    pub ratio_to_verify_limit: f64,
}

/// A `wattstream serve` process under test.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts the sibling `wattstream` binary on a fresh data directory.
    pub fn start(data_dir: &Path, token: &str) -> anyhow::Result<Self> {
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
            .env("RUST_LOG", "warn")
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

    /// CPU seconds used so far and peak RSS (KiB), from /proc.
    pub fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
            })
            .unwrap_or(0.0);
        let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("VmHWM:")
                        .map(|v| v.trim().trim_end_matches(" kB").parse().ok())
                })?
            })
            .unwrap_or(0);
        (ticks / 100.0, hwm)
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

/// Signs `per_device` envelopes for each key, seq `first..`, on every core.
pub fn envelopes(keys: &[DeviceKey], first: u64, per_device: u64) -> Vec<String> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = keys.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        keys.chunks(chunk)
            .map(|ks| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(ks.len() * per_device as usize);
                    for seq in first..first + per_device {
                        for k in ks {
                            let mut r =
                                Reading::new(2.0 + (seq % 5) as f64, 1_795_500_000 + seq * 5).with_seq(seq);
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
    use wattstream_sdk::client::ProcessorClient;
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
                    client.post_event(&req[0]).await.map(|r| r.status != "rejected")
                } else {
                    client
                        .post_events(&req)
                        .await
                        .map(|rs| rs.iter().all(|r| r.status != "rejected"))
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
