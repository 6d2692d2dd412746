//! The processor's HTTP API as a client sees it, against a real server process.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_sdk::{DeviceKey, Reading};

#[tokio::test]
async fn signed_vectors_get_their_expected_status() {
    let dir = tempfile::tempdir().unwrap();
    // The vectors carry fixed timestamps (November 2026): accept them at any age.
    let config = dir.path().join("wattstream.toml");
    std::fs::write(&config, "[limits]\nmax_age_s = 3153600000\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--admin-token", TOKEN, "--config", config.to_str().unwrap()],
    );
    let devices: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_dir().join("devices.json")).unwrap()).unwrap();
    // Register through the CLI, as an operator would.
    for pk in devices["devices"].as_array().unwrap() {
        let out = cli(&[
            "device",
            "add",
            "--server",
            &server.url,
            "--token",
            TOKEN,
            "--public-key",
            pk.as_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = cli(&["device", "list", "--server", &server.url, "--token", TOKEN]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["devices"].as_array().unwrap().len(), 3);

    let cases = std::fs::read_to_string(vectors_dir().join("envelopes.jsonl")).unwrap();
    let mut accepted = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let (status, answer) = post(
            &format!("{}/v1/events", server.url),
            case["body"].as_str().unwrap().to_string(),
        )
        .await;
        let want = match case["expect"].as_str().unwrap() {
            "accept" => "accepted",
            "duplicate" => "duplicate",
            _ => "rejected",
        };
        assert_eq!(answer["status"], want, "case {}: {answer}", case["name"]);
        if want == "rejected" {
            assert!(
                (400..500).contains(&status),
                "case {}: HTTP {status}",
                case["name"]
            );
            assert!(answer["reason"].is_string());
        } else {
            assert_eq!(status, 200);
        }
        accepted += (want == "accepted") as usize;
    }
    // Exactly the accepted ones are stored; the replay is counted, not stored.
    let mut stored = 0;
    for pk in devices["devices"].as_array().unwrap() {
        let id = wattstream_sdk::PublicKey::from_hex(pk.as_str().unwrap())
            .unwrap()
            .device_id()
            .to_string();
        stored += all_events(&server, &id).await.len();
    }
    assert_eq!(stored, accepted);
    let first = wattstream_sdk::PublicKey::from_hex(devices["devices"][0].as_str().unwrap())
        .unwrap()
        .device_id();
    let (_, d) = admin_get(&format!("{}/v1/devices/{first}", server.url)).await;
    // Device A: the seed, meter-format, high-S, upper-case and compressed-key
    // cases are its readings; both replays are its duplicates.
    assert_eq!(d["counts"]["accepted"], 5, "{d}");
    assert_eq!(d["counts"]["duplicate"], 2, "{d}");
    assert!(d["counts"]["rejected"].as_i64().unwrap() >= 2, "{d}");
    assert_eq!(d["last_reading"]["sensor_reading"], 5.7, "{d}");
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = DeviceKey::generate();
    let id = register(&server, &key.public_key().to_hex()).await;
    let events = format!("{}/v1/events", server.url);
    let good = key.sign_reading(&Reading::new(2.5, now()).with_seq(1));

    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let huge = format!(
        "[{}]",
        vec![good.as_str(); 10 * 1024 * 1024 / good.len()].join(",")
    );
    let too_many = format!("[{}]", vec!["{}"; 1001].join(","));
    let future = key.sign_reading(&Reading::new(2.5, now() + 3600).with_seq(2));
    let negative = key
        .sign_data(r#"{"sensor_reading":2.5,"timestamp":1}"#)
        .unwrap()
        .replace("2.5", "-2.5");
    let unknown = DeviceKey::generate().sign_reading(&Reading::new(1.0, now()));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty body", String::new(), 400, "malformed"),
        (
            "truncated JSON",
            good[..good.len() / 2].to_string(),
            400,
            "malformed",
        ),
        ("100,000-deep nesting", deep, 400, "malformed"),
        ("10 MiB body", huge, 413, "too_large"),
        ("batch over the limit", too_many, 413, "too_large"),
        ("bad signature", good.replace("2.5", "3.5"), 400, "bad_signature"),
        ("unknown device", unknown, 403, "unknown_device"),
        ("future timestamp", future, 400, "future_timestamp"),
        ("negative reading", negative, 400, "invalid_reading"),
        ("not an envelope", r#"{"a":1}"#.to_string(), 400, "malformed"),
    ];
    for (name, body, status, reason) in cases {
        let (got, answer) = post(&events, body).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(answer["status"], "rejected", "{name}: {answer}");
        assert_eq!(answer["reason"], reason, "{name}: {answer}");
    }
    // Admin with a wrong or missing token.
    let other = DeviceKey::generate().public_key().to_hex();
    let body = json!({ "public_key": other });
    let (s, a) = admin(
        Method::POST,
        &format!("{}/v1/devices", server.url),
        "wrong-token",
        Some(body.clone()),
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (401, Some("unauthorized")));
    let (s, _) = post(&format!("{}/v1/devices", server.url), body.to_string()).await;
    assert_eq!(s, 401);
    let (s, a) = admin(
        Method::DELETE,
        &format!("{}/v1/devices/{id}", server.url),
        "wrong-token",
        None,
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (401, Some("unauthorized")));
    // Unknown routes and methods.
    let (s, a) = get(&format!("{}/v2/nothing", server.url)).await;
    assert_eq!((s, a["reason"].as_str()), (404, Some("not_found")));
    let (s, a) = get(&events).await;
    assert_eq!((s, a["reason"].as_str()), (405, Some("method_not_allowed")));
    let (s, _) = get(&format!("{}/v1/devices/not-an-id", server.url)).await;
    assert_eq!(s, 400);

    // Nothing was stored, nothing registered, the device is still active...
    assert!(all_events(&server, &id).await.is_empty());
    let (_, list) = admin_get(&format!("{}/v1/devices", server.url)).await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
    // ...and the server still takes a valid envelope.
    let (s, a) = post(&events, good).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("accepted")));
    assert_eq!(all_events(&server, &id).await.len(), 1);
}

