//! The meter's view of its rewards: it fetches the processor's answer now and
//! then and decides what it may show. The balance is "verified" only for a
//! proof of this meter's own address, from a recent seal signed by the pinned
//! processor key; the proven balance and what was earned since (pending) are
//! kept apart, so the screen never shows an unproven amount as proven.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use wattstream_sdk::client::{ProcessorClient, RewardsView};
use wattstream_sdk::state::{ProofStatus, RewardsState};
use wattstream_sdk::time::unix_now_ms as unix_ms;

/// Fetches `GET /v1/devices/{id}/rewards` every `every`.
pub async fn poll_rewards(
    client: ProcessorClient,
    device: wattstream_sdk::DeviceId,
    pinned: Option<wattstream_sdk::PublicKey>,
    rewards: Arc<Mutex<RewardsState>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    let mut proven_before = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match client.rewards(&device.to_string()).await {
            Ok(answer) => {
                let now = unix_ms() / 1000;
                let (proof, proven) = proof_status(&answer, pinned.as_ref(), &device.0, now, proven_before);
                proven_before |= proven.is_some();
                let tokens = |units: u128| units as f64 / 1e18;
                let mut r = rewards.lock().expect("rewards lock");
                r.balance = Some(answer.balance);
                r.rate_per_h = Some(answer.rate_per_h);
                r.proof = proof;
                r.proven = proven.map(tokens);
                r.pending = proven.map(|p| tokens(answer.balance_units().unwrap_or(p).saturating_sub(p)));
                r.updated_at = Some(now);
            }
            Err(e) => tracing::debug!(error = %e, "rewards not available"),
        }
    }
}

/// The meter's verdict on a rewards answer, and the balance it proves.
/// `verified` only when the seal is signed by the pinned key, the proof is for
/// this meter's own address and leads to the seal's root, and the seal is at
/// most two epochs old; `unverified` when there is nothing to check (no key
/// pinned, no seal yet, or no leaf for this meter yet); `mismatch` otherwise —
/// including a proof missing once this meter has had one.
pub fn proof_status(
    answer: &RewardsView,
    pinned: Option<&wattstream_sdk::PublicKey>,
    own: &[u8; 20],
    now: u64,
    proven_before: bool,
) -> (ProofStatus, Option<u128>) {
    let (Some(key), Some(seal)) = (pinned, &answer.latest_epoch) else {
        return (ProofStatus::Unverified, None);
    };
    let mismatch = |why: &dyn std::fmt::Display| {
        tracing::warn!(error = %why, "the processor's rewards proof does not check");
        (ProofStatus::Mismatch, None)
    };
    let Some(proof) = &answer.proof else {
        return if proven_before {
            mismatch(&"a sealed epoch but no proof for this meter, which had one before")
        } else {
            (ProofStatus::Unverified, None)
        };
    };
    if answer.epoch_s == 0 {
        return mismatch(&"the processor does not say its epoch length");
    }
    match wattstream_sdk::proof::verify_own(seal, proof, key, own, now / answer.epoch_s) {
        Ok(balance) => (ProofStatus::Verified, Some(balance)),
        Err(e) => mismatch(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattstream_sdk::DeviceKey;
    use wattstream_sdk::proof::{leaf_hash, seal_message};
    use wattstream_sdk::wire::{ProofView, SealView};

    /// Now, in epoch 8 of 3600 s: the answers' seal (epoch 7) is one epoch old.
    const NOW: u64 = 8 * 3600 + 10;

    /// A one-device seal: the root is the device's leaf.
    fn answer(processor: &DeviceKey, device: [u8; 20], balance: u128, claimed: u128) -> RewardsView {
        let root = leaf_hash(&device, balance, balance, 7);
        let sig = processor.sign(&seal_message(7, 3, &[9; 32], &root));
        RewardsView {
            device_id: hex_of(&device),
            balance: 1.0,
            balance_units: balance.to_string(),
            rate_per_h: 0.0,
            latest_epoch: Some(SealView {
                epoch: 7,
                upto_seq: 3,
                head: hex_of(&[9; 32]),
                root: hex_of(&root),
                signature: sig.to_hex(),
                public_key: processor.public_key().to_hex(),
            }),
            proof: Some(ProofView {
                address: format!("0x{}", hex_of(&device)),
                epoch_total: claimed.to_string(),
                balance: claimed.to_string(),
                steps: vec![],
            }),
            epoch_s: 3600,
        }
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn the_state_says_whether_the_rewards_proof_checks() {
        let processor = DeviceKey::generate();
        let pinned = processor.public_key().clone();
        let me = [1; 20];
        let check =
            |a: &RewardsView, key: Option<&wattstream_sdk::PublicKey>| proof_status(a, key, &me, NOW, false);
        assert_eq!(
            check(&answer(&processor, me, 50, 50), Some(&pinned)),
            (ProofStatus::Verified, Some(50))
        );
        assert_eq!(
            check(&answer(&processor, me, 50, 51), Some(&pinned)).0,
            ProofStatus::Mismatch
        );
        let impostor = DeviceKey::generate();
        assert_eq!(
            check(&answer(&impostor, me, 50, 50), Some(&pinned)).0,
            ProofStatus::Mismatch
        );
        assert_eq!(
            check(&answer(&processor, me, 50, 50), None).0,
            ProofStatus::Unverified
        );
        let none_yet = RewardsView {
            latest_epoch: None,
            proof: None,
            ..answer(&processor, me, 50, 50)
        };
        assert_eq!(check(&none_yet, Some(&pinned)).0, ProofStatus::Unverified);
    }

    #[test]
    fn another_devices_valid_proof_is_a_mismatch() {
        let processor = DeviceKey::generate();
        // A correct proof, signed by the pinned key, for device [2; 20].
        let theirs = answer(&processor, [2; 20], 900, 900);
        let (status, proven) = proof_status(&theirs, Some(processor.public_key()), &[1; 20], NOW, false);
        assert_eq!((status, proven), (ProofStatus::Mismatch, None));
    }

    #[test]
    fn a_stale_seal_is_a_mismatch() {
        let processor = DeviceKey::generate();
        let a = answer(&processor, [1; 20], 50, 50);
        let key = Some(processor.public_key());
        // Epoch 7 seen from epoch 9 is two epochs old: fine; from epoch 10: stale.
        assert_eq!(
            proof_status(&a, key, &[1; 20], 9 * 3600, false).0,
            ProofStatus::Verified
        );
        assert_eq!(
            proof_status(&a, key, &[1; 20], 10 * 3600, false).0,
            ProofStatus::Mismatch
        );
    }

    #[test]
    fn a_missing_proof_after_one_was_seen_is_a_mismatch() {
        let processor = DeviceKey::generate();
        let gone = RewardsView {
            proof: None,
            ..answer(&processor, [1; 20], 50, 50)
        };
        let key = Some(processor.public_key());
        assert_eq!(
            proof_status(&gone, key, &[1; 20], NOW, false).0,
            ProofStatus::Unverified
        );
        assert_eq!(
            proof_status(&gone, key, &[1; 20], NOW, true).0,
            ProofStatus::Mismatch
        );
    }
}
