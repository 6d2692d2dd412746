//! Property tests over random keys and readings: what one path signs, both paths
//! verify, and a single changed byte anywhere (data, signature, key) makes both fail.

use proptest::prelude::*;
use wattstream_sdk::{DeviceKey, Envelope, PublicKey, Reading, Signature, VerifyPath};

fn key_strategy() -> impl Strategy<Value = DeviceKey> {
    any::<[u8; 32]>().prop_filter_map("valid scalar", |b| DeviceKey::from_bytes(&b))
}

fn reading_strategy() -> impl Strategy<Value = Reading> {
    (
        0.0f64..10_000.0,
        0u64..4_000_000_000,
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(w, ts, seq)| Reading {
            seq,
            ..Reading::new(w, ts)
        })
}

fn verdicts(key: &PublicKey, data: &[u8], sig: &Signature) -> [bool; 2] {
    VerifyPath::ALL.map(|p| p.verify(key, data, sig).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn signed_envelopes_verify_on_both_paths(key in key_strategy(), reading in reading_strategy()) {
        let body = key.sign_reading(&reading);
        let env = Envelope::parse(body.as_bytes()).unwrap();
        prop_assert!(env.verify(VerifyPath::Reference).is_ok());
        prop_assert!(env.verify(VerifyPath::Fast).is_ok());
        prop_assert_eq!(env.reading(), &reading);
        prop_assert_eq!(env.device_id(), key.device_id());
    }

    #[test]
    fn a_changed_data_byte_fails_on_both(key in key_strategy(), reading in reading_strategy(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut data = reading.to_json().into_bytes();
        let sig = key.sign(&data);
        let i = at.index(data.len());
        data[i] ^= flip;
        prop_assert_eq!(verdicts(key.public_key(), &data, &sig), [false, false]);
    }

    #[test]
    fn a_changed_signature_byte_fails_on_both(key in key_strategy(), reading in reading_strategy(), at in 0usize..64, flip in 1u8..=255) {
        let data = reading.to_json();
        let mut sig = key.sign(data.as_bytes());
        sig.0[at] ^= flip;
        prop_assert_eq!(verdicts(key.public_key(), data.as_bytes(), &sig), [false, false]);
    }

    #[test]
    fn a_changed_key_byte_fails_on_both(key in key_strategy(), reading in reading_strategy(), at in 0usize..65, flip in 1u8..=255) {
        let data = reading.to_json();
        let sig = key.sign(data.as_bytes());
        let mut point = *key.public_key().uncompressed();
        point[at] ^= flip;
        // Most changed points fall off the curve and are refused when parsed; the
        // rest are other keys, under which the signature must not verify.
        if let Ok(other) = PublicKey::from_sec1(&point) {
            prop_assert_eq!(verdicts(&other, data.as_bytes(), &sig), [false, false]);
        }
    }
}
