//! Example meter states, one per situation the screen must handle. The golden
//! image tests render them, and `power-meter-display samples DIR` writes them as
//! state files so anyone can look at every screen.

use wattstream_sdk::state::{
    ClockStatus, LinkState, LinkStatus, MeterState, ProofStatus, RewardsState, STATE_VERSION, SensorState,
};

/// The Unix time the samples are rendered at.
pub const NOW: u64 = 1_795_514_493;

fn base() -> MeterState {
    let history: Vec<f64> = (0..120)
        .map(|i| match i / 20 {
            0 => 0.1,
            1 => 4.0,
            2 => 8.0,
            3 => 12.0,
            4 => 4.0,
            _ => 2.5,
        } + ((i * 7919) % 13) as f64 * 0.02)
        .collect();
    MeterState {
        version: STATE_VERSION,
        time: NOW - 1,
        device_id: "8ca442dab8a37b1edfabe142fbf532886a1ca76b".into(),
        power_w: Some(2.46),
        window_w: Some(2.51),
        window_s: 5,
        energy_today_wh: 18.42,
        history_w: history,
        link: LinkState {
            status: LinkStatus::Online,
            outbox_depth: 0,
            last_send_at: Some(NOW - 2),
            last_send: Some("ok (1 accepted)".into()),
            dropped: 0,
            dead_lettered: 0,
            conflicts: 0,
        },
        rewards: RewardsState {
            balance: Some(123.45),
            rate_per_h: Some(10.0),
            proof: ProofStatus::Verified,
            proven: None,
            pending: None,
            updated_at: Some(NOW - 30),
        },
        sensor: SensorState {
            errors: 0,
            missed: 0,
            simulated: true,
        },
        clock: ClockStatus::Synchronized,
    }
}

/// `(name, state)` for every golden screen; `None` is a missing state file.
pub fn all() -> Vec<(&'static str, Option<MeterState>)> {
    let normal = base();
    let mut big = base();
    big.power_w = Some(1234.5);
    big.window_w = Some(1187.0);
    big.history_w = big.history_w.iter().map(|w| w * 150.0).collect();
    big.rewards.rate_per_h = Some(0.0);
    let mut offline = base();
    offline.link.status = LinkStatus::Offline;
    offline.link.outbox_depth = 42;
    offline.link.last_send = Some("processor unreachable".into());
    let mut stale = base();
    stale.time = NOW - 75;
    let mut unverified = base();
    unverified.rewards.proof = ProofStatus::Unverified;
    // The latest seal proves 120.00; 3.45 earned since waits for the next one.
    let mut pending = base();
    pending.rewards.proven = Some(120.0);
    pending.rewards.pending = Some(3.45);
    vec![
        ("normal", Some(normal)),
        ("four-digit", Some(big)),
        ("offline", Some(offline)),
        ("no-data", None),
        ("stale", Some(stale)),
        ("unverified", Some(unverified)),
        ("pending", Some(pending)),
    ]
}
