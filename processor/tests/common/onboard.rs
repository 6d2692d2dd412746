//! Onboarding helpers: a meter's binding request from `power-meter bind`, a
//! processor with an onboarding policy, and the claim, transfer and bindings
//! calls (tests/onboarding.rs, tests/transfers.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{Server, TOKEN, admin_get, cli, client, get};

pub fn meter(args: &[&str]) -> std::process::Output {
    Command::new(super::meter::bin()).args(args).output().unwrap()
}

/// A fresh device key in `dir`, and its request to be bound to `owner`.
pub fn bind(dir: &Path, name: &str, owner: &str, chain_id: u64) -> (PathBuf, Value) {
    let key = dir.join(format!("{name}.pem"));
    if !key.exists() {
        let out = meter(&["keygen", "--key", key.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    (key.clone(), bind_with(&key, owner, chain_id))
}

pub fn bind_with(key: &Path, owner: &str, chain_id: u64) -> Value {
    let out = meter(&[
        "bind",
        "--key",
        key.to_str().unwrap(),
        "--owner",
        owner,
        "--chain-id",
        &chain_id.to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn config(dir: &Path, body: &str) -> String {
    let path = dir.join("wattstream.toml");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

pub fn open_server(dir: &Path) -> Server {
    let cfg = config(dir, "[onboarding]\npolicy = \"open\"\nchain_id = 1337\n");
    Server::start_with(&dir.join("data"), &["--admin-token", TOKEN, "--config", &cfg])
}

pub async fn claim(server: &Server, request: &Value, signature: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client()
        .post(format!("{}/v1/devices/claim", server.url))
        .json(&json!({"request": request, "owner_signature": signature}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

pub async fn transfer(
    server: &Server,
    request: &Value,
    from: Option<&str>,
    to: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let id = request["device_id"].as_str().unwrap();
    let mut req = client()
        .post(format!("{}/v1/devices/{id}/transfer", server.url))
        .json(&json!({"request": request, "from_signature": from, "owner_signature": to}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

pub async fn bindings(server: &Server, id: &str) -> Value {
    let (s, b) = get(&format!("{}/v1/devices/{id}/bindings", server.url)).await;
    assert_eq!(s, 200, "{b}");
    b
}

pub async fn owner_of(server: &Server, id: &str) -> Option<String> {
    let (s, d) = admin_get(&format!("{}/v1/devices/{id}", server.url)).await;
    (s == 200)
        .then(|| d["owner"].as_str().map(str::to_string))
        .flatten()
}

pub fn transfer_request(id: &str, from: &str, to: Option<&str>) -> Value {
    let mut args = vec!["device", "transfer-request", "--id", id, "--from", from];
    match to {
        Some(t) => args.extend(["--to", t]),
        None => args.push("--unbind"),
    }
    let out = cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
