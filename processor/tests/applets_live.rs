//! The example applets on a live server: deployed with the CLI, run by the worker
//! over ingested envelopes; rejections, ledger credits and logs asserted through
//! the API. Needs `applets/dist/*.wasm` (built by `applets/build.sh`, which the
//! test command runs).

mod common;

use std::time::{Duration, Instant};

use common::*;
use wattstream_abi::LEDGER_TOKEN;
use wattstream_sdk::{DeviceKey, Reading};

on_both_engines!(
    identity_gates_and_tiered_rewards_credit_the_ledger,
    stateless_instances_gate_and_credit_exactly_as_fresh_ones,
    applets_and_their_effects_survive_a_restart,
    bad_deployments_are_refused,
    all_four_example_applets_run_on_the_server,
    the_w3bstream_event_endpoint_runs_a_project_with_a_publisher_token,
    a_slow_chain_shows_as_lag_in_healthz_and_metrics_and_drains,
    a_chain_where_a_minter_runs_before_the_gate_is_refused_unless_forced,
);

fn deploy(server: &Server, name: &str) {
    deploy_with(server, name, &[]).unwrap();
}

/// `wattstream applet deploy` with extra arguments; the error output on failure.
fn deploy_with(server: &Server, name: &str, extra: &[&str]) -> Result<(), String> {
    let mut extra = extra.to_vec();
    if name == "identity" && !extra.contains(&"--gate") {
        extra.push("--gate");
    }
    let mut args = vec!["--name", name];
    args.extend_from_slice(&extra);
    cli_deploy(server, name, &args)
}

fn windows(key: &DeviceKey, watts: f64, n: u64, t0: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut r = Reading::new(watts, t0 + i * 5).with_seq(i + 1);
            r.window_s = Some(5);
            r.energy_wh = Some(watts * 5.0 / 3600.0);
            key.sign_reading(&r)
        })
        .collect()
}

async fn balance(server: &Server, id: &str) -> u128 {
    let (s, r) = get(&format!("{}/v1/devices/{id}/rewards", server.url)).await;
    assert_eq!(s, 200, "{r}");
    r["balance_units"].as_str().unwrap().parse().unwrap()
}

async fn wait_for_failures(server: &Server, n: usize) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (_, f) = admin_get(&format!("{}/v1/projects/default/failures", server.url)).await;
        if f["failures"].as_array().map_or(0, |a| a.len()) >= n || start.elapsed() > Duration::from_secs(20) {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// At the default `applets.log_level` (info): the examples' per-event
/// lines (debug) are not stored, their rejections (errors) are.
async fn identity_gates_and_tiered_rewards_credit_the_ledger(engine: Engine) {
    gates_and_credits(engine, &[], "info").await
}

/// One instance per applet for the batch (`--stateless`): the same
/// rejections and credits; and every line stored at `log_level = "debug"`.
async fn stateless_instances_gate_and_credit_exactly_as_fresh_ones(engine: Engine) {
    gates_and_credits(engine, &["--stateless"], "debug").await
}

async fn gates_and_credits(engine: Engine, extra: &[&str], log_level: &str) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[applets]\nlog_level = \"{log_level}\"\n")).unwrap();
    let server = store.start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    deploy_with(&server, "identity", extra).unwrap();
    deploy_with(&server, "rewards-tiered", extra).unwrap();
    let (_, list) = admin_get(&format!("{}/v1/projects/default/applets", server.url)).await;
    let listed: Vec<(&str, bool)> = list["applets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["limits"]["stateless"] == true))
        .collect();
    let stateless = !extra.is_empty();
    assert_eq!(listed, [("identity", stateless), ("rewards-tiered", stateless)]);

    let frugal = DeviceKey::generate();
    let middle = DeviceKey::generate();
    let heavy = DeviceKey::generate();
    let orphan = DeviceKey::generate();
    let ids = [
        register_with_owner(&server, &frugal, Some("alice")).await,
        register_with_owner(&server, &middle, Some("bob")).await,
        register_with_owner(&server, &heavy, Some("carol")).await,
        register_with_owner(&server, &orphan, None).await,
    ];
    // Within the clock skew the paid-time rule allows before registration.
    let t0 = now() - 100;
    let mut bodies = windows(&frugal, 2.5, 3, t0);
    bodies.extend(windows(&middle, 4.0, 3, t0));
    bodies.extend(windows(&heavy, 12.0, 3, t0));
    bodies.extend(windows(&orphan, 2.5, 3, t0));
    let batch = format!("[{}]", bodies.join(","));
    let (s, _) = post(&format!("{}/v1/events", server.url), batch.clone()).await;
    assert_eq!(s, 200);

    // The orphan's three events are refused by identity (code 2: no owner).
    let failures = wait_for_failures(&server, 3).await;
    let failures = failures["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|f| f["applet"] == "identity" && f["code"] == -2)
    );

    // 10 tokens/h under 3 W, 4 tokens/h under 5 W, none above; 5 s windows.
    let unit = 1_000_000_000_000_000_000u128;
    let start = Instant::now();
    while balance(&server, &ids[1]).await == 0 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(balance(&server, &ids[0]).await, 3 * (10 * unit * 5 / 3600));
    assert_eq!(balance(&server, &ids[1]).await, 3 * (4 * unit * 5 / 3600));
    assert_eq!(balance(&server, &ids[2]).await, 0);
    assert_eq!(
        balance(&server, &ids[3]).await,
        0,
        "rejected by identity: no reward"
    );

    // The same events again: duplicates, so nothing changes.
    // (Nothing new is stored, so nothing new can be credited.)
    let (s, a) = post(&format!("{}/v1/events", server.url), batch).await;
    assert_all_duplicate(s, &a);
    assert_eq!(balance(&server, &ids[0]).await, 3 * (10 * unit * 5 / 3600));

    // Logs through the API and the CLI.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattstream"))
        .args(["applet", "logs", "--server", &server.url, "--token", TOKEN])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.contains("device has no owner binding"),
        "a rejection is an error line, stored at any level: {logs}"
    );
    let chatter = logs.contains("minted") && logs.contains("identity ok");
    assert_eq!(chatter, log_level == "debug", "debug lines only at debug: {logs}");
    let (_, m) = get(&format!("{}/metrics", server.url)).await;
    let m = m.as_str().unwrap();
    let value = |series: &str| -> u64 {
        let line = m.lines().find(|l| l.starts_with(series));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    };
    let identity = "{project=\"default\",applet=\"identity\"";
    let failed = value(&format!(
        "wattstream_applet_calls_total{identity},outcome=\"failed\"}}"
    ));
    let calls = value(&format!(
        "wattstream_applet_calls_total{identity},outcome=\"ok\"}}"
    )) + failed;
    assert_eq!(calls, 12, "{m}");
    assert_eq!(failed, 3, "{m}");
    // A fresh instance per call, or fewer instances than calls when kept.
    let made = value(&format!("wattstream_applet_instances_total{identity}}}"));
    if stateless {
        assert!((1..calls).contains(&made), "{made} instances for {calls} calls");
    } else {
        assert_eq!(made, calls);
    }
}

