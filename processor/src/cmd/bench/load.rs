//! The fleet the ingest benchmarks send as: devices with real P-256 keys and
//! readings signed before the clock starts, so the load generator spends its
//! share of the two cores on sending, not on signing.
//!
//! Every reading must count: unique (a duplicate is no throughput), fresh
//! (not `future_timestamp` nor `stale_timestamp`) and paid, so the applets
//! credit it and the ledger does real work. A device is paid for readings
//! newer than its last paid one and at most `skew_s` (300 s by default) into
//! the processor's future, from its registration less the skew; so each
//! device's readings are spaced evenly over what is left of that span (5 s
//! windows, closer when a run needs more readings per device, never under
//! 1 s), in order, with consecutive sequence numbers. Readings are laid out
//! round-robin over the devices, so a device's next reading is a whole fleet
//! later in the stream and concurrent requests never reorder one device.
//!
//! Signing uses ring (random nonces) instead of the SDK's RFC 6979 signer: it
//! is several times faster, and the processor checks the same signature.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use wattstream_sdk::{DeviceKey, Reading, Signature, envelope_body};

/// How far ahead of the processor's clock a reading may be (`limits.max_future_s`,
/// default), less a margin for the run itself.
const AHEAD_S: u64 = 290;

struct Device {
    pair: EcdsaKeyPair,
    public: wattstream_sdk::PublicKey,
    next_seq: u64,
    /// Timestamp of the newest reading signed so far.
    last_ts: u64,
}

/// A registered fleet and where each device's readings have got to.
pub struct Fleet {
    devices: Vec<Device>,
    /// Readings signed older than their device's paid span (accepted, paid
    /// nothing): only when a run asks for more than fit.
    pub unpaid: u64,
}

