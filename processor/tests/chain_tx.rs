//! Applets send transactions to a chain (ganache from npm): W3bstream's
//! AssemblyScript SDK's `SendTx`, unmodified, mints an OpenZeppelin ERC-20 to
//! each reading's device owner. The transaction leaves the event as an
//! intent in the project's outbox and is sent after the event commits,
//! exactly once per (event, applet, index): a replayed envelope mints
//! nothing, and a processor killed after the commit and before the send
//! sends it once when it comes back. `wattstream applet run --chain` makes a
//! module's `ws_call_contract` calls against the node and sends what it left.

mod common;

use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use common::ganache::Ganache;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_processor::chain::contracts::WattToken;
use wattstream_sdk::DeviceKey;

on_both_engines!(
    a_sendtx_applet_mints_once_per_event_after_it_commits,
    a_processor_killed_before_the_send_sends_once_after_restart,
);

/// The device owner the applet mints to.
const OWNER: &str = "0x2222222222222222222222222222222222222222";

/// Deploys a WattToken and lets the chain key (ganache's funded account,
/// also the processor's key) mint it.
async fn token(chain: &Ganache) -> Address {
    let key = wattstream_processor::chain::load_key(&chain.key_file).unwrap();
    let me = key.address();
    let p = wattstream_processor::chain::provider(&chain.rpc, key).unwrap();
    let t = WattToken::deploy(&p, "Watt".to_string(), "WATT".to_string(), me)
        .await
        .unwrap();
    let role = t.MINTER_ROLE().call().await.unwrap();
    let receipt = t
        .grantRole(role, me)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    *t.address()
}

async fn balance_of(chain: &Ganache, token: Address, who: &str) -> U256 {
    let p = wattstream_processor::chain::reader(&chain.rpc).unwrap();
    WattToken::new(token, &p)
        .balanceOf(who.parse().unwrap())
        .call()
        .await
        .unwrap()
}

