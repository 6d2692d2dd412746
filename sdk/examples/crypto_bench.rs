//! Signing and verification speed of both paths, on one thread and on every core.
//!
//! `cargo run --release -p wattstream-sdk --example crypto_bench [-- SECONDS]`
//!
//! Prints operations per second. The all-cores verify rate of the fast path is
//! the ceiling the processor's ingest is measured against.

use std::time::{Duration, Instant};

use wattstream_sdk::{DeviceKey, Envelope, Reading, VerifyPath};

fn rate(threads: usize, seconds: f64, work: impl Fn() + Sync) -> f64 {
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < deadline {
                        for _ in 0..64 {
                            work();
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let key = DeviceKey::generate();
    let mut reading = Reading::new(4.21, 1_795_514_493).with_seq(1042);
    reading.window_s = Some(5);
    reading.energy_wh = Some(0.00585);
    reading.samples = Some(50);
    let data = reading.to_json();
    let body = key.sign_reading(&reading);
    let env = Envelope::parse(body.as_bytes()).unwrap();

    println!("WattStream sdk crypto benchmark: {cores} cores, {seconds} s per figure");
    println!(
        "{:<38} {:>14} {:>14}",
        "operation",
        "1 thread /s",
        format!("{cores} threads /s")
    );
    let row = |name: &str, f: &(dyn Fn() + Sync)| {
        let one = rate(1, seconds, f);
        let all = rate(cores, seconds, f);
        println!("{name:<38} {one:>14.0} {all:>14.0}");
    };
    row("sign (p256, RFC 6979)", &|| {
        std::hint::black_box(key.sign(std::hint::black_box(data.as_bytes())));
    });
    for path in VerifyPath::ALL {
        row(&format!("verify {}", path.name()), &|| {
            std::hint::black_box(env.verify(path)).unwrap();
        });
    }
    row("parse envelope (no verify)", &|| {
        std::hint::black_box(Envelope::parse(std::hint::black_box(body.as_bytes())).unwrap());
    });
    for path in VerifyPath::ALL {
        row(&format!("parse + verify {}", path.name()), &|| {
            let e = Envelope::parse(std::hint::black_box(body.as_bytes())).unwrap();
            e.verify(path).unwrap();
        });
    }
}
