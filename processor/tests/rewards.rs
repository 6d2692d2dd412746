//! The rewards ledger end to end: the tiered applet's mints become capped,
//! hash-chained entries; epochs are sealed and signed; each device's proof
//! verifies in the sdk (and a changed byte or another key does not); duplicates
//! change nothing; `rewards verify` names a tampered entry or seal; `rewards
//! replay` reproduces the seals.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_sdk::proof::{ProofView, SealView, verify};
use wattstream_sdk::{DeviceKey, PublicKey};

const UNIT: u128 = 1_000_000_000_000_000_000;

/// `wattstream ARGS --data-dir DIR --config DIR/wattstream.toml`, on the
/// test's store.
fn cli(store: &TestStore, args: &[&str], dir: &Path) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wattstream"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("wattstream.toml"));
    if let Some(db) = &store.db {
        cmd.args(["--store", &db.url]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `sql` on the test's store, as someone with write access to it would;
/// the first column of the first row, as text.
async fn tamper(store: &TestStore, dir: &Path, sql: &str) -> Option<String> {
    match &store.db {
        None => {
            let db = rusqlite::Connection::open(dir.join("wattstream.db")).unwrap();
            let mut stmt = db.prepare(sql).unwrap();
            let mut rows = stmt.query([]).unwrap();
            let row = rows.next().unwrap()?;
            Some(match row.get_ref(0).unwrap() {
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                other => format!("{other:?}"),
            })
        }
        Some(db) => {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let rows = client.simple_query(sql).await.unwrap();
            rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
        }
    }
}

on_both_engines!(
    rewards_are_capped_sealed_proven_verified_and_replayed,
    a_crash_and_a_retry_do_not_change_any_balance,
    replay_matches_after_a_revocation_an_env_change_and_a_late_deployment,
    the_head_names_the_event_through_which_every_credit_is_in_the_ledger,
);

fn windows(key: &DeviceKey, watts: f64, n: u64, t0: u64) -> Vec<String> {
    signed_windows(key, watts, t0, n, 5)
}

async fn rewards_are_capped_sealed_proven_verified_and_replayed(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wattstream.toml");
    std::fs::write(
        &config,
        // Readings from two hours ago seal at once; the paid-time rule pays
        // readings from before registration only within the allowed clock
        // skew, so this test allows three hours of it.
        "[rewards]\nepoch_s = 3600\nseal_after_s = 0\ncap_per_epoch = 0.03\n[limits]\nmax_future_s = 10800\n",
    )
    .unwrap();
    let server = store.start(dir.path(), &["--config", config.to_str().unwrap()]);
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../applets/dist/rewards-tiered.wasm");
    let r = client()
        .post(format!(
            "{}/v1/projects/default/applets/rewards-tiered",
            server.url
        ))
        .bearer_auth(TOKEN)
        .body(std::fs::read(&wasm).expect("applets/dist built"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let keys: Vec<DeviceKey> = (0..3).map(|_| DeviceKey::generate()).collect();
    for k in &keys {
        let (s, _) = admin(
            Method::POST,
            &format!("{}/v1/devices", server.url),
            TOKEN,
            Some(json!({"public_key": k.public_key().to_hex(), "owner": "o"})),
        )
        .await;
        assert_eq!(s, 201);
    }
    // Two hours ago, in one epoch: frugal 2 W, average 4 W, heavy 12 W.
    let t0 = (now() / 3600 - 2) * 3600 + 10;
    let mut bodies = Vec::new();
    for (k, w) in keys.iter().zip([2.0, 4.0, 12.0]) {
        bodies.extend(windows(k, w, 3, t0));
    }
    let batch = format!("[{}]", bodies.join(","));
    let (s, _) = post(&format!("{}/v1/events", server.url), batch.clone()).await;
    assert_eq!(s, 200);

    // Wait for the seal covering the six entries (frugal: 2 full and 1 clipped by the cap; average: 3).
    let start = Instant::now();
    let head = loop {
        let (_, head) = get(&format!("{}/v1/ledger/head", server.url)).await;
        if !head["last_sealed_epoch"].is_null() && head["seq"].as_u64() == Some(6) {
            break head;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pinned = PublicKey::from_hex(head["processor_public_key"].as_str().unwrap()).unwrap();

    let (mut balances, mut proofs_checked) = (Vec::new(), 0);
    for k in &keys {
        let (_, a) = get(&format!("{}/v1/devices/{}/rewards", server.url, k.device_id())).await;
        balances.push(a["balance_units"].as_str().unwrap().parse::<u128>().unwrap());
        if a["proof"].is_null() {
            continue;
        }
        let seal: SealView = serde_json::from_value(a["latest_epoch"].clone()).unwrap();
        let proof: ProofView = serde_json::from_value(a["proof"].clone()).unwrap();
        verify(&seal, &proof, &pinned).expect("the proof checks");
        let mut forged = proof.clone();
        let flipped = if forged.steps[0].sibling.starts_with('0') {
            "1"
        } else {
            "0"
        };
        forged.steps[0].sibling.replace_range(0..1, flipped);
        assert!(verify(&seal, &forged, &pinned).is_err(), "a changed byte fails");
        assert!(
            verify(&seal, &proof, DeviceKey::generate().public_key()).is_err(),
            "another key fails"
        );
        let (s, e) = get(&format!("{}/v1/epochs/{}", server.url, seal.epoch)).await;
        assert_eq!((s, e["root"].as_str()), (200, Some(seal.root.as_str())));
        proofs_checked += 1;
    }
    // Frugal and average earned, so each has a leaf; heavy earned nothing.
    assert_eq!(proofs_checked, 2, "both earning devices' proofs were checked");
    // Frugal earned 3 × 10/720 tokens = 0.0417, capped at 0.03; average 3 × 4/720.
    assert_eq!(balances[0], 3 * UNIT / 100);
    assert_eq!(balances[1], 3 * (4 * UNIT * 5 / 3600));
    assert_eq!(balances[2], 0);
    assert!(balances[0] > balances[1] && balances[1] > balances[2]);

    // Sending it all again changes nothing.
    // (Nothing new is stored, so nothing new can be credited.)
    let (s, a) = post(&format!("{}/v1/events", server.url), batch).await;
    assert_all_duplicate(s, &a);
    let (_, head2) = get(&format!("{}/v1/ledger/head", server.url)).await;
    assert_eq!(head2["seq"], head["seq"]);
    drop(server);

    let (code, out) = cli(&store, &["rewards", "verify"], dir.path());
    assert_eq!(code, 0, "{out}");
    // A later change of the epoch length or the cap applies to later epochs:
    // the sealed ones are held to what their seals record.
    let sealed_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        "[rewards]\nepoch_s = 60\nseal_after_s = 0\ncap_per_epoch = 0.001\n[limits]\nmax_future_s = 10800\n",
    )
    .unwrap();
    let (code, out) = cli(&store, &["rewards", "verify"], dir.path());
    assert_eq!(code, 0, "a changed config is not tampering: {out}");
    std::fs::write(&config, sealed_config).unwrap();
    // Against a key pinned from elsewhere (the one meters pin): the right one passes,
    // any other names the first seal.
    let processor_key = head["processor_public_key"].as_str().unwrap().to_string();
    let (code, out) = cli(
        &store,
        &["rewards", "verify", "--public-key", &processor_key],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}");
    let stranger = DeviceKey::generate().public_key().to_hex();
    let (code, out) = cli(
        &store,
        &["rewards", "verify", "--public-key", &stranger],
        dir.path(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signed by another key"), "{out}");
    let (code, out) = cli(&store, &["rewards", "replay"], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("seal matches") && !out.contains("DIFFERS"), "{out}");
    let (code, out) = cli(
        &store,
        &["rewards", "show", "--device", &keys[0].device_id().to_string()],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert!(out.contains(&format!("balance: {}", 3 * UNIT / 100)), "{out}");

    // Change one stored entry, then one seal: verify names each.
    let amount = tamper(
        &store,
        dir.path(),
        "SELECT amount FROM ledger_entries WHERE seq = 2",
    )
    .await
    .unwrap();
    tamper(
        &store,
        dir.path(),
        "UPDATE ledger_entries SET amount = '1' WHERE seq = 2",
    )
    .await;
    let (code, out) = cli(&store, &["rewards", "verify"], dir.path());
    assert_eq!(code, 1);
    assert!(out.contains("entry 2"), "{out}");
    let restore = format!("UPDATE ledger_entries SET amount = '{amount}' WHERE seq = 2");
    tamper(&store, dir.path(), &restore).await;
    assert_eq!(cli(&store, &["rewards", "verify"], dir.path()).0, 0, "restored");
    let epoch = tamper(&store, dir.path(), "SELECT epoch FROM seals")
        .await
        .unwrap();
    let zero_root = match engine {
        Engine::Sqlite => "UPDATE seals SET root = zeroblob(32)",
        Engine::Postgres => "UPDATE seals SET root = decode(repeat('00', 32), 'hex')",
    };
    tamper(&store, dir.path(), zero_root).await;
    let (code, out) = cli(&store, &["rewards", "verify"], dir.path());
    assert_eq!(code, 1);
    assert!(out.contains(&format!("epoch {epoch}")), "{out}");
}

use std::path::PathBuf;

async fn a_crash_and_a_retry_do_not_change_any_balance(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    // Readings after registration (the paid-time rule pays nothing before it).
    let t0 = now();
    let bodies = windows(&key, 2.0, 6, t0);
    let batch = format!("[{}]", bodies.join(","));
    {
        let mut server = store.start(dir.path(), &[]);
        let wasm = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../applets/dist/rewards-tiered.wasm"),
        )
        .unwrap();
        let r = client()
            .post(format!(
                "{}/v1/projects/default/applets/rewards-tiered",
                server.url
            ))
            .bearer_auth(TOKEN)
            .body(wasm)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        register(&server, &key.public_key().to_hex()).await;
        let (s, _) = post(&format!("{}/v1/events", server.url), batch.clone()).await;
        assert_eq!(s, 200);
        // Pull the plug at once: applets and the ledger may or may not have run.
        server.kill();
    }
    let server = store.start(dir.path(), &[]);
    // The client retries after the crash: every envelope is a duplicate now.
    let (s, a) = post(&format!("{}/v1/events", server.url), batch).await;
    assert_all_duplicate(s, &a);
    let want = 6 * (10 * UNIT * 5 / 3600);
    let start = Instant::now();
    let balance = loop {
        let (_, r) = get(&format!("{}/v1/devices/{}/rewards", server.url, key.device_id())).await;
        let b: u128 = r["balance_units"].as_str().unwrap().parse().unwrap();
        if b == want || start.elapsed() > Duration::from_secs(20) {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        balance, want,
        "every window credited exactly once across the crash"
    );
    // Once the worker has run everything stored, the ledger holds each credit once.
    let start = Instant::now();
    while get(&format!("{}/healthz", server.url)).await.1["applet_worker"]["lag_events"] != 0 {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, head) = get(&format!("{}/v1/ledger/head", server.url)).await;
    assert_eq!(head["seq"], 6, "six entries, none twice");
}

async fn replay_matches_after_a_revocation_an_env_change_and_a_late_deployment(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wattstream.toml");
    std::fs::write(&config, "[rewards]\nepoch_s = 10\nseal_after_s = 0\n").unwrap();
    let server = store.start(dir.path(), &["--config", config.to_str().unwrap()]);
    let module = |file: &str| std::fs::read(dist(file)).unwrap();
    deploy_ok(&server, "default", "identity?gate=true", module("identity")).await;
    deploy_ok(&server, "default", "rewards-tiered", module("rewards-tiered")).await;
    let key = DeviceKey::generate();
    let (s, a) = admin(
        Method::POST,
        &format!("{}/v1/devices", server.url),
        TOKEN,
        Some(json!({"public_key": key.public_key().to_hex(), "owner": "alice"})),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let id = a["device_id"].as_str().unwrap().to_string();
    let t0 = now() - 20;
    let (s, _) = post(
        &format!("{}/v1/events", server.url),
        format!("[{}]", windows(&key, 2.0, 3, t0).join(",")),
    )
    .await;
    assert_eq!(s, 200);
    // Wait until every entry is sealed.
    let last_epoch = (t0 + 10) / 10;
    let start = Instant::now();
    loop {
        let (_, head) = get(&format!("{}/v1/ledger/head", server.url)).await;
        if head["seq"] == 3
            && head["last_sealed_epoch"]
                .as_u64()
                .is_some_and(|e| e >= last_epoch)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "{head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then everything the applets saw changes: the device is revoked, the
    // environment would make identity refuse 2 W, a second minter arrives.
    let (s, _) = admin(
        Method::DELETE,
        &format!("{}/v1/devices/{id}", server.url),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = admin(
        Method::PUT,
        &format!("{}/v1/projects/default/env", server.url),
        TOKEN,
        Some(json!({"MAX_POWER_W": "1"})),
    )
    .await;
    assert_eq!(s, 200);
    deploy_ok(&server, "default", "tiered-again", module("rewards-tiered")).await;
    drop(server);

    let (code, out) = cli(&store, &["rewards", "replay"], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replayed 3 events into 3 entries"), "{out}");
    assert!(out.contains("seal matches") && !out.contains("DIFFERS"), "{out}");
}

/// What `bench` counts sustained throughput by: once `through_event` reaches
/// an accepted event, that event's applets have run and its credits are
/// entries, with nothing of it still on its way.
async fn the_head_names_the_event_through_which_every_credit_is_in_the_ledger(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    deploy_example(&server, "rewards-tiered").await;
    let (_, head) = get(&format!("{}/v1/ledger/head", server.url)).await;
    assert!(head["through_event"].as_i64().is_none_or(|t| t < 1), "{head}");
    let keys: Vec<DeviceKey> = (0..4).map(|_| DeviceKey::generate()).collect();
    let mut bodies = Vec::new();
    for k in &keys {
        register(&server, &k.public_key().to_hex()).await;
        // Frugal windows, each paid: one entry apiece.
        bodies.extend(windows(k, 2.0, 30, now() - 200));
    }
    let mut last = 0;
    for chunk in bodies.chunks(20) {
        let (s, answer) = post(
            &format!("{}/v1/events", server.url),
            format!("[{}]", chunk.join(",")),
        )
        .await;
        assert_eq!(s, 200, "{answer}");
        for r in answer["results"].as_array().unwrap() {
            assert_eq!(r["status"], "accepted", "{r}");
            last = last.max(r["event_id"].as_i64().unwrap());
        }
    }
    let url = format!("{}/v1/ledger/head", server.url);
    let mut head = Value::Null;
    wait_for(
        "the ledger to reach the last event",
        Duration::from_secs(30),
        async || {
            head = get(&url).await.1;
            head["through_event"].as_i64() >= Some(last)
        },
    )
    .await;
    assert_eq!(head["seq"].as_u64(), Some(bodies.len() as u64), "{head}");
}
