//! ring against aws-lc-rs for the processor's one hot primitive, P-256 ECDSA
//! verification (issue 17: "compare aws-lc-rs to ring ... take the faster").
//! The processor verifies with ring; this measures whether switching pays.
//!
//! `cargo run --release --manifest-path scripts/verify-compare/Cargo.toml [-- SECONDS]`
//!
//! Prints verifications per second of each library, on one thread and on
//! every core, in alternating rounds (the machine's speed drifts), and
//! aws-lc-rs with the key parsed once (`ParsedPublicKey`, which ring 0.17
//! does not offer: a processor could keep one per registered device).
//! Before timing, each library must accept the other's signatures and refuse
//! a changed message and a changed signature.

use std::time::{Duration, Instant};

use aws_lc_rs::signature as aws;
use ring::signature as rg;

struct Case {
    public_key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

fn cases(n: usize) -> Vec<Case> {
    let rng = ring::rand::SystemRandom::new();
    (0..n)
        .map(|i| {
            let alg = &rg::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = rg::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
            let key = rg::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
            // The shape of a signed window (DESIGN §2), one per device.
            let message = format!(
                r#"{{"device_id":"meter-{i:05}","seq":{i},"timestamp":1790000000,"sensor_reading":2.{i},"window_s":5}}"#
            )
            .into_bytes();
            let signature = key.sign(&rng, &message).expect("sign").as_ref().to_vec();
            use ring::signature::KeyPair;
            Case { public_key: key.public_key().as_ref().to_vec(), message, signature }
        })
        .collect()
}

fn ring_ok(c: &Case, message: &[u8], signature: &[u8]) -> bool {
    rg::UnparsedPublicKey::new(&rg::ECDSA_P256_SHA256_FIXED, &c.public_key)
        .verify(message, signature)
        .is_ok()
}

fn aws_ok(c: &Case, message: &[u8], signature: &[u8]) -> bool {
    aws::UnparsedPublicKey::new(&aws::ECDSA_P256_SHA256_FIXED, &c.public_key)
        .verify(message, signature)
        .is_ok()
}

/// Verifications per second of `verify` over `cases` on `threads` threads.
fn rate(threads: usize, seconds: f64, cases: &[Case], verify: impl Fn(usize, &Case) + Sync) -> f64 {
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let n: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < deadline {
                        for (i, c) in cases.iter().enumerate() {
                            verify(i, c);
                        }
                        n += cases.len() as u64;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cases = cases(64);
    for c in &cases {
        let mut message = c.message.clone();
        message[10] ^= 1;
        let mut signature = c.signature.clone();
        signature[40] ^= 1;
        assert!(ring_ok(c, &c.message, &c.signature) && aws_ok(c, &c.message, &c.signature));
        assert!(!ring_ok(c, &message, &c.signature) && !aws_ok(c, &message, &c.signature));
        assert!(!ring_ok(c, &c.message, &signature) && !aws_ok(c, &c.message, &signature));
    }
    let parsed: Vec<_> = cases
        .iter()
        .map(|c| {
            aws::ParsedPublicKey::new(&aws::ECDSA_P256_SHA256_FIXED, &c.public_key).expect("a valid key")
        })
        .collect();
    println!(
        "P-256 verifications per second, {cores} cores, {seconds} s a figure; ratio to ring in the same round"
    );
    for round in 1..=3 {
        for threads in [1, cores] {
            let r = rate(threads, seconds, &cases, |_, c| {
                assert!(ring_ok(c, &c.message, &c.signature))
            });
            let a = rate(threads, seconds, &cases, |_, c| {
                assert!(aws_ok(c, &c.message, &c.signature))
            });
            let p = rate(threads, seconds, &cases, |i, c| {
                assert!(parsed[i].verify_sig(&c.message, &c.signature).is_ok())
            });
            println!(
                "round {round}, {threads} thread(s): ring {r:.0}   aws-lc-rs {a:.0} ({:.3})   aws-lc-rs, key parsed once {p:.0} ({:.3})",
                a / r,
                p / r
            );
        }
    }
}
