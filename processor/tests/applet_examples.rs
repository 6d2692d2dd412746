//! The example applets (three in Rust, one in AssemblyScript on the unmodified
//! `@w3bstream/wasm-sdk`) through `wattstream applet run`, as an applet author
//! runs them, and the baseline applet over a stream of events through the
//! runtime. Needs `applets/dist/*.wasm` (built by `applets/build.sh`).

mod common;

use std::path::{Path, PathBuf};

use common::dist;
use std::process::Command;

use serde_json::Value;
use wattstream_abi::LEDGER_TOKEN;
use wattstream_processor::applets::db::ProjectDb;
use wattstream_processor::applets::runner::device_env;
use wattstream_processor::applets::runtime::Runtime;
use wattstream_processor::applets::state::{AppletLimits, EventInput};
use wattstream_sdk::{DeviceKey, Reading};

fn reading(watts: f64, energy: f64) -> Reading {
    let mut r = Reading::new(watts, 1_795_514_495).with_seq(9);
    r.window_s = Some(5);
    r.energy_wh = Some(energy);
    r
}

/// Runs `wattstream applet run --json`; returns (exit code, outcome).
fn run(applet: &str, event: &Path, env: &[&str]) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wattstream"));
    cmd.args(["applet", "run", "--json", "--wasm"])
        .arg(dist(applet))
        .arg("--event")
        .arg(event);
    for e in env {
        cmd.args(["--env", e]);
    }
    let out = cmd.output().unwrap();
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), outcome)
}

fn event_file(dir: &Path, key: &DeviceKey, r: &Reading) -> PathBuf {
    let path = dir.join(format!(
        "{}-{}.json",
        r.sensor_reading,
        r.energy_wh.unwrap_or(0.0)
    ));
    std::fs::write(&path, key.sign_reading(r)).unwrap();
    path
}

#[test]
fn identity_accepts_a_verified_owned_device_and_rejects_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    let ok = event_file(dir.path(), &key, &reading(2.5, 0.0035));
    let (exit, accepted) = run("identity", &ok, &[]);
    assert_eq!(exit, 0);
    // The Rust SDK and the host agree on ws_log levels (wattstream-abi).
    // (Its success line is debug: `applet run` shows every level.)
    assert_eq!(accepted["effects"]["logs"][0]["level"], "debug", "{accepted}");
    let cases: [(&Path, &[&str], i64); 4] = [
        (&ok, &["WS_DEVICE_STATUS=revoked"], -1),
        (&ok, &["WS_DEVICE_OWNER="], -2),
        (&event_file(dir.path(), &key, &reading(2.5, -1.0)), &[], -3),
        (&ok, &["MAX_POWER_W=2"], -5),
    ];
    for (event, env, code) in cases {
        let (exit, o) = run("identity", event, env);
        assert_eq!((exit, o["code"].as_i64()), (1, Some(code)), "{env:?}: {o}");
        assert!(o["effects"]["credits"].as_array().unwrap().is_empty());
        let logs = o["effects"]["logs"].as_array().unwrap();
        assert_eq!(logs.last().unwrap()["level"], "error", "{o}");
    }
    // An event that fails verification is not given the WS_ keys.
    let tampered = dir.path().join("tampered.json");
    std::fs::write(
        &tampered,
        key.sign_reading(&reading(2.5, 0.0035)).replace("2.5", "0.5"),
    )
    .unwrap();
    assert_eq!(run("identity", &tampered, &[]).1["code"], -1);
}

