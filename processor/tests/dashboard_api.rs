//! The endpoints behind the dashboard, on a real `wattstream serve`:
//! `GET /v1/fleet` (status, filters, sort, pages, sparklines; admin only),
//! `GET /v1/stream` (each stored reading once, only to who may see it; ends
//! with the processor; bounded), `GET /v1/epochs` and
//! `GET /v1/devices/{id}/epochs` (totals that agree with the sealed proofs),
//! and the pages themselves at `/`.

mod common;

use std::time::Duration;

use common::stream::Stream;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_sdk::{DeviceKey, Reading};

on_both_engines!(
    the_fleet_is_filtered_sorted_and_paginated_by_the_server,
    the_stream_sends_each_stored_reading_once_and_only_to_who_may_see_it,
);

fn now() -> u64 {
    wattstream_sdk::time::unix_now()
}

/// Posts a batch; its per-envelope results.
async fn send(server: &Server, bodies: &[String]) -> Value {
    let (s, v) = post(
        &format!("{}/v1/events", server.url),
        format!("[{}]", bodies.join(",")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["results"].clone()
}

async fn read_token(server: &Server, id: &str) -> String {
    let (s, v) = admin(
        Method::POST,
        &format!("{}/v1/devices/{id}/read-token", server.url),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn the_fleet_is_filtered_sorted_and_paginated_by_the_server(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    deploy_example(&server, "rewards-tiered").await;
    // Five devices: i sends i + 1 readings of (i + 1) W ending now, except
    // the silent one (index 3) and the revoked one (index 4).
    let keys: Vec<DeviceKey> = (0..5).map(|_| DeviceKey::generate()).collect();
    let mut ids = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        ids.push(register_with_owner(&server, k, Some(&format!("Owner-{i}"))).await);
    }
    let t = now();
    let mut last_id = 0;
    for (i, k) in keys.iter().enumerate() {
        if i == 3 {
            continue;
        }
        let n = i as u64 + 1;
        let bodies: Vec<String> = (0..n)
            .map(|j| {
                k.sign_reading(
                    &Reading::new((i + 1) as f64 + j as f64 * 0.5, t - (n - 1 - j)).with_seq(j + 1),
                )
            })
            .collect();
        let stored = send(&server, &bodies).await;
        last_id = last_id.max(stored[n as usize - 1]["event_id"].as_i64().unwrap());
    }
    let (s, _) = admin(
        Method::DELETE,
        &format!("{}/v1/devices/{}", server.url, ids[4]),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Every reading's credits in the ledger.
    let head = format!("{}/v1/ledger/head", server.url);
    wait_for(
        "the ledger to take every credit",
        Duration::from_secs(60),
        async || get(&head).await.1["through_event"].as_i64() >= Some(last_id),
    )
    .await;

    let fleet = |q: &str| format!("{}/v1/fleet?{q}", server.url);
    let (s, v) = admin_get(&fleet("sort=accepted&desc=true")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["counts"],
        json!({"all": 5, "online": 3, "offline": 1, "revoked": 1})
    );
    let order: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [&ids[4], &ids[2], &ids[1], &ids[0], &ids[3]]);
    let statuses: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["revoked", "online", "online", "online", "offline"]);
    // Device 2: three readings, 3.0, 3.5 and 4.0 W, the last now.
    let d2 = &v["devices"][1];
    assert_eq!(d2["last_w"], 4.0);
    assert_eq!(d2["last_timestamp"], t);
    assert_eq!(
        (d2["accepted"].as_i64(), d2["owner"].as_str()),
        (Some(3), Some("Owner-2"))
    );
    let spark = d2["spark"].as_array().unwrap();
    assert_eq!(spark.len(), 12);
    assert!(spark[..10].iter().all(Value::is_null), "{spark:?}");
    // The readings span two seconds: they fall in the last bucket or, at a
    // five-minute edge, the last two; the means stay within the readings.
    let means: Vec<f64> = spark.iter().filter_map(Value::as_f64).collect();
    assert!(!means.is_empty(), "{spark:?}");
    assert!(means.iter().all(|m| (3.0..=4.0).contains(m)), "{means:?}");
    assert!(
        v["devices"][4]["spark"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_null)
    );
    assert_eq!(v["devices"][4]["last_w"], Value::Null);

    // A page: the second and third of the same order, and the total.
    let (_, v) = admin_get(&fleet("sort=accepted&desc=true&offset=1&limit=2")).await;
    assert_eq!(v["total"], 5);
    let page: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [&ids[2], &ids[1]]);
    // Filters: an owner's name in another case; a status; a device id prefix.
    let (_, v) = admin_get(&fleet("q=owner-1")).await;
    assert_eq!(
        (v["total"].as_u64(), v["devices"][0]["device_id"].as_str()),
        (Some(1), Some(ids[1].as_str()))
    );
    let (_, v) = admin_get(&fleet("status=offline")).await;
    assert_eq!(
        (v["total"].as_u64(), v["devices"][0]["device_id"].as_str()),
        (Some(1), Some(ids[3].as_str()))
    );
    assert_eq!(v["counts"]["all"], 5, "counts are of the whole fleet");
    let (_, v) = admin_get(&fleet(&format!("q={}", &ids[0][..12]))).await;
    assert_eq!(v["devices"][0]["device_id"], ids[0].as_str());
    let (_, v) = admin_get(&fleet("sort=owner&desc=true&limit=1")).await;
    assert_eq!(v["devices"][0]["owner"], "Owner-4");

    // Balances are the ledger's, and sort as numbers.
    let (_, v) = admin_get(&fleet("sort=balance&desc=true")).await;
    let mut units = Vec::new();
    for d in v["devices"].as_array().unwrap() {
        let id = d["device_id"].as_str().unwrap();
        let (_, r) = get(&format!("{}/v1/devices/{id}/rewards", server.url)).await;
        assert_eq!(d["balance_units"], r["balance_units"], "{id}");
        let u: u128 = r["balance_units"].as_str().unwrap().parse().unwrap();
        assert!((d["balance"].as_f64().unwrap() - u as f64 / 1e18).abs() < 1e-12);
        units.push(u);
    }
    assert!(units[0] > 0, "the readings earned something: {units:?}");
    assert!(units.windows(2).all(|w| w[0] >= w[1]), "{units:?}");

    // Bad input is refused; only the admin sees the fleet.
    for q in ["sort=power", "status=asleep", "limit=x"] {
        let (s, v) = admin_get(&fleet(q)).await;
        assert_eq!((s, v["reason"].as_str()), (400, Some("malformed")), "{q}: {v}");
    }
    let own = read_token(&server, &ids[0]).await;
    for token in [None, Some(own.as_str()), Some("wrong")] {
        let (s, _) = get_as(&fleet(""), token).await;
        assert_eq!(s, 401, "{token:?}");
    }
}

async fn the_stream_sends_each_stored_reading_once_and_only_to_who_may_see_it(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    deploy_example(&server, "rewards-tiered").await;
    let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
    let id_a = register_with_owner(&server, &a, Some("alice")).await;
    let id_b = register_with_owner(&server, &b, Some("bob")).await;
    let token_a = read_token(&server, &id_a).await;

    // Who may open which stream.
    let too_many = format!("devices={}", vec![id_a.as_str(); 201].join(","));
    let not_ids = format!("devices={id_a},nope");
    let both = format!("device={id_a}&devices={id_a}");
    for (query, token, status) in [
        ("", token_a.as_str(), 401),
        (&format!("device={id_b}"), token_a.as_str(), 401),
        (&format!("devices={id_a}"), token_a.as_str(), 401),
        ("", "wrong", 401),
        ("device=not-an-id", TOKEN, 400),
        (&not_ids, TOKEN, 400),
        (&both, TOKEN, 400),
    ] {
        let refused = Stream::open(&server, query, token).await.err();
        assert_eq!(refused.map(|r| r.0), Some(status), "{query}");
    }
    // 201 copies of one id are one device: allowed.
    drop(Stream::open(&server, &too_many, TOKEN).await.unwrap());
    let mut fleet = Stream::open(&server, "", TOKEN).await.unwrap();
    let mut own = Stream::open(&server, &format!("device={id_a}"), &token_a)
        .await
        .unwrap();
    let mut rows = Stream::open(&server, &format!("devices={id_b},{id_a}"), TOKEN)
        .await
        .unwrap();
    let mut only_b = Stream::open(&server, &format!("devices={id_b}"), TOKEN)
        .await
        .unwrap();

    let t = now();
    let a1 = a.sign_reading(&Reading::new(2.5, t - 2).with_seq(1));
    let v = send(&server, std::slice::from_ref(&a1)).await;
    let a1_id = v[0]["event_id"].clone();
    send(&server, &[b.sign_reading(&Reading::new(7.0, t - 2).with_seq(1))]).await;
    // Neither a duplicate nor a rejected envelope is streamed.
    let v = send(
        &server,
        &[a1.clone(), a1.replace("\"signature\":\"", "\"signature\":\"00")],
    )
    .await;
    assert_eq!(v[0]["status"], "duplicate", "{v}");
    assert_eq!(v[1]["status"], "rejected", "{v}");
    let v = send(&server, &[a.sign_reading(&Reading::new(3.5, t - 1).with_seq(2))]).await;
    let a2_id = v[0]["event_id"].clone();

    // The fleet's stream: every stored reading once, in commit order; the
    // applet's credits reaching the ledger are announced too.
    let r = fleet.readings_and_a_ledger_event(3).await;
    assert_eq!(
        r[0],
        json!({"kind": "reading", "device_id": id_a, "event_id": a1_id, "timestamp": t - 2, "w": 2.5})
    );
    assert_eq!(
        (r[1]["device_id"].as_str(), r[1]["w"].as_f64()),
        (Some(id_b.as_str()), Some(7.0))
    );
    assert_eq!(
        r[2]["event_id"], a2_id,
        "the duplicate and the rejected one were not streamed"
    );
    // The owner's stream: A's readings only (and the fleet-wide ledger news).
    let r = own.readings_and_a_ledger_event(2).await;
    assert_eq!((&r[0]["event_id"], &r[1]["event_id"]), (&a1_id, &a2_id));
    // The fleet page's stream for the rows it shows: those devices only.
    assert_eq!(rows.readings_and_a_ledger_event(3).await.len(), 3);
    let r = only_b.next_named("reading").await;
    assert_eq!(r["device_id"], id_b.as_str());
    // The next reading B's stream sees is B's next, not A's second.
    send(&server, &[b.sign_reading(&Reading::new(6.0, t).with_seq(2))]).await;
    assert_eq!(only_b.next_named("reading").await["w"], 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_and_every_stream_ends_when_the_processor_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_configured(dir.path(), "[dashboard]\nmax_streams = 2\n");
    let mut first = Stream::open(&server, "", TOKEN).await.unwrap();
    let _second = Stream::open(&server, "", TOKEN).await.unwrap();
    let (s, v) = Stream::open(&server, "", TOKEN).await.err().unwrap();
    assert_eq!((s, v["reason"].as_str()), (503, Some("too_many_streams")), "{v}");
    // The JSON API is not held up by the streams.
    assert_eq!(admin_get(&format!("{}/v1/fleet", server.url)).await.0, 200);

    server.terminate();
    assert_eq!(first.next().await, None, "the stream ends cleanly on shutdown");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_closed_it_gives_its_place_back_before_any_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_configured(dir.path(), "[dashboard]\nmax_streams = 1\n");
    let first = Stream::open(&server, "", TOKEN).await.unwrap();
    assert_eq!(Stream::open(&server, "", TOKEN).await.err().unwrap().0, 503);
    // A dashboard closed (or reloaded): its connection ends. Nothing is
    // written to it meanwhile, so only the server reading the socket can
    // tell (hyper does, without half-closes: `src/http.rs`); otherwise the
    // heartbeat's failed write would, 15 to 30 s on.
    let closed = std::time::Instant::now();
    drop(first);
    let mut refused = 0;
    let again = loop {
        match Stream::open(&server, "", TOKEN).await {
            Ok(s) => break s,
            Err((503, _)) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
        assert!(
            closed.elapsed() < Duration::from_secs(15),
            "the closed stream kept its place until a heartbeat ({refused} refusals)"
        );
    };
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_totals_agree_with_the_sealed_proofs() {
    let dir = tempfile::tempdir().unwrap();
    // Readings two hours old seal at once.
    let server = Server::start_configured(
        dir.path(),
        "[rewards]\nepoch_s = 3600\nseal_after_s = 0\ncap_per_epoch = 1000\n[limits]\nmax_future_s = 14400\n",
    );
    deploy_example(&server, "rewards-tiered").await;
    let mut stream = Stream::open(&server, "", TOKEN).await.unwrap();
    let epoch = now() / 3600 - 2;
    let keys: Vec<DeviceKey> = (0..2).map(|_| DeviceKey::generate()).collect();
    let mut ids = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        ids.push(register_with_owner(&server, k, Some(&format!("o{i}"))).await);
        let bodies: Vec<String> = (0..6u64)
            .map(|w| {
                let mut r = Reading::new(1.0 + i as f64 * 1.5, epoch * 3600 + 10 + w * 5).with_seq(w + 1);
                r.window_s = Some(5);
                k.sign_reading(&r)
            })
            .collect();
        send(&server, &bodies).await;
    }
    // Epochs are sealed in order: wait for this one's seal.
    while stream.next_named("seal").await["epoch"].as_u64() != Some(epoch) {}

    let (s, v) = get(&format!("{}/v1/epochs?limit=5", server.url)).await;
    assert_eq!(s, 200, "{v}");
    let sealed = v["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["epoch"] == epoch)
        .unwrap_or_else(|| panic!("epoch {epoch} in {v}"));
    assert_eq!(
        (sealed["epoch"].as_u64(), v["epoch_s"].as_u64()),
        (Some(epoch), Some(3600))
    );
    let mut sum = 0u128;
    for id in &ids {
        let (_, mine) = get(&format!("{}/v1/devices/{id}/epochs", server.url)).await;
        let e = &mine["epochs"][0];
        assert_eq!(
            (e["epoch"].as_u64(), e["sealed"].as_bool()),
            (Some(epoch), Some(true)),
            "{mine}"
        );
        let (_, proof) = get(&format!("{}/v1/epochs/{epoch}/proofs/{id}", server.url)).await;
        assert_eq!(
            e["units"], proof["proof"]["epoch_total"],
            "the device's total is its sealed leaf"
        );
        let units: u128 = e["units"].as_str().unwrap().parse().unwrap();
        assert!((e["tokens"].as_f64().unwrap() - units as f64 / 1e18).abs() < 1e-12);
        assert_eq!(sealed["root"], proof["seal"]["root"]);
        sum += e["units"].as_str().unwrap().parse::<u128>().unwrap();
    }
    assert!(sum > 0);
    assert_eq!(sealed["total_units"], sum.to_string());
    assert!((sealed["total_tokens"].as_f64().unwrap() - sum as f64 / 1e18).abs() < 1e-12);
    assert_eq!(sealed["devices"], 2);
    for bad in ["limit=-1", "limit=x", "other=1"] {
        let (s, _) = get(&format!("{}/v1/epochs?{bad}", server.url)).await;
        assert_eq!(s, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_with_a_strict_content_security_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let r = client().get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("/assets/app.js") && !page.contains("http"),
        "nothing from elsewhere"
    );
    for asset in ["app.js", "uPlot.iife.min.js", "verify.js"] {
        let r = client()
            .get(format!("{}/assets/{asset}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
    }
    let r = client()
        .get(format!("{}/assets/..%2FCargo.toml", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // `[dashboard] enabled = false`: no pages, the API as before.
    let dir = tempfile::tempdir().unwrap();
    let off = Server::start_configured(dir.path(), "[dashboard]\nenabled = false\n");
    assert_eq!(get(&format!("{}/", off.url)).await.0, 404);
    assert_eq!(get(&format!("{}/healthz", off.url)).await.0, 200);
}