async fn applets_and_their_effects_survive_a_restart(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    let id;
    {
        let server = store.start(dir.path(), &[]);
        deploy(&server, "rewards-tiered");
        id = register_with_owner(&server, &key, Some("alice")).await;
        let (s, _) = post(
            &format!("{}/v1/events", server.url),
            format!("[{}]", windows(&key, 1.0, 2, now() - 100).join(",")),
        )
        .await;
        assert_eq!(s, 200);
        let start = Instant::now();
        while balance(&server, &id).await == 0 && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let server = store.start(dir.path(), &[]);
    let before = balance(&server, &id).await;
    assert!(before > 0);
    let (s, _) = post(
        &format!("{}/v1/events", server.url),
        windows(&key, 1.0, 3, now() - 100)[2].clone(),
    )
    .await;
    assert_eq!(s, 200);
    let start = Instant::now();
    while balance(&server, &id).await == before && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        balance(&server, &id).await,
        before * 3 / 2,
        "the redeployed applet runs after a restart"
    );
}

async fn bad_deployments_are_refused(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    let url = format!("{}/v1/projects/default/applets/x", server.url);
    let c = client();
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .body("not wasm")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(&url)
        .bearer_auth("wrong")
        .body("not wasm")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let wasm = std::fs::read(dist("identity")).unwrap();
    let r = c
        .post(format!("{url}?handler=nope"))
        .bearer_auth(TOKEN)
        .body(wasm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no handler"));
}

async fn all_four_example_applets_run_on_the_server(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    for name in ["identity", "rewards-tiered", "rewards-baseline", "as-readings"] {
        deploy(&server, name);
    }
    let key = DeviceKey::generate();
    let id = register_with_owner(&server, &key, Some("alice")).await;
    let (s, _) = post(
        &format!("{}/v1/events", server.url),
        format!("[{}]", windows(&key, 2.0, 3, now() - 100).join(",")),
    )
    .await;
    assert_eq!(s, 200);
    let start = Instant::now();
    let metric = |m: &str, applet: &str| m.contains(&format!("applet=\"{applet}\",outcome=\"ok\"}} 3"));
    loop {
        let (_, m) = get(&format!("{}/metrics", server.url)).await;
        let m = m.as_str().unwrap().to_string();
        if ["identity", "rewards-tiered", "rewards-baseline", "as-readings"]
            .iter()
            .all(|a| metric(&m, a))
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, logs) = admin_get(&format!("{}/v1/projects/default/logs?limit=1000", server.url)).await;
    let text = logs.to_string();
    assert!(
        text.contains(r#"table now: [{\"n\":3}]"#),
        "the AssemblyScript applet stored three rows: {text}"
    );
    // Credits reach the ledger on its next pass (every second).
    let want = 3 * (10 * 1_000_000_000_000_000_000u128 * 5 / 3600);
    let start = Instant::now();
    while balance(&server, &id).await != want && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        balance(&server, &id).await,
        3 * (10 * 1_000_000_000_000_000_000u128 * 5 / 3600)
    );
}

async fn the_w3bstream_event_endpoint_runs_a_project_with_a_publisher_token(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    let token = w3b_project_with_publisher(&server).await;
    let body = DeviceKey::generate().sign_reading(&Reading::new(3.5, now()));
    let url = format!("{}/srv-applet-mgr/v0/event/w3b?eventType=DEFAULT", server.url);
    let r = client()
        .post(&url)
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["results"][0]["appletName"], "readings");
    assert_eq!(answer["results"][0]["returnCode"], 0, "{answer}");
    let r = client()
        .post(&url)
        .bearer_auth("wsp_wrong")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token is not a publisher token");

    // A mint on this path would go nowhere (its effects are not stored): it
    // fails, and the answer says so, rather than reporting success.
    let tx = format!(
        r#"{{"to":"{LEDGER_TOKEN}","value":"0","data":"0x40c10f19{:0>64}{:064x}"}}"#,
        "ab".repeat(20),
        1000u128
    );
    let escaped: String = tx.bytes().map(|b| format!("\\{b:02x}")).collect();
    let minter = format!(
        r#"(module
          (import "env" "ws_send_tx" (func $tx (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "{escaped}")
          (func (export "alloc") (param i32) (result i32) i32.const 4096)
          (func (export "start") (param i32) (result i32)
            (call $tx (i32.const 0) (i32.const 16) (i32.const {}) (i32.const 0) (i32.const 8))))"#,
        tx.len()
    );
    deploy_ok(&server, "w3b", "minter?event_type=MINT", minter).await;
    let url = format!("{}/srv-applet-mgr/v0/event/w3b?eventType=MINT", server.url);
    let r = client()
        .post(&url)
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["results"][0]["returnCode"], -1, "{answer}");
    assert_eq!(answer["results"][0]["credits"], 0, "{answer}");
}