#[tokio::test]
async fn a_batch_answers_in_order_and_stores_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = DeviceKey::generate();
    let id = register(&server, &key.public_key().to_hex()).await;
    let t = now() - 100;
    let e1 = key.sign_reading(&Reading::new(1.0, t).with_seq(1));
    let e2 = key.sign_reading(&Reading::new(2.0, t + 5).with_seq(2));
    let bad = e2.replace("2.0", "9.0");
    let batch = format!("[{e1},{bad},{e2},{e1}, 42]");
    let (s, a) = post(&format!("{}/v1/events", server.url), batch).await;
    assert_eq!(s, 200);
    let statuses: Vec<(u64, &str)> = a["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (0, "accepted"),
            (1, "rejected"),
            (2, "accepted"),
            (3, "duplicate"),
            (4, "rejected")
        ]
    );
    let stored = all_events(&server, &id).await;
    assert_eq!(
        stored
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    // The API gives back the exact signed bytes, so anyone can verify them again.
    let url = format!("{}/v1/devices/{id}/events", server.url);
    let text = client()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = text.find("\"data\":").unwrap() + "\"data\":".len();
    let data = &text[start..start + text[start..].find('}').unwrap() + 1];
    assert!(
        e1.starts_with(&format!("{{\"data\":{data},")),
        "{data} is not the signed bytes of {e1}"
    );
}

#[tokio::test]
async fn concurrent_posts_of_one_envelope_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = DeviceKey::generate();
    let id = register(&server, &key.public_key().to_hex()).await;
    let body = key.sign_reading(&Reading::new(5.0, now()).with_seq(77));
    let url = format!("{}/v1/events", server.url);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { post(&url, body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (s, a) = t.await.unwrap();
        assert_eq!(s, 200);
        statuses.push(a["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "accepted").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 15);
    assert_eq!(all_events(&server, &id).await.len(), 1);
}

#[tokio::test]
async fn a_revoked_device_is_refused_but_its_history_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = DeviceKey::generate();
    let pk = key.public_key().to_hex();
    let id = register(&server, &pk).await;
    let url = format!("{}/v1/events", server.url);
    let (s, _) = post(&url, key.sign_reading(&Reading::new(1.0, now() - 10).with_seq(1))).await;
    assert_eq!(s, 200);

    let out = cli(&[
        "device",
        "revoke",
        "--server",
        &server.url,
        "--token",
        TOKEN,
        "--id",
        &id,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (s, a) = post(&url, key.sign_reading(&Reading::new(1.0, now()).with_seq(2))).await;
    assert_eq!((s, a["reason"].as_str()), (403, Some("revoked_device")));
    let (_, d) = admin_get(&format!("{}/v1/devices/{id}", server.url)).await;
    assert_eq!(d["status"], "revoked");
    assert_eq!(d["counts"]["accepted"], 1);
    assert_eq!(all_events(&server, &id).await.len(), 1, "history stays queryable");
    // Registering the revoked key again does not bring it back.
    let (s, a) = admin(
        Method::POST,
        &format!("{}/v1/devices", server.url),
        TOKEN,
        Some(json!({"public_key": pk})),
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (409, Some("revoked_device")));
    // A restart keeps the revocation.
    drop(server);
    let server = Server::start(dir.path());
    let (s, a) = post(
        &format!("{}/v1/events", server.url),
        key.sign_reading(&Reading::new(1.0, now()).with_seq(3)),
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (403, Some("revoked_device")));
}

#[tokio::test]
async fn events_are_paginated_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = DeviceKey::generate();
    let id = register(&server, &key.public_key().to_hex()).await;
    let t0 = now() - 10_000;
    // Sent out of order, as a meter catching up might.
    let bodies: Vec<String> = (0..25u64)
        .rev()
        .map(|i| key.sign_reading(&Reading::new(i as f64, t0 + i * 5).with_seq(i)))
        .collect();
    let (s, _) = post(
        &format!("{}/v1/events", server.url),
        format!("[{}]", bodies.join(",")),
    )
    .await;
    assert_eq!(s, 200);
    let (_, page) = admin_get(&format!(
        "{}/v1/devices/{id}/events?from={}&to={}&limit=4",
        server.url,
        t0 + 10,
        t0 + 50
    ))
    .await;
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    let next = page["next"].as_str().unwrap();
    let (_, page) = admin_get(&format!(
        "{}/v1/devices/{id}/events?from={}&to={}&limit=4&after={next}",
        server.url,
        t0 + 10,
        t0 + 50
    ))
    .await;
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 7, 8, 9]);
    assert_eq!(all_events(&server, &id).await.len(), 25);
    let (s, _) = admin_get(&format!("{}/v1/devices/{id}/events?limit=oops", server.url)).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn without_an_admin_token_the_admin_api_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[]);
    let pk = DeviceKey::generate().public_key().to_hex();
    let (s, a) = admin(
        Method::POST,
        &format!("{}/v1/devices", server.url),
        "anything",
        Some(json!({"public_key": pk})),
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (403, Some("admin_disabled")));
    let (s, a) = get(&format!("{}/healthz", server.url)).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("ok")));
    let (s, m) = get(&format!("{}/metrics", server.url)).await;
    assert_eq!(s, 200);
    assert!(
        m.as_str().unwrap().contains(
            "wattstream_http_requests_total{method=\"POST\",route=\"/v1/devices\",status=\"403\"} 1"
        )
    );
}