#[test]
fn tiered_rewards_follow_the_seed_rule_to_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    let unit = 1_000_000_000_000_000_000u128;
    for (watts, per_hour) in [(0.5, 10u128), (2.99, 10), (3.0, 4), (4.9, 4), (5.0, 0), (12.0, 0)] {
        let (exit, o) = run(
            "rewards-tiered",
            &event_file(dir.path(), &key, &reading(watts, 0.0)),
            &[],
        );
        assert_eq!(exit, 0);
        let credits = o["effects"]["credits"].as_array().unwrap();
        let minted: u128 = credits
            .iter()
            .map(|c| {
                c["amount"]
                    .as_u64()
                    .map(u128::from)
                    .unwrap_or_else(|| c["amount"].as_str().unwrap().parse().unwrap())
            })
            .sum();
        assert_eq!(minted, per_hour * unit * 5 / 3600, "{watts} W");
        if minted > 0 {
            assert_eq!(credits[0]["address"], key.device_id().address());
        }
    }
}

#[test]
fn the_assemblyscript_applet_stores_readings_through_sql() {
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    let (exit, o) = run(
        "as-readings",
        &event_file(dir.path(), &key, &reading(4.25, 0.0059)),
        &[],
    );
    assert_eq!(exit, 0, "{o}");
    let sql: Vec<(String, u64)> = o["effects"]["sql"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_str().unwrap().to_string(), s[1].as_u64().unwrap()))
        .collect();
    assert!(
        sql.iter()
            .any(|(s, n)| s.starts_with("INSERT INTO readings") && *n == 1),
        "{sql:?}"
    );
    let logs: Vec<&str> = o["effects"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("stored a reading of 4.25 W") && l.contains(r#"[{"n":1}]"#)),
        "{logs:?}"
    );
}

#[test]
fn baseline_rewards_savings_and_holds_the_cap() {
    let runtime = Runtime::new(None).unwrap();
    let applet = runtime
        .compile(&std::fs::read(dist("rewards-baseline")).unwrap())
        .unwrap();
    let mut db = ProjectDb::open(None, std::time::Duration::from_millis(100)).unwrap();
    let key = DeviceKey::generate();
    let id = key.device_id().to_string();
    let unit = 1_000_000_000_000_000_000u128;
    let mut total = 0u128;
    let t0 = 1_795_510_800u64; // an epoch boundary
    let mut run = |i: u64, watts: f64, env: &[(&str, &str)]| {
        let mut r = Reading::new(watts, t0 + i * 5).with_seq(i);
        r.window_s = Some(5);
        let mut vars = device_env(&id, Some("alice"), "active", i as i64);
        // What the processor's paid-time rule gives 5 s windows 5 s apart.
        vars.insert(wattstream_abi::env::PAID_S.into(), "5".into());
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let input = EventInput {
            rid: 1,
            payload: key.sign_reading(&r).into_bytes(),
            event_type: "DATA".into(),
            env: vars,
            token: Some(LEDGER_TOKEN.into()),
            seed: i,
            time_ns: 0,
            chains: Vec::new(),
            calls: None,
        };
        let (o, back) = runtime.run_sqlite(
            &applet,
            "start",
            input,
            std::mem::replace(
                &mut db,
                ProjectDb::open(None, std::time::Duration::from_millis(1)).unwrap(),
            ),
            &AppletLimits::default(),
        );
        db = back;
        assert_eq!(o.code, Some(0), "{o:?}");
        o.effects.credits.iter().map(|c| c.amount).sum::<u128>()
    };
    // Warm-up at 10 W earns nothing; a steady load earns nothing.
    for i in 0..40 {
        assert_eq!(run(i, 10.0, &[]), 0);
    }
    // Saving 6 W against a ~10 W baseline earns about 6 W × 5 s = 8.3 mWh a window.
    let first = run(40, 4.0, &[]);
    assert!(first > 8 * unit / 1000 && first < 9 * unit / 1000, "{first}");
    total += first;
    // Keep saving: the cap of 2 tokens an epoch holds.
    for i in 41..700 {
        total += run(i, 0.0, &[("CAP_PER_EPOCH", "0.05")]);
    }
    assert_eq!(total, 5 * unit / 100, "capped at 0.05 tokens in the epoch");
    // The next epoch starts a fresh cap.
    assert!(run(720, 0.0, &[("CAP_PER_EPOCH", "0.05")]) > 0);
}