async fn a_slow_chain_shows_as_lag_in_healthz_and_metrics_and_drains(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wattstream.toml");
    std::fs::write(&config, "[applets]\nmax_lag_events = 5\n").unwrap();
    let server = store.start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    // Every call spins until its 20 ms deadline stops it.
    deploy_ok(
        &server,
        "default",
        "slow?deadline_ms=20",
        wat_applet("(loop br 0) i32.const 0"),
    )
    .await;
    let key = DeviceKey::generate();
    register(&server, &key.public_key().to_hex()).await;
    let bodies: Vec<String> = (1..=60)
        .map(|i| key.sign_reading(&Reading::new(2.0, now() - 600 + i).with_seq(i)))
        .collect();
    let r = client()
        .post(format!("{}/v1/events", server.url))
        .body(format!("[{}]", bodies.join(",")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let health = || async { get(&format!("{}/healthz", server.url)).await.1 };
    let start = Instant::now();
    let mut seen = health().await;
    while seen["status"] != "degraded" && start.elapsed() < Duration::from_secs(20) {
        seen = health().await;
    }
    assert_eq!(seen["status"], "degraded", "{seen}");
    assert!(
        seen["applet_worker"]["lag_events"].as_u64().unwrap() > 5,
        "{seen}"
    );
    assert!(seen["problems"][0].as_str().unwrap().contains("behind"), "{seen}");
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("wattstream_applet_worker_lag_events "),
        "{metrics}"
    );
    assert!(metrics.contains("wattstream_applet_worker_restarts_total 0"));
    // It drains: 60 calls of 20 ms.
    while seen["status"] != "ok" && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = health().await;
    }
    assert_eq!(seen["status"], "ok", "{seen}");
    assert_eq!(seen["applet_worker"]["lag_events"], 0, "{seen}");
}

async fn a_chain_where_a_minter_runs_before_the_gate_is_refused_unless_forced(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    deploy(&server, "rewards-tiered");
    // identity is a gate: appended after the minter it would come too late.
    let e = deploy_with(&server, "identity", &[]).unwrap_err();
    assert!(e.contains("409") && e.contains("mints before the gate"), "{e}");
    let listed = || async {
        let (_, a) = admin_get(&format!("{}/v1/projects/default/applets", server.url)).await;
        a["applets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["position"].as_u64().unwrap(),
                    x["name"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed().await,
        [(1, "rewards-tiered".to_string())],
        "nothing changed"
    );
    deploy_with(&server, "identity", &["--before", "rewards-tiered"]).unwrap();
    assert_eq!(
        listed().await,
        [(1, "identity".to_string()), (2, "rewards-tiered".to_string())]
    );
    // Moving the minter ahead of the gate is refused too, and allowed when forced.
    assert!(deploy_with(&server, "rewards-tiered", &["--before", "identity"]).is_err());
    deploy_with(&server, "rewards-tiered", &["--before", "identity", "--force"]).unwrap();
    assert_eq!(
        listed().await,
        [(1, "rewards-tiered".to_string()), (2, "identity".to_string())]
    );
    let (_, a) = admin_get(&format!("{}/v1/projects/default/applets", server.url)).await;
    assert_eq!(
        (
            a["applets"][0]["mints"].as_bool(),
            a["applets"][1]["gate"].as_bool()
        ),
        (Some(true), Some(true))
    );
}
