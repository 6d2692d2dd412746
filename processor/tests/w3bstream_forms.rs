//! W3bstream v1's module forms, on a live server over the ingest path: a
//! module without `alloc` deploys and runs (a copy into it answers status 5,
//! as W3bstream's "alloc is nil"), a handler's return value `>= 0` is success
//! (the chain goes on, its writes are kept) and `< 0` failure (the chain stops
//! for that event, nothing after it pays). W3bstream's published examples
//! rely on each.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_sdk::DeviceKey;

on_both_engines!(return_values_and_modules_without_alloc_behave_as_on_w3bstream,);

/// Logs "no alloc here", then asks for the event's data (which must be
/// copied in, and cannot be: no `alloc`), logs the status digit, and returns
/// the status: 5, a positive value, so a success.
const NO_ALLOC: &str = r#"(module
  (import "env" "ws_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "ws_get_data" (func $get_data (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "no alloc here")
  (data (i32.const 48) "ws_get_data: ")
  (func (export "start") (param $rid i32) (result i32) (local $s i32)
    (drop (call $log (i32.const 4) (i32.const 16) (i32.const 13)))
    (local.set $s (call $get_data (local.get $rid) (i32.const 0) (i32.const 4)))
    (i32.store8 (i32.const 61) (i32.add (i32.const 48) (local.get $s)))
    (drop (call $log (i32.const 4) (i32.const 48) (i32.const 14)))
    (local.get $s)))"#;

/// Writes a KV pair, logs, and returns `code`.
fn returning(code: i32) -> String {
    format!(
        r#"(module
  (import "env" "ws_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "ws_set_db" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "returning {code}")
  (data (i32.const 64) "kv")
  (func (export "alloc") (param i32) (result i32) i32.const 4096)
  (func (export "start") (param i32) (result i32)
    (drop (call $set (i32.const 64) (i32.const 1) (i32.const 65) (i32.const 1)))
    (drop (call $log (i32.const 4) (i32.const 16) (i32.const {})))
    i32.const {code}))"#,
        format!("returning {code}").len()
    )
}

async fn balance(server: &Server, id: &str) -> u128 {
    let (s, r) = get(&format!("{}/v1/devices/{id}/rewards", server.url)).await;
    assert_eq!(s, 200, "{r}");
    r["balance_units"].as_str().unwrap().parse().unwrap()
}

async fn project(server: &Server, what: &str) -> Vec<Value> {
    let (s, v) = admin_get(&format!("{}/v1/projects/default/{what}", server.url)).await;
    assert_eq!(s, 200, "{v}");
    v[what].as_array().cloned().unwrap_or_default()
}

async fn post_ok(server: &Server, body: &str) {
    let (s, v) = post(&format!("{}/v1/events", server.url), body.to_string()).await;
    assert!(s < 300 && v["status"] == "accepted", "{s} {v}");
}

async fn return_values_and_modules_without_alloc_behave_as_on_w3bstream(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    // Chain: no-alloc logger, a handler returning 7, the tiered minter.
    deploy_ok(&server, "default", "logger", NO_ALLOC).await;
    deploy_ok(&server, "default", "positive", returning(7)).await;
    let tiered = std::fs::read(dist("rewards-tiered")).unwrap();
    deploy_ok(&server, "default", "rewards-tiered", tiered).await;

    let key = DeviceKey::generate();
    let (s, a) = admin(
        Method::POST,
        &format!("{}/v1/devices", server.url),
        TOKEN,
        Some(json!({"public_key": key.public_key().to_hex(), "owner": "o"})),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let id = key.device_id().to_string();
    let readings = signed_windows(&key, 2.0, wattstream_sdk::time::unix_now() - 30, 3, 5);

    // A positive return is a success: the minter after it pays.
    post_ok(&server, &readings[0]).await;
    wait_for("the first credit", Duration::from_secs(20), async || {
        balance(&server, &id).await > 0
    })
    .await;
    let one = balance(&server, &id).await;
    let logs: Vec<String> = project(&server, "logs")
        .await
        .iter()
        .map(|l| {
            format!(
                "{}: {}",
                l["applet"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect();
    for line in [
        "logger: no alloc here",
        "logger: ws_get_data: 5",
        "positive: returning 7",
    ] {
        assert!(logs.iter().any(|l| l == line), "{line} missing from {logs:?}");
    }
    assert!(project(&server, "failures").await.is_empty(), "no failure");

    // A negative return is a failure: the chain stops, nothing after it pays.
    deploy_ok(
        &server,
        "default",
        "negative?before=rewards-tiered",
        returning(-3),
    )
    .await;
    post_ok(&server, &readings[1]).await;
    wait_for("the failure", Duration::from_secs(20), async || {
        !project(&server, "failures").await.is_empty()
    })
    .await;
    let failures = project(&server, "failures").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["applet"], "negative", "{failures:?}");
    assert_eq!(failures[0]["code"], -3, "{failures:?}");

    // Without it the next reading pays again; the failed event never did.
    let (s, v) = admin(
        Method::DELETE,
        &format!("{}/v1/projects/default/applets/negative", server.url),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    post_ok(&server, &readings[2]).await;
    wait_for("the second credit", Duration::from_secs(20), async || {
        balance(&server, &id).await > one
    })
    .await;
    assert_eq!(
        balance(&server, &id).await,
        2 * one,
        "the failed event paid nothing"
    );
}
