//! The owner of a registered meter attacks the rewards, against a live
//! `wattstream serve` with `identity` (a gate) and `rewards-tiered` deployed.
//! The device signs its own envelopes, so it can claim any window and any
//! timestamps. For each attack: the balance stays within what an honest
//! meter earns in the same wall time (10 tokens/h at most, over the time since
//! registration plus the allowed clock skew at either end), and an honest
//! window sent after the attack is still paid exactly.
//!
//! `stale_timestamp` (readings older than `limits.max_age_s`) is covered by the
//! admission tests; see the README's threat model for each attack.
//!
//! Every attack runs on both stores: SQLite, and PostgreSQL (where applets
//! run in leased batches and the ledger takes a credits queue).

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::json;
use wattstream_sdk::{DeviceKey, Reading};

const UNIT: u128 = 1_000_000_000_000_000_000;
/// `limits.max_future_s` of the server under attack: the allowed skew.
const SKEW: u64 = 30;

on_both_engines!(
    an_inflated_window_is_paid_as_the_time_that_passed,
    many_readings_at_one_timestamp_are_paid_once,
    backdated_readings_across_past_hours_earn_nothing,
    readings_from_before_registration_earn_nothing,
    a_second_reading_for_a_filled_slot_is_a_conflict_and_earns_nothing,
);

/// What `rewards-tiered` mints for `paid` seconds under 3 W (10 tokens/h).
fn tiered(paid: u64) -> u128 {
    10 * UNIT * paid as u128 / 3600
}

struct Target {
    server: Server,
    _dir: tempfile::TempDir,
    _store: TestStore,
}

async fn target(engine: Engine) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wattstream.toml");
    std::fs::write(&config, format!("[limits]\nmax_future_s = {SKEW}\n")).unwrap();
    let store = TestStore::new(engine).await;
    let server = store.start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    for (name, gate) in [("identity", true), ("rewards-tiered", false)] {
        deploy_ok(
            &server,
            "default",
            &format!("{name}?gate={gate}"),
            std::fs::read(dist(name)).expect("applets/dist is built"),
        )
        .await;
    }
    Target {
        server,
        _dir: dir,
        _store: store,
    }
}

