//! MQTT ingest against a real Mosquitto (each test runs its own, see
//! `common/broker.rs`), with envelopes published by Mosquitto's own clients
//! and by a real meter: answers on the results topic, the topic rule,
//! dedupe across HTTP and MQTT, W3bstream's topic form, restarts of the
//! broker and of the processor, and two processors sharing one stream.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::broker::{Broker, Sub, publish, publish_in_background};
use common::meter::Meter;
use common::*;
use serde_json::{Value, json};
use wattstream_sdk::wire::topics;
use wattstream_sdk::{DeviceKey, Reading};

fn mqtt_server(data: &Path, broker: &Broker) -> Server {
    Server::start_with(data, &["--admin-token", TOKEN, "--mqtt", &broker.url()])
}

/// Waits until the processor has subscribed (its `/healthz` says so).
async fn subscribed(server: &Server) {
    wait_for(
        "the processor to subscribe",
        Duration::from_secs(30),
        async || {
            let (_, h) = get(&format!("{}/healthz", server.url)).await;
            h["mqtt"]["connected"] == true
        },
    )
    .await;
}

async fn add(server: &Server, key: &DeviceKey) -> String {
    register(server, &key.public_key().to_hex()).await
}

/// Reading `seq` of a device, 5 s apart, all in the past (the processor
/// refuses readings from more than 5 minutes ahead).
fn envelope(key: &DeviceKey, seq: u64) -> String {
    key.sign_reading(&Reading::new(3.0, now() - 86_400 + 5 * seq).with_seq(seq))
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn answer(sub: &Sub) -> Value {
    let text = sub
        .next(Duration::from_secs(20))
        .expect("an answer on the results topic");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_published_with_mosquitto_pub_are_answered_on_the_results_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let server = mqtt_server(&dir.path().join("data"), &broker);
    let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
    let (id_a, id_b) = (add(&server, &a).await, add(&server, &b).await);
    subscribed(&server).await;
    let results = Sub::start(&broker, &topics::results(&id_a));
    let events = topics::events(&id_a);

    let first = envelope(&a, 1);
    publish(&broker, &events, std::slice::from_ref(&first));
    let one = answer(&results);
    assert_eq!(one["status"], "accepted", "{one}");
    assert_eq!(one["device_id"], id_a.as_str());

    let batch = format!("[{},{}]", envelope(&a, 2), envelope(&a, 3));
    publish(&broker, &events, &[batch]);
    let two = answer(&results);
    let statuses: Vec<&Value> = two["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!("accepted"), &json!("accepted")], "{two}");

    publish(&broker, &events, &[first]);
    assert_eq!(answer(&results)["status"], "duplicate");

    // B's envelope, valid in itself, on A's topic.
    publish(&broker, &events, &[envelope(&b, 1)]);
    let refused = answer(&results);
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert_eq!(refused["reason"], "topic_mismatch", "{refused}");
    // Not valid JSON: the error shape, as over HTTP.
    publish(&broker, &events, &["{not json".to_string()]);
    assert_eq!(answer(&results)["reason"], "malformed");

    assert_eq!(seqs(&all_events(&server, &id_a).await), [1, 2, 3]);
    assert!(
        all_events(&server, &id_b).await.is_empty(),
        "the mismatched envelope was not stored"
    );
    let m = metrics_text(&server).await;
    assert!(m.contains("wattstream_mqtt_connected 1"), "{m}");
    assert!(m.contains("wattstream_mqtt_messages_total 5"), "{m}");
    assert!(m.contains("reason=\"topic_mismatch\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_store_could_not_take_is_answered_503_and_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&dir.path().join("broker"));
    let server = mqtt_server(&data, &broker);
    let key = DeviceKey::generate();
    let id = add(&server, &key).await;
    subscribed(&server).await;
    // The store refuses new events (a full disk, say).
    let db = rusqlite::Connection::open(data.join("wattstream.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .unwrap();
    let results = Sub::start(&broker, &topics::results(&id));
    // Published once, by a client that never publishes again.
    publish(&broker, &topics::events(&id), &[envelope(&key, 1)]);
    assert_eq!(answer(&results)["reason"], "store_unavailable");
    assert!(all_events(&server, &id).await.is_empty());
    db.execute_batch("DROP TRIGGER full").unwrap();
    // The broker delivers it again because the processor did not acknowledge it.
    wait_for(
        "the message to be stored once the store is back",
        Duration::from_secs(30),
        async || seqs(&all_events(&server, &id).await) == [1],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_sent_over_http_and_over_mqtt_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let server = mqtt_server(&dir.path().join("data"), &broker);
    let key = DeviceKey::generate();
    let id = add(&server, &key).await;
    subscribed(&server).await;
    let body = envelope(&key, 7);
    let (status, a) = post(&format!("{}/v1/events", server.url), body.clone()).await;
    assert_eq!((status, &a["status"]), (200, &json!("accepted")), "{a}");
    let results = Sub::start(&broker, &topics::results(&id));
    publish(&broker, &topics::events(&id), &[body]);
    assert_eq!(answer(&results)["status"], "duplicate");
    assert_eq!(seqs(&all_events(&server, &id).await), [7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3bstream_publishers_reach_a_projects_applets_on_the_project_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let server = mqtt_server(&dir.path().join("data"), &broker);
    subscribed(&server).await;
    let token = &w3b_project_with_publisher(&server).await;
    let calls = async |n: usize| {
        let m = metrics_text(&server).await;
        m.contains(&format!(
            "wattstream_applet_calls_total{{project=\"w3b\",applet=\"readings\",outcome=\"ok\"}} {n}"
        ))
    };

    // W3bstream's event JSON, as its Go publisher writes it (bytes in base64).
    let event = |token: &str| {
        let payload = envelope(&DeviceKey::generate(), 1);
        json!({
            "header": {"event_type": "DEFAULT", "pub_id": "meter-1", "token": token, "pub_time": 1_795_000_000_000u64},
            "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        })
        .to_string()
    };
    // A wrong token first: it must not run (the count below stays exact).
    publish(&broker, "w3b", &[event("wsp_wrong"), event(token)]);
    wait_for("the applet to run once", Duration::from_secs(20), async || {
        calls(1).await
    })
    .await;
    publish(&broker, "w3b", &[event(token)]);
    wait_for("the applet to run again", Duration::from_secs(20), async || {
        calls(2).await
    })
    .await;
}

/// Every seq the meter made is stored once or still in its outbox: nothing
/// lost, nothing stored twice.
async fn assert_nothing_lost(server: &Server, meter: &Meter) {
    let stored = seqs(&all_events(server, &meter.device_id).await);
    let unique: BTreeSet<u64> = stored.iter().copied().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "a window was stored twice: {stored:?}"
    );
    let outbox = wattstream_device::outbox::Outbox::open(&meter.dir.join("data"), 1_000_000).unwrap();
    let next = outbox.next_seq().unwrap();
    let waiting: BTreeSet<u64> = outbox.peek(1_000_000).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(outbox.dead_lettered().unwrap(), 0);
    // The meter numbers its windows consecutively from its first one.
    let first = unique
        .iter()
        .chain(&waiting)
        .min()
        .copied()
        .expect("windows were made");
    for seq in first..next {
        assert!(
            unique.contains(&seq) || waiting.contains(&seq),
            "window {seq} is neither stored nor in the outbox (stored {stored:?}, waiting {waiting:?})"
        );
    }
    assert!(
        unique.iter().all(|s| *s < next),
        "stored a seq the meter never made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_over_mqtt_delivers_every_window_through_a_broker_restart_and_a_processor_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&dir.path().join("broker"));
    let mut server = mqtt_server(&data, &broker);
    let mdir = dir.path().join("meter");
    let (config, id, pk) = Meter::provision(&mdir, &broker.url(), "");
    register(&server, &pk).await;
    subscribed(&server).await;
    let mut meter = Meter::start(&mdir, &config, id.clone(), pk);
    let count = async |server: &Server| all_events(server, &id).await.len();
    wait_for("three windows over MQTT", Duration::from_secs(60), async || {
        count(&server).await >= 3
    })
    .await;

    broker.restart();
    let n = count(&server).await;
    wait_for(
        "windows after the broker restart",
        Duration::from_secs(60),
        async || count(&server).await >= n + 3,
    )
    .await;

    server.kill();
    wait_for(
        "windows to wait in the outbox",
        Duration::from_secs(30),
        async || {
            meter
                .state()
                .is_some_and(|s| s["link"]["outbox_depth"].as_u64() >= Some(3))
        },
    )
    .await;
    let server = mqtt_server(&data, &broker);
    let n = count(&server).await;
    wait_for(
        "windows after the processor restart",
        Duration::from_secs(60),
        async || count(&server).await >= n + 5,
    )
    .await;
    meter.stop();
    assert_nothing_lost(&server, &meter).await;
}

/// An `LD_PRELOAD` shim that makes every `fsync`/`fdatasync` take 50 ms.
fn slow_fsync_shim(dir: &Path) -> std::path::PathBuf {
    const SRC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    usleep(50000);
    return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    usleep(50000);
    return real(fd);
}
"#;
    let (src, so) = (dir.join("slow-fsync.c"), dir.join("slow-fsync.so"));
    std::fs::write(&src, SRC).unwrap();
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("a C compiler (build-essential) builds the shim");
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    so
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_killed_processor_had_not_acknowledged_are_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&dir.path().join("broker"));
    // Each sync to disk takes 20 ms (an SD card's worth), so a kill lands
    // between a message's arrival and its commit, where an early ack would lose it.
    let shim = slow_fsync_shim(dir.path());
    let env = [("LD_PRELOAD", shim.as_os_str())];
    // And few messages in flight, so the stream lasts a few seconds.
    let cfg = dir.path().join("wattstream.toml");
    std::fs::write(&cfg, "[mqtt]\nmax_inflight = 8\n").unwrap();
    let args = [
        "--admin-token",
        TOKEN,
        "--mqtt",
        &broker.url(),
        "--config",
        cfg.to_str().unwrap(),
    ];
    let mut server = Server::start_env(&data, &args, &env);
    let key = DeviceKey::generate();
    let id = add(&server, &key).await;
    subscribed(&server).await;
    // mosquitto_pub never publishes twice: whatever the broker counted as
    // delivered before the processor committed it would be gone for good.
    let total = 500u64;
    let messages: Vec<String> = (1..=total).map(|s| envelope(&key, s)).collect();
    let mut publisher = publish_in_background(&broker, &topics::events(&id), &messages);
    wait_for(
        "some of the stream to be stored",
        Duration::from_secs(60),
        async || !all_events(&server, &id).await.is_empty(),
    )
    .await;
    server.kill();
    assert!(publisher.wait().unwrap().success(), "mosquitto_pub failed");
    let at_kill: i64 = rusqlite::Connection::open(data.join("wattstream.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(
        (at_kill as u64) < total,
        "the processor was killed after the whole stream ({at_kill}): nothing tested"
    );
    let server = Server::start_env(&data, &args, &env);
    wait_for(
        "every message to be stored after the restart",
        Duration::from_secs(120),
        async || all_events(&server, &id).await.len() as u64 == total,
    )
    .await;
    assert_eq!(
        seqs(&all_events(&server, &id).await),
        (1..=total).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_on_one_broker_split_the_stream_and_store_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let servers = [
        mqtt_server(&dir.path().join("one"), &broker),
        mqtt_server(&dir.path().join("two"), &broker),
    ];
    let key = DeviceKey::generate();
    let mut id = String::new();
    for s in &servers {
        id = add(s, &key).await;
        subscribed(s).await;
    }
    let total = 60u64;
    let messages: Vec<String> = (1..=total).map(|s| envelope(&key, s)).collect();
    publish(&broker, &topics::events(&id), &messages);
    let mut split = [Vec::new(), Vec::new()];
    wait_for("the stream to be stored", Duration::from_secs(60), async || {
        for (i, s) in servers.iter().enumerate() {
            split[i] = seqs(&all_events(s, &id).await);
        }
        (split[0].len() + split[1].len()) as u64 >= total
    })
    .await;
    assert!(
        !split[0].is_empty() && !split[1].is_empty(),
        "both took a share: {split:?}"
    );
    let mut all: Vec<u64> = split.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "each event stored once, by one of them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mqtts_a_meter_pinned_to_the_brokers_ca_delivers_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (
        common::pki::Ca::new("broker CA"),
        common::pki::Ca::new("another CA"),
    );
    let (crt, key) = ca.server(dir.path(), "broker");
    let broker = Broker::start_with_tls(&dir.path().join("broker"), &crt, &key);
    let ca_file = ca.write(dir.path(), "ca.pem");
    let other_file = other.write(dir.path(), "other.pem");
    // The processor over TLS too, trusting the broker's CA.
    let cfg = dir.path().join("wattstream.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mqtt]\nurl = \"{}\"\nca = \"{}\"\n",
            broker.tls_url(),
            ca_file.display()
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--admin-token", TOKEN, "--config", cfg.to_str().unwrap()],
    );
    subscribed(&server).await;
    let mut meters = Vec::new();
    for (name, ca) in [("good", &ca_file), ("wrong", &other_file)] {
        let mdir = dir.path().join(name);
        let (config, id, pk) = Meter::provision(
            &mdir,
            &broker.tls_url(),
            &format!("tls_ca = \"{}\"", ca.display()),
        );
        register(&server, &pk).await;
        meters.push(Meter::start(&mdir, &config, id, pk));
    }
    let (good, wrong) = (&meters[0], &meters[1]);
    wait_for("windows over mqtts", Duration::from_secs(60), async || {
        all_events(&server, &good.device_id).await.len() >= 3
    })
    .await;
    wait_for(
        "the wrongly pinned meter to say untrusted",
        Duration::from_secs(60),
        async || {
            wrong.state().is_some_and(|s| {
                s["link"]["status"] == "untrusted" && s["link"]["outbox_depth"].as_u64() >= Some(2)
            })
        },
    )
    .await;
    assert!(all_events(&server, &wrong.device_id).await.is_empty());
}