impl Fleet {
    /// `n` fresh devices (keys made on every core).
    pub fn new(n: usize) -> anyhow::Result<Fleet> {
        let rng = SystemRandom::new();
        let devices = on_cores(n, |count| {
            (0..count)
                .map(|_| {
                    // The secret is made here, so ring can be given it too.
                    let (secret, key) = loop {
                        let mut secret = [0u8; 32];
                        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                        if let Some(key) = DeviceKey::from_bytes(&secret) {
                            break (secret, key);
                        }
                    };
                    let public = key.public_key().clone();
                    let pair = EcdsaKeyPair::from_private_key_and_public_key(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        secret.as_slice(),
                        public.uncompressed(),
                        &rng,
                    )
                    .map_err(|e| anyhow::anyhow!("ring refused a P-256 key: {e}"))?;
                    Ok(Device {
                        pair,
                        public,
                        next_seq: 1,
                        last_ts: 0,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
        Ok(Fleet { devices, unpaid: 0 })
    }

    /// The public keys, hex, to register.
    pub fn public_keys(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.public.to_hex()).collect()
    }

    /// Signs `total` readings (on every core), round-robin over the devices.
    pub fn sign(&mut self, total: usize) -> Vec<String> {
        let n = self.devices.len().max(1);
        let per_device = total.div_ceil(n) as u64;
        let now = wattstream_sdk::time::unix_now();
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let chunk = n.div_ceil(cores).max(1);
        let rng = SystemRandom::new();
        // Per thread: its devices' readings, by round.
        let parts: Vec<(Vec<Vec<String>>, u64)> = std::thread::scope(|s| {
            self.devices
                .chunks_mut(chunk)
                .map(|devices| {
                    let rng = &rng;
                    s.spawn(move || {
                        let mut rounds = vec![Vec::with_capacity(devices.len()); per_device as usize];
                        let mut unpaid = 0;
                        for d in devices.iter_mut() {
                            let (times, window, late) = schedule(d.last_ts, now, per_device);
                            unpaid += late;
                            for (round, ts) in rounds.iter_mut().zip(times) {
                                round.push(d.sign(ts, window, rng));
                            }
                        }
                        (rounds, unpaid)
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().expect("signer thread"))
                .collect()
        });
        self.unpaid += parts.iter().map(|p| p.1).sum::<u64>();
        let mut out = Vec::with_capacity(total);
        for round in 0..per_device as usize {
            for (rounds, _) in &parts {
                out.extend(rounds[round].iter().cloned());
            }
        }
        out.truncate(total);
        out
    }
}

impl Device {
    fn sign(&mut self, ts: u64, window: u64, rng: &SystemRandom) -> String {
        let mut r = Reading::new(2.0 + (self.next_seq % 5) as f64, ts).with_seq(self.next_seq);
        r.window_s = Some(window as u32);
        self.next_seq += 1;
        self.last_ts = ts;
        let data = r.to_json();
        let sig = self.pair.sign(rng, data.as_bytes()).expect("ring signs");
        let mut fixed = [0u8; 64];
        fixed.copy_from_slice(sig.as_ref());
        envelope_body(&data, &Signature(fixed), &self.public)
    }
}

/// `per_device` timestamps after `last` (0: none yet) up to `AHEAD_S` past
/// `now`, evenly spaced (5 s, or closer, never under 1 s), the window each
/// claims, and how many had to start before the paid span.
fn schedule(last: u64, now: u64, per_device: u64) -> (Vec<u64>, u64, u64) {
    let first = (last + 1).max(now.saturating_sub(AHEAD_S));
    let end = now + AHEAD_S;
    let span = end.saturating_sub(first);
    let step = (span / per_device.max(1)).clamp(1, 5);
    // When even 1 s steps do not fit, the earliest readings go before the
    // paid span: still unique and accepted, paid nothing.
    let start = if step * per_device > span {
        end.saturating_sub(per_device)
    } else {
        first
    };
    let late = first.saturating_sub(start);
    ((0..per_device).map(|i| start + i * step).collect(), step, late)
}

/// Runs `f(count)` on every core, splitting `n` items between them.
fn on_cores<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let chunk = n.div_ceil(cores).max(1);
    std::thread::scope(|s| {
        (0..n)
            .step_by(chunk)
            .map(|at| {
                let f = &f;
                s.spawn(move || f(chunk.min(n - at)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_spaced_inside_the_paid_span_and_in_order() {
        let now = 1_800_000_000;
        let (times, window, late) = schedule(0, now, 50);
        assert_eq!((window, late), (5, 0));
        assert_eq!(times[0], now - AHEAD_S);
        assert!(times.windows(2).all(|w| w[1] == w[0] + 5));
        // A second run continues after the first, closer together.
        let (more, window, late) = schedule(*times.last().unwrap(), now, 200);
        assert_eq!((window, late), (1, 0));
        assert!(more[0] > times[49] && *more.last().unwrap() <= now + AHEAD_S);
        // More than fit: the earliest go before the span, the rest stay in it.
        let (many, _, late) = schedule(0, now, 1000);
        assert_eq!(late, 1000 - 2 * AHEAD_S);
        assert_eq!(*many.last().unwrap(), now + AHEAD_S - 1);
    }

    #[test]
    fn a_fleet_signs_unique_readings_the_processor_accepts() {
        let mut fleet = Fleet::new(3).unwrap();
        let bodies = fleet.sign(7);
        assert_eq!(bodies.len(), 7);
        let mut seen = std::collections::HashSet::new();
        for b in &bodies {
            let env = wattstream_sdk::Envelope::parse(b.as_bytes()).unwrap();
            env.verify(wattstream_sdk::VerifyPath::Fast).unwrap();
            assert!(seen.insert(env.signature().0), "unique");
        }
        // Round-robin: the first three are the three devices.
        let ids: std::collections::HashSet<_> = bodies[..3]
            .iter()
            .map(|b| wattstream_sdk::Envelope::parse(b.as_bytes()).unwrap().device_id())
            .collect();
        assert_eq!(ids.len(), 3);
    }
}