/// A device with an owner; its id and the processor's `registered_at`.
async fn device(t: &Target, key: &DeviceKey) -> (String, u64) {
    let (s, a) = admin(
        Method::POST,
        &format!("{}/v1/devices", t.server.url),
        TOKEN,
        Some(json!({"public_key": key.public_key().to_hex(), "owner": "mallory"})),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let id = a["device_id"].as_str().unwrap().to_string();
    let (_, d) = admin_get(&format!("{}/v1/devices/{id}", t.server.url)).await;
    (id, d["registered_at"].as_u64().unwrap())
}

fn reading(ts: u64, seq: u64, window_s: u32) -> Reading {
    let mut r = Reading::new(2.0, ts).with_seq(seq);
    r.window_s = Some(window_s);
    r
}

async fn send(t: &Target, key: &DeviceKey, readings: &[Reading]) {
    let bodies: Vec<String> = readings.iter().map(|r| key.sign_reading(r)).collect();
    for chunk in bodies.chunks(500) {
        let (s, a) = post(
            &format!("{}/v1/events", t.server.url),
            format!("[{}]", chunk.join(",")),
        )
        .await;
        assert_eq!(s, 200, "{a}");
        assert!(
            a["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "accepted"),
            "{a}"
        );
    }
}

/// The device's balance once the worker has run every stored event and the
/// ledger (one accrual a second) has taken its credits.
async fn settled_balance(t: &Target, id: &str) -> u128 {
    let start = Instant::now();
    let health = format!("{}/healthz", t.server.url);
    while get(&health).await.1["applet_worker"]["lag_events"] != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker does not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read = || async {
        let (_, r) = get(&format!("{}/v1/devices/{id}/rewards", t.server.url)).await;
        r["balance_units"].as_str().unwrap().parse::<u128>().unwrap()
    };
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let now = read().await;
        if now == last {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the ledger does not settle"
        );
        last = now;
    }
}

/// What an honest meter could have earned since registration: 10 tokens/h
/// over the wall time since registration plus the skew allowed at either end.
fn honest_bound(registered_at: u64) -> u128 {
    tiered(now() - registered_at + 2 * SKEW)
}

async fn an_inflated_window_is_paid_as_the_time_that_passed(engine: Engine) {
    let t = target(engine).await;
    let key = DeviceKey::generate();
    let (id, reg) = device(&t, &key).await;
    // 20 windows one second apart, each claiming 4294967295 s.
    let attack: Vec<Reading> = (0..20).map(|i| reading(reg + i, i + 1, u32::MAX)).collect();
    send(&t, &key, &attack).await;
    // Then an honest 5 s window.
    send(&t, &key, &[reading(reg + 24, 21, 5)]).await;
    let balance = settled_balance(&t, &id).await;
    // Paid: the first window up to the skew before registration (30 s), then 1 s each, then 5 s.
    let want = tiered(SKEW) + 19 * tiered(1) + tiered(5);
    assert_eq!(
        balance,
        want,
        "{balance} units, honest bound {}",
        honest_bound(reg)
    );
    assert!(balance <= honest_bound(reg));
}

async fn many_readings_at_one_timestamp_are_paid_once(engine: Engine) {
    let t = target(engine).await;
    let key = DeviceKey::generate();
    let (id, reg) = device(&t, &key).await;
    let attack: Vec<Reading> = (0..200).map(|i| reading(reg, i + 1, 5)).collect();
    send(&t, &key, &attack).await;
    send(&t, &key, &[reading(reg + 5, 201, 5)]).await;
    let balance = settled_balance(&t, &id).await;
    assert_eq!(
        balance,
        tiered(5) + tiered(5),
        "one window for 200 copies of one moment, then the honest one"
    );
    assert!(balance <= honest_bound(reg));
}

async fn backdated_readings_across_past_hours_earn_nothing(engine: Engine) {
    let t = target(engine).await;
    let key = DeviceKey::generate();
    let (id, reg) = device(&t, &key).await;
    // 100 windows, one in each of the past 100 hours (each a fresh epoch and cap), ascending.
    let attack: Vec<Reading> = (0..100)
        .map(|i| reading(reg - 3600 * (100 - i), i + 1, 5))
        .collect();
    send(&t, &key, &attack).await;
    send(&t, &key, &[reading(reg + 5, 101, 5)]).await;
    let balance = settled_balance(&t, &id).await;
    assert_eq!(balance, tiered(5), "only the honest window");
    assert!(balance <= honest_bound(reg));
}

async fn readings_from_before_registration_earn_nothing(engine: Engine) {
    let t = target(engine).await;
    let key = DeviceKey::generate();
    let (id, reg) = device(&t, &key).await;
    // Ten minutes of windows up to just outside the allowed skew.
    let attack: Vec<Reading> = (0..19).map(|i| reading(reg - 600 + 30 * i, i + 1, 30)).collect();
    assert!(attack.last().unwrap().timestamp < reg - SKEW);
    send(&t, &key, &attack).await;
    send(&t, &key, &[reading(reg + 5, 20, 5)]).await;
    let balance = settled_balance(&t, &id).await;
    // The honest window is paid from the skew floor: min(5, reg + 5 - (reg - 30)) = 5.
    assert_eq!(balance, tiered(5), "only the honest window");
    assert!(balance <= honest_bound(reg));
}

async fn a_second_reading_for_a_filled_slot_is_a_conflict_and_earns_nothing(engine: Engine) {
    let t = target(engine).await;
    let key = DeviceKey::generate();
    let (id, reg) = device(&t, &key).await;
    let honest = reading(reg + 5, 7, 5);
    send(&t, &key, std::slice::from_ref(&honest)).await;
    let url = format!("{}/v1/events", t.server.url);
    // The same seq, other bytes (lower power for the higher tier, and a later time).
    let mut forged = reading(reg + 6, 7, 5);
    forged.sensor_reading = 0.5;
    let (s, a) = post(&url, key.sign_reading(&forged)).await;
    assert_eq!(
        (s, a["status"].as_str(), a["reason"].as_str()),
        (409, Some("rejected"), Some("conflict")),
        "{a}"
    );
    // Inside a batch too; an exact copy stays a duplicate.
    let (s, a) = post(
        &url,
        format!("[{},{}]", key.sign_reading(&forged), key.sign_reading(&honest)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(a["results"][0]["reason"], "conflict", "{a}");
    assert_eq!(a["results"][1]["status"], "duplicate", "{a}");
    let balance = settled_balance(&t, &id).await;
    assert_eq!(balance, tiered(5), "only the first reading of the slot is paid");
    assert!(balance <= honest_bound(reg));
    let (_, d) = admin_get(&format!("{}/v1/devices/{id}", t.server.url)).await;
    assert_eq!(d["counts"]["conflict"], 2, "{d}");
    let stored = all_events(&t.server, &id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["sensor_reading"], 2.0, "the first reading stands");
    let metrics = metrics_text(&t.server).await;
    assert!(
        metrics.contains("wattstream_events_total{status=\"rejected\",reason=\"conflict\"} 2"),
        "{metrics}"
    );
}