/// A configuration sending to chain 1337 at `rpc`.
fn config(dir: &Path, rpc: &str, key_file: &Path) -> String {
    let path = dir.join("wattstream.toml");
    std::fs::write(
        &path,
        format!(
            "[chains.1337]\nrpc = \"{rpc}\"\nkey_file = \"{}\"\npoll_ms = 100\n",
            key_file.display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// The mint applet, its environment, and a device owned by [`OWNER`].
async fn set_up(server: &Server, token: Address) -> DeviceKey {
    let wasm = std::fs::read(dist("as-mint")).unwrap();
    deploy_ok(server, "default", "as-mint", wasm).await;
    let env = json!({ "MINT_CHAIN_ID": "1337", "MINT_TOKEN": format!("{token:#x}") });
    let url = format!("{}/v1/projects/default/env", server.url);
    let (s, v) = admin(Method::PUT, &url, TOKEN, Some(env)).await;
    assert!(s < 300, "{s} {v}");
    owned_device(server).await
}

/// A device registered with [`OWNER`] as its owner.
async fn owned_device(server: &Server) -> DeviceKey {
    let key = DeviceKey::generate();
    let body = json!({ "public_key": key.public_key().to_hex(), "owner": OWNER });
    let (s, v) = admin(
        Method::POST,
        &format!("{}/v1/devices", server.url),
        TOKEN,
        Some(body),
    )
    .await;
    assert!(s == 201 || s == 200, "{s} {v}");
    key
}

async fn txs(server: &Server) -> Vec<Value> {
    let (s, v) = admin_get(&format!("{}/v1/projects/default/txs", server.url)).await;
    assert_eq!(s, 200, "{v}");
    v["txs"].as_array().cloned().unwrap_or_default()
}

/// Waits until `n` transactions are confirmed; the rows.
async fn confirmed(server: &Server, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} confirmed transactions"),
        Duration::from_secs(60),
        async || {
            let rows = txs(server).await;
            rows.iter().filter(|r| r["state"] == "confirmed").count() == n
        },
    )
    .await;
    txs(server).await
}

/// The amount a mint's calldata carries (its last 32 bytes).
fn minted(row: &Value) -> U256 {
    let data = row["data"].as_str().unwrap();
    assert!(data.starts_with("0x40c10f19"), "{data}");
    U256::from_str_radix(&data[data.len() - 64..], 16).unwrap()
}

async fn post_ok(server: &Server, body: &str) -> Value {
    let (s, v) = post(&format!("{}/v1/events", server.url), body.to_string()).await;
    assert!(s < 300, "{s} {v}");
    v
}

async fn a_sendtx_applet_mints_once_per_event_after_it_commits(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let chain = Ganache::start(dir.path());
    let token = token(&chain).await;
    let store = TestStore::new(engine).await;
    let cfg = config(dir.path(), &chain.rpc, &chain.key_file);
    let data = dir.path().join("data");
    let server = store.start(&data, &["--config", &cfg]);
    let key = set_up(&server, token).await;
    let readings = signed_windows(&key, 100.0, now() - 60, 3, 5);

    assert_eq!(post_ok(&server, &readings[0]).await["status"], "accepted");
    let rows = confirmed(&server, 1).await;
    let first = minted(&rows[0]);
    assert!(first > U256::ZERO);
    assert_eq!(balance_of(&chain, token, OWNER).await, first);
    // The receipt the sender recorded is the chain's.
    let hash = rows[0]["hash"].as_str().unwrap().parse().unwrap();
    let reader = wattstream_processor::chain::reader(&chain.rpc).unwrap();
    let receipt = reader.get_transaction_receipt(hash).await.unwrap().unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.block_number, rows[0]["block"].as_u64());
    println!("minted {first} units to {OWNER}: transaction {hash}");

    // The same envelope again is a duplicate and runs nothing; the next
    // reading mints once more, so the chain holds exactly two mints.
    assert_eq!(post_ok(&server, &readings[0]).await["status"], "duplicate");
    assert_eq!(post_ok(&server, &readings[1]).await["status"], "accepted");
    let rows = confirmed(&server, 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_ne!(rows[0]["event_id"], rows[1]["event_id"]);
    assert_eq!(
        rows[1]["nonce"].as_i64(),
        rows[0]["nonce"].as_i64().map(|n| n + 1)
    );
    assert_eq!(balance_of(&chain, token, OWNER).await, first + minted(&rows[1]));
    let m = metrics_text(&server).await;
    assert!(
        m.contains("wattstream_chain_transactions_total{chain=\"1337\",step=\"confirmed\"} 2"),
        "{m}"
    );
    // Each went out on its first broadcast: none was refused by the node.
    assert!(
        m.contains("wattstream_chain_transactions_total{chain=\"1337\",step=\"broadcast\"} 2"),
        "{m}"
    );
    assert!(!m.contains("broadcast_failed"), "{m}");
    // The applet's logs tell the story.
    let (_, logs) = admin_get(&format!("{}/v1/projects/default/logs", server.url)).await;
    let text = logs.to_string();
    assert!(text.contains("pending:1337:"), "{text}");
    assert!(text.contains(&format!("transaction {hash} confirmed")), "{text}");
}

async fn a_processor_killed_before_the_send_sends_once_after_restart(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let chain = Ganache::start(dir.path());
    let token = token(&chain).await;
    let store = TestStore::new(engine).await;
    let data = dir.path().join("data");
    // A node nobody listens at: the event commits, its transaction cannot go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cfg = config(dir.path(), &nowhere, &chain.key_file);
    let mut server = store.start(&data, &["--config", &cfg]);
    let key = set_up(&server, token).await;
    let readings = signed_windows(&key, 100.0, now() - 60, 2, 5);
    assert_eq!(post_ok(&server, &readings[0]).await["status"], "accepted");
    wait_for(
        "the intent, and a failed pass",
        Duration::from_secs(30),
        async || {
            let rows = txs(&server).await;
            rows.len() == 1
                && rows[0]["state"] == "pending"
                && metrics_text(&server).await.contains("step=\"pass_failed\"")
        },
    )
    .await;
    server.kill();
    assert_eq!(balance_of(&chain, token, OWNER).await, U256::ZERO);

    // Back, with the node: the intent is sent, once.
    let cfg = config(dir.path(), &chain.rpc, &chain.key_file);
    let mut server = store.start(&data, &["--config", &cfg]);
    let rows = confirmed(&server, 1).await;
    let first = minted(&rows[0]);
    assert_eq!(balance_of(&chain, token, OWNER).await, first);
    server.kill();
    // And again: nothing is sent twice; the next reading is its own mint.
    let server = store.start(&data, &["--config", &cfg]);
    assert_eq!(post_ok(&server, &readings[1]).await["status"], "accepted");
    let rows = confirmed(&server, 2).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(balance_of(&chain, token, OWNER).await, first + minted(&rows[1]));
}

/// A module that reads `OWNER`'s balance of `token` on chain 1337 with
/// `ws_call_contract` and returns the answer's last four bytes (a
/// little-endian i32), or -1000 less the status when the call fails.
fn balance_reader(token: Address) -> String {
    let call = format!(r#"{{"to":"{token:#x}","data":"70a08231{:0>64}"}}"#, &OWNER[2..]);
    format!(
        r#"(module
  (import "env" "ws_call_contract" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{}")
  (global $next (mut i32) (i32.const 4096))
  (func (export "alloc") (param i32) (result i32) (local i32)
    global.get $next local.set 1
    global.get $next local.get 0 i32.add global.set $next
    local.get 1)
  (func (export "start") (param i32) (result i32) (local $s i32)
    (local.set $s (call $call (i32.const 1337) (i32.const 16) (i32.const {}) (i32.const 8) (i32.const 12)))
    (if (i32.ne (local.get $s) (i32.const 0)) (then (return (i32.sub (i32.const -1000) (local.get $s)))))
    (i32.load (i32.add (i32.load (i32.const 8)) (i32.const 28)))))"#,
        call.replace('"', "\\\""),
        call.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applet_run_with_a_chain_calls_it_and_sends_what_the_module_left() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Ganache::start(dir.path());
    let token = token(&chain).await;
    let event = dir.path().join("event.json");
    std::fs::write(&event, "{}").unwrap();
    let chain_arg = format!("1337={}", chain.rpc);
    let base = [
        "applet",
        "run",
        "--event",
        event.to_str().unwrap(),
        "--chain",
        &chain_arg,
        "--chain-key",
        chain.key_file.to_str().unwrap(),
    ];
    let token_env = format!("MINT_TOKEN={token:#x}");
    let owner_env = format!("WS_DEVICE_OWNER={OWNER}");
    let mint = dist("as-mint");
    let mut args = base.to_vec();
    args.extend([
        "--wasm",
        mint.to_str().unwrap(),
        "--env",
        &owner_env,
        "--env",
        "WS_PAID_S=5",
        "--env",
        "MINT_CHAIN_ID=1337",
        "--env",
        &token_env,
    ]);
    let out = cli(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("sent     chain 1337 tx 0x") && text.contains(": ok"),
        "{text}"
    );
    let minted = U256::from(5_000_000_000_000_000u64);
    assert_eq!(balance_of(&chain, token, OWNER).await, minted);

    // The call answers the chain's balance, as the module reads it.
    let reader = dir.path().join("reader.wat");
    std::fs::write(&reader, balance_reader(token)).unwrap();
    let mut args = base.to_vec();
    args.extend(["--wasm", reader.to_str().unwrap(), "--json"]);
    let out = cli(&args);
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    let word = minted.to_be_bytes::<32>();
    let expected = i32::from_le_bytes(word[28..].try_into().unwrap());
    assert_eq!(outcome["code"].as_i64(), Some(i64::from(expected)), "{outcome}");
    // Without --chain, the same module's call fails (-1: -1000 - -1), and says why.
    let out = cli(&[
        "applet",
        "run",
        "--event",
        event.to_str().unwrap(),
        "--wasm",
        reader.to_str().unwrap(),
        "--json",
    ]);
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["code"].as_i64(), Some(-999), "{outcome}");
    assert!(outcome.to_string().contains("[chains.1337]"), "{outcome}");
}

/// Readings two and three hours old seal at once (see `settlement.rs`).
const SEALING: &str = "[rewards]\nepoch_s = 3600\nseal_after_s = 0\ncap_per_epoch = 1000\n\
                       [limits]\nmax_future_s = 14400\n";

fn replay(data: &Path, cfg: &str) -> String {
    let out = cli(&[
        "rewards",
        "replay",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        cfg,
    ]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_gets_the_chain_answers_the_event_first_got() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Ganache::start(dir.path());
    let token = token(&chain).await;
    let cfg = config(dir.path(), &chain.rpc, &chain.key_file);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(SEALING);
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, &["--admin-token", TOKEN, "--config", &cfg]);
    // A gate that reads the chain, then the minter: no answer, no mint.
    deploy_ok(&server, "default", "reader", balance_reader(token)).await;
    let tiered = std::fs::read(dist("rewards-tiered")).unwrap();
    deploy_ok(&server, "default", "rewards-tiered", tiered).await;
    let key = owned_device(&server).await;
    let epoch = now() / 3600 - 3;
    let readings = signed_windows(&key, 2.0, epoch * 3600 + 10, 6, 5);
    let (s, v) = post(
        &format!("{}/v1/events", server.url),
        format!("[{}]", readings.join(",")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_for("the epoch's seal", Duration::from_secs(30), async || {
        let head = get(&format!("{}/v1/ledger/head", server.url)).await.1;
        head["seq"] == 6 && head["last_sealed_epoch"] == epoch
    })
    .await;
    server.kill();

    // The chain has moved on since (another mint): the replay still gets
    // what each call got then, and every seal matches.
    let p = wattstream_processor::chain::provider(
        &chain.rpc,
        wattstream_processor::chain::load_key(&chain.key_file).unwrap(),
    )
    .unwrap();
    let t = WattToken::new(token, &p);
    let minted = t
        .mint(OWNER.parse().unwrap(), U256::from(1u8))
        .send()
        .await
        .unwrap();
    assert!(minted.get_receipt().await.unwrap().status());
    let out = replay(&data, &cfg);
    assert!(out.contains("seal matches") && !out.contains("DIFFERS"), "{out}");

    // Without the kept answers the gate cannot answer, nothing mints, and
    // the replay says so: what is kept is what makes it match.
    rusqlite::Connection::open(data.join("projects/default.db"))
        .unwrap()
        .execute("DELETE FROM _ws_calls", [])
        .unwrap();
    let out = replay(&data, &cfg);
    assert!(out.contains("DIFFERS"), "{out}");
}
