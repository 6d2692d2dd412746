//! `GET /v1/devices/{id}/series`: a device's power for charts, downsampled
//! in the store into fixed buckets (`[from + k·b, from + (k+1)·b)`): the
//! readings at a bucket's first second are in it, those at the span's end
//! are not; min, max, mean and energy per bucket, a claimed window capped
//! as paid time caps it. Admin or the device's own read token.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;
use wattstream_sdk::{DeviceKey, Reading};

on_both_engines!(power_is_downsampled_into_fixed_buckets_with_exact_edges,);

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

async fn power_is_downsampled_into_fixed_buckets_with_exact_edges(engine: Engine) {
    let store = TestStore::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let server = store.start(dir.path(), &[]);
    let key = DeviceKey::generate();
    let id = register(&server, &key.public_key().to_hex()).await;
    // The hour [from, to), ending on an hour an hour ago.
    let to = (now() as i64 / 3600 - 1) * 3600;
    let from = to - 3600;
    // (timestamp, watts, claimed window)
    let readings = [
        (from - 1, 100.0, 5),  // before the span
        (from, 10.0, 5),       // its first second
        (from + 59, 30.0, 10), // the same minute
        (from + 60, 7.0, 5),   // the next minute
        (to - 1, 4.0, 3600),   // the last second; the window counts as 60 s
        (to, 1000.0, 5),       // the span's end: not in it
    ];
    let bodies: Vec<String> = readings
        .iter()
        .enumerate()
        .map(|(i, (t, w, window))| {
            let mut r = Reading::new(*w, *t as u64).with_seq(i as u64 + 1);
            r.window_s = Some(*window);
            key.sign_reading(&r)
        })
        .collect();
    let (s, v) = post(
        &format!("{}/v1/events", server.url),
        format!("[{}]", bodies.join(",")),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let url = |q: &str| format!("{}/v1/devices/{id}/series?{q}", server.url);
    let (s, v) = admin_get(&url(&format!("range=hour&to={to}"))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["from"].as_i64(), v["bucket_s"].as_i64()),
        (Some(from), Some(60))
    );
    let b = v["buckets"].as_array().unwrap();
    let starts: Vec<i64> = b.iter().map(|x| x["t"].as_i64().unwrap()).collect();
    assert_eq!(starts, [from, from + 60, to - 60], "{v}");
    let counts: Vec<i64> = b.iter().map(|x| x["n"].as_i64().unwrap()).collect();
    assert_eq!(counts, [2, 1, 1]);
    assert!(close(&b[0]["min_w"], 10.0) && close(&b[0]["max_w"], 30.0) && close(&b[0]["avg_w"], 20.0));
    assert!(
        close(&b[0]["energy_wh"], (10.0 * 5.0 + 30.0 * 10.0) / 3600.0),
        "{v}"
    );
    assert!(
        close(&b[2]["energy_wh"], 4.0 * 60.0 / 3600.0),
        "a claimed hour counts as 60 s: {v}"
    );

    // Half-hour buckets; and a day ending now holds every reading.
    let (_, v) = admin_get(&url(&format!("range=hour&to={to}&bucket_s=1800"))).await;
    let counts: Vec<i64> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["n"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 1], "{v}");
    let (_, v) = admin_get(&url("range=day")).await;
    let total: i64 = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["n"].as_i64().unwrap())
        .sum();
    assert_eq!((total, v["bucket_s"].as_i64()), (6, Some(900)), "{v}");

    for bad in [
        "range=year",
        "bucket_s=4",
        "range=hour&bucket_s=3",
        "range=hour&bucket_s=7200",
    ] {
        assert_eq!(admin_get(&url(bad)).await.0, 400, "{bad}");
    }
    let stranger = DeviceKey::generate().device_id().to_string();
    let (s, _) = admin_get(&format!("{}/v1/devices/{stranger}/series", server.url)).await;
    assert_eq!(s, 404);

    // The device's own read token, not another's, not none.
    let other = DeviceKey::generate();
    let other_id = register(&server, &other.public_key().to_hex()).await;
    let (own, others) = (
        read_token(&server, &id).await,
        read_token(&server, &other_id).await,
    );
    assert_eq!(get(&url("range=hour")).await.0, 401);
    assert_eq!(get_as(&url("range=hour"), Some(&others)).await.0, 401);
    assert_eq!(get_as(&url("range=hour"), Some(&own)).await.0, 200);
}

async fn read_token(server: &Server, device: &str) -> String {
    let path = format!("{}/v1/devices/{device}/read-token", server.url);
    let (s, t) = admin(Method::POST, &path, TOKEN, None).await;
    assert!(s < 300, "{s} {t}");
    t["token"].as_str().unwrap().to_string()
}
