//! Random and broken state files must never crash the screen: every input gives
//! a frame (usually "no data"), and values out of any sane range still draw.

use proptest::prelude::*;
use wattstream_display::framebuffer::Framebuffer;
use wattstream_display::layout::draw;
use wattstream_display::samples;
use wattstream_display::view::{Screen, from_bytes};
use wattstream_sdk::state::{LinkStatus, MeterState, ProofStatus};

fn draw_bytes(bytes: &[u8], now: u64) {
    let mut fb = Framebuffer::new(160, 128);
    draw(&mut fb, &from_bytes(bytes, now, 30), now);
}

#[test]
fn every_truncation_of_a_valid_state_draws() {
    let state = serde_json::to_vec(&samples::all()[0].1.clone().unwrap()).unwrap();
    for len in 0..state.len() {
        draw_bytes(&state[..len], samples::NOW);
    }
    assert!(matches!(
        from_bytes(&state[..state.len() / 2], samples::NOW, 30),
        Screen::NoData { .. }
    ));
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1e300),
        -10.0f64..20_000.0,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_draw(bytes in proptest::collection::vec(any::<u8>(), 0..400), now in any::<u64>()) {
        draw_bytes(&bytes, now);
    }

    #[test]
    fn random_json_with_the_right_shape_draws(
        power in any_f64(), window in any_f64(), energy in any_f64(), balance in any_f64(), rate in any_f64(),
        history in proptest::collection::vec(any_f64(), 0..400),
        id in "[ -~]{0,80}", depth in any::<u64>(), time in any::<u64>(), now in any::<u64>(),
        offline in any::<bool>(), window_s in any::<u64>(),
    ) {
        let mut s: MeterState = samples::all()[0].1.clone().unwrap();
        s.power_w = Some(power);
        s.window_w = Some(window);
        s.energy_today_wh = energy;
        s.rewards.balance = Some(balance);
        s.rewards.rate_per_h = Some(rate);
        s.rewards.proof = if offline { ProofStatus::Mismatch } else { ProofStatus::Unknown };
        s.history_w = history;
        s.device_id = id;
        s.link.outbox_depth = depth;
        s.link.status = if offline { LinkStatus::Offline } else { LinkStatus::Unknown };
        s.time = time;
        s.window_s = window_s;
        let mut fb = Framebuffer::new(160, 128);
        draw(&mut fb, &Screen::Live { stale_s: now.checked_sub(time).filter(|a| *a > 30), state: Box::new(s) }, now);
    }
}
