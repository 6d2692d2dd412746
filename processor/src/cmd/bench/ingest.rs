//! What the ingest parts of `wattstream bench` stand on: the
//! signature-verification limit, latency percentiles, and a real
//! `wattstream serve` child process.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
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

/// Where a benchmark processor's log goes: beside its data directory.
pub fn log_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.with_extension("log")
}

/// A `wattstream serve` process under test.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts the sibling `wattstream` binary on a fresh data directory, with
    /// more `serve` arguments; its warnings go to [`log_path`].
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
            // `WATTSTREAM_BENCH_LOG=wattstream_processor=debug` to see more.
            .env(
                "RUST_LOG",
                std::env::var("WATTSTREAM_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // As `systemd/wattstream.service` runs it (see there).
            .env(
                "MALLOC_ARENA_MAX",
                std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into()),
            )
            .stdout(std::process::Stdio::piped())
            // Its log beside its data, for when a run goes wrong.
            .stderr(std::fs::File::create(log_path(data_dir))?)
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
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