#[test]
fn verify_command_checks_an_envelope_offline() {
    use std::io::Write;
    let key = DeviceKey::generate();
    let run = |body: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wattstream"))
            .arg("verify")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let good = key.sign_reading(&Reading::new(3.0, now()));
    assert_eq!(run(&format!("{good}\n")), (Some(0), key.device_id().to_string()));
    let (code, text) = run(&good.replace("3.0", "4.0"));
    assert_eq!(code, Some(1));
    assert!(text.starts_with("bad_signature"), "{text}");
    let (code, text) = run(&key.sign_reading(&Reading::new(3.0, now() + 3600)));
    assert_eq!(code, Some(1));
    assert!(text.starts_with("future_timestamp"), "{text}");
    // Older than a meter's 7-day outbox: stale.
    let (code, text) = run(&key.sign_reading(&Reading::new(3.0, now() - 8 * 86_400)));
    assert_eq!(code, Some(1));
    assert!(text.starts_with("stale_timestamp"), "{text}");
}

#[tokio::test]
async fn readings_and_owners_need_the_admin_or_the_devices_read_token_and_rewards_stay_public() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (mine, other) = (DeviceKey::generate(), DeviceKey::generate());
    let id = register(&server, &mine.public_key().to_hex()).await;
    let other_id = register(&server, &other.public_key().to_hex()).await;
    let body = mine.sign_reading(&Reading::new(2.5, now()).with_seq(1));
    assert_eq!(post(&format!("{}/v1/events", server.url), body).await.0, 200);

    // The operator hands the owner a read token (CLI, as an operator would).
    let out = cli(&[
        "device",
        "token",
        "--server",
        &server.url,
        "--token",
        TOKEN,
        "--id",
        &id,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let (_, other_token) = admin(
        Method::POST,
        &format!("{}/v1/devices/{other_id}/read-token", server.url),
        TOKEN,
        None,
    )
    .await;
    let other_token = other_token["token"].as_str().unwrap();

    for path in [format!("/v1/devices/{id}"), format!("/v1/devices/{id}/events")] {
        let url = format!("{}{path}", server.url);
        assert_eq!(get(&url).await.0, 401, "{path} without a token");
        assert_eq!(
            get_as(&url, Some(other_token)).await.0,
            401,
            "{path} with another device's token"
        );
        assert_eq!(get_as(&url, Some("0".repeat(64).as_str())).await.0, 401);
        assert_eq!(admin_get(&url).await.0, 200, "{path} with the admin token");
        let (s, answer) = get_as(&url, Some(&token)).await;
        assert_eq!(s, 200, "{path} with its own read token: {answer}");
    }
    // Only the admin mints read tokens.
    let (s, _) = admin(
        Method::POST,
        &format!("{}/v1/devices/{id}/read-token", server.url),
        &token,
        None,
    )
    .await;
    assert_eq!(s, 401);
    // Rewards and the ledger head stay public.
    assert_eq!(
        get(&format!("{}/v1/devices/{id}/rewards", server.url)).await.0,
        200
    );
    assert_eq!(get(&format!("{}/v1/ledger/head", server.url)).await.0, 200);
}
