//! Several processors on one PostgreSQL database, as real `wattstream serve`
//! processes: they share ingest, the registry, deployed applets and one
//! ledger; each event runs through the chain once and is credited once, even
//! when a processor is killed with SIGKILL mid-stream. Every balance equals
//! what one SQLite processor computes from the same readings.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::pg::TestDb;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_sdk::proof::{ProofView, SealView, verify};
use wattstream_sdk::{DeviceKey, PublicKey, Reading};

/// Readings two to three hours old (the start of the hour before last) seal
/// at once; the paid-time rule pays readings from before registration only
/// within the clock skew, so allow four hours. (Three hours left the first
/// reading only seconds after a registration made late in the hour, less
/// skew: run at 11:00, a processor registering a few seconds after the one
/// it is compared with paid that reading 5 s instead of 10.) The cap is out
/// of reach: balances do not depend on when a seal happened.
/// `log_level = "debug"`: [`ran_once_each`] counts the tiered applet's
/// per-call line, which it logs at debug.
const CONFIG: &str = "[rewards]\nepoch_s = 3600\nseal_after_s = 0\ncap_per_epoch = 1000\n\
                      [limits]\nmax_future_s = 14400\n[applets]\nlog_level = \"debug\"\n";

fn config(dir: &Path) -> String {
    let path = dir.join("wattstream.toml");
    std::fs::write(&path, CONFIG).unwrap();
    path.to_str().unwrap().to_string()
}

fn start(dir: &Path, store: Option<&str>) -> Server {
    let config = config(dir);
    let mut args = vec!["--admin-token", TOKEN, "--config", &config];
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    Server::start_with(dir, &args)
}

/// `n` readings of `watts` (under 5 W: the tiered applet pays each) every
/// 5 s from `t0`, signed, in order. Each claims a 10 s window, as an owner
/// after more tokens would: the paid-time rule pays each reading only the
/// seconds since the last paid one, which holds only if one reading of a
/// device is paid at a time, in order, whichever processor runs it.
fn windows(key: &DeviceKey, watts: f64, t0: u64, n: u64) -> Vec<String> {
    signed_windows(key, watts, t0, n, 10)
}

fn two_hours_ago() -> u64 {
    let now = wattstream_sdk::time::unix_now();
    (now / 3600 - 2) * 3600 + 10
}

async fn deploy_tiered(server: &Server) {
    let wasm = std::fs::read(dist("rewards-tiered")).unwrap();
    deploy_ok(server, "default", "rewards-tiered", wasm).await;
}

async fn register_all(server: &Server, keys: &[DeviceKey]) {
    for k in keys {
        let (s, _) = admin(
            Method::POST,
            &format!("{}/v1/devices", server.url),
            TOKEN,
            Some(json!({"public_key": k.public_key().to_hex(), "owner": "o"})),
        )
        .await;
        assert_eq!(s, 201);
    }
}

/// Whether `url` answered that it stored `body` (accepted, or a duplicate of
/// what is stored).
async fn stored_by(url: &str, body: &str) -> bool {
    let Ok(r) = client()
        .post(format!("{url}/v1/events"))
        .body(body.to_string())
        .send()
        .await
    else {
        return false;
    };
    let v: Value = r.json().await.unwrap_or_default();
    matches!(v["status"].as_str(), Some("accepted" | "duplicate"))
}

/// Posts one envelope until a processor has stored it (an unanswered try
/// goes to the next processor, as a meter's outbox resends it), then sends
/// it to a second processor too, as a meter behind a load balancer that
/// retried would: the second stores nothing new.
async fn deliver(urls: &[String], first: usize, body: &str) {
    for attempt in 0..200 {
        let at = (first + attempt) % urls.len();
        if stored_by(&urls[at], body).await {
            let _ = stored_by(&urls[(at + 1) % urls.len()], body).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no processor stored {body}");
}

/// `rewards replay` on the store reproduces every seal.
fn replays(db: &TestDb, dir: &Path) {
    let out = cli(&[
        "rewards",
        "replay",
        "--store",
        &db.url,
        "--data-dir",
        dir.to_str().unwrap(),
        "--config",
        dir.join("wattstream.toml").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("seal matches") && !text.contains("DIFFERS"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ledger head once it has `entries` entries and a seal.
async fn settled_head(url: &str, entries: u64) -> Value {
    let mut head = Value::Null;
    wait_for(
        "every credit in the ledger and sealed",
        Duration::from_secs(60),
        async || {
            head = get(&format!("{url}/v1/ledger/head")).await.1;
            head["seq"].as_u64() == Some(entries) && !head["last_sealed_epoch"].is_null()
        },
    )
    .await;
    head
}

async fn balances(url: &str, keys: &[DeviceKey]) -> HashMap<String, u128> {
    let mut out = HashMap::new();
    for k in keys {
        let (_, v) = get(&format!("{url}/v1/devices/{}/rewards", k.device_id())).await;
        out.insert(
            k.device_id().to_string(),
            v["balance_units"].as_str().unwrap().parse().unwrap(),
        );
    }
    out
}

/// What one SQLite processor makes of the same readings.
async fn reference(keys: &[DeviceKey], readings: &[Vec<String>]) -> HashMap<String, u128> {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None);
    deploy_tiered(&server).await;
    register_all(&server, keys).await;
    for r in readings {
        let (s, _) = post(&format!("{}/v1/events", server.url), format!("[{}]", r.join(","))).await;
        assert_eq!(s, 200);
    }
    settled_head(&server.url, readings.iter().map(Vec::len).sum::<usize>() as u64).await;
    balances(&server.url, keys).await
}

/// What every processor on one database shares with the first: its
/// processor key (each may seal; meters pin one key) and its read-token
/// secret (an owner's token opens every processor).
const SHARED: [&str; 2] = ["processor-key.pem", "read-token-secret"];

/// Starts three processors on `db`, the second and third with the first's
/// [`SHARED`] files.
fn three(db: &TestDb, dirs: &[tempfile::TempDir; 3]) -> Vec<Server> {
    let a = start(dirs[0].path(), Some(&db.url));
    for d in &dirs[1..] {
        for f in SHARED {
            std::fs::copy(dirs[0].path().join(f), d.path().join(f)).unwrap();
        }
    }
    let mut servers = vec![a];
    servers.extend(dirs[1..].iter().map(|d| start(d.path(), Some(&db.url))));
    servers
}

/// Each event ran through the chain once: the tiered applet logs one line
/// per call that was kept, so one line per event, none twice.
async fn ran_once_each(url: &str, events: usize) {
    let (s, v) = admin_get(&format!("{url}/v1/projects/default/logs?limit=1000")).await;
    assert_eq!(s, 200, "{v}");
    let mut ids: Vec<i64> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), events, "one applet call kept per event");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events, "no event ran twice");
}

/// Ends every other session on the test database.
async fn terminate_sessions(db: &TestDb) {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n > 0, "the processors had sessions");
}

/// The proofs `url` serves verify under `key`. (A device whose first credit
/// came after the newest seal has no leaf in it yet: seals happen while the
/// stream comes in, so not every device has a proof.)
async fn proofs_verify(url: &str, keys: &[DeviceKey], key: &PublicKey) {
    let mut checked = 0;
    for k in keys {
        let (_, v) = get(&format!("{url}/v1/devices/{}/rewards", k.device_id())).await;
        if v["proof"].is_null() {
            continue;
        }
        let seal: SealView = serde_json::from_value(v["latest_epoch"].clone()).unwrap();
        let proof: ProofView = serde_json::from_value(v["proof"].clone()).unwrap();
        verify(&seal, &proof, key).expect("the proof checks");
        checked += 1;
    }
    assert!(checked > 0, "no proof served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processors_on_one_postgres_share_a_fleet_and_keep_one_ledger() {
    let db = TestDb::create().await;
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let servers = three(&db, &dirs);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    // Deployed through one, registered through another: the third hears both.
    deploy_tiered(&servers[0]).await;
    let keys: Vec<DeviceKey> = (0..9).map(|_| DeviceKey::generate()).collect();
    register_all(&servers[1], &keys).await;
    let t0 = two_hours_ago();
    let readings: Vec<Vec<String>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| windows(k, 1.0 + i as f64 * 0.4, t0, 30))
        .collect();
    // Each device sends to its own processor, in order; the devices at once.
    let mut sends = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        let (urls, r) = (urls.clone(), r.clone());
        sends.push(tokio::spawn(async move {
            for body in &r {
                deliver(&urls, i % 3, body).await;
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let head = settled_head(&urls[2], 9 * 30).await;
    ran_once_each(&urls[0], 9 * 30).await;
    for url in &urls {
        assert_eq!(get(&format!("{url}/v1/ledger/head")).await.1, head, "one ledger");
    }
    let fleet = balances(&urls[0], &keys).await;
    assert_eq!(fleet, reference(&keys, &readings).await);
    let pinned = PublicKey::from_hex(head["processor_public_key"].as_str().unwrap()).unwrap();
    proofs_verify(&urls[1], &keys, &pinned).await;
    let out = cli(&[
        "rewards",
        "verify",
        "--store",
        &db.url,
        "--public-key",
        &pinned.to_hex(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    replays(&db, dirs[0].path());

    // An owner's read token from one processor opens the others.
    let id = keys[1].device_id().to_string();
    let (s, t) = admin(
        Method::POST,
        &format!("{}/v1/devices/{id}/read-token", urls[0]),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let token = t["token"].as_str().unwrap();
    for url in &urls {
        let (s, v) = get_as(&format!("{url}/v1/devices/{id}"), Some(token)).await;
        assert_eq!(s, 200, "{v}");
    }

    // A revocation through one processor is enforced by the others.
    let (s, _) = admin(
        Method::DELETE,
        &format!("{}/v1/devices/{}", urls[2], keys[0].device_id()),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let mut later = Reading::new(2.0, wattstream_sdk::time::unix_now()).with_seq(1000);
    later.window_s = Some(5);
    let body = keys[0].sign_reading(&later);
    for url in &urls[..2] {
        wait_for("the revocation everywhere", Duration::from_secs(1), async || {
            post(&format!("{url}/v1/events"), body.clone()).await.1["reason"] == "revoked_device"
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_killed_mid_stream_and_dropped_sessions_lose_nothing_and_credit_nothing_twice() {
    let db = TestDb::create().await;
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let mut servers = three(&db, &dirs);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    deploy_tiered(&servers[2]).await;
    let keys: Vec<DeviceKey> = (0..6).map(|_| DeviceKey::generate()).collect();
    register_all(&servers[0], &keys).await;
    let t0 = two_hours_ago();
    let readings: Vec<Vec<String>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| windows(k, 1.5 + i as f64 * 0.5, t0, 120))
        .collect();
    let halfway = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut sends = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        let (urls, r, halfway) = (urls.clone(), r.clone(), halfway.clone());
        // Devices 0 and 3 send to the processor that is killed; an unanswered
        // envelope goes to the next processor, as a meter's outbox resends it.
        sends.push(tokio::spawn(async move {
            for (n, body) in r.iter().enumerate() {
                deliver(&urls, i % 3, body).await;
                if i == 0 && n == r.len() / 2 {
                    halfway.notify_one();
                }
            }
        }));
    }
    // Half of device 0's stream is in: the first processor is ingesting,
    // running applets and perhaps accruing when it dies.
    halfway.notified().await;
    servers[0].kill();
    // And the database drops every session of the survivors (a failover, an
    // operator's pg_terminate_backend): they reconnect and carry on.
    terminate_sessions(&db).await;
    for s in sends {
        s.await.unwrap();
    }
    let head = settled_head(&urls[1], 6 * 120).await;
    ran_once_each(&urls[2], 6 * 120).await;
    assert_eq!(get(&format!("{}/v1/ledger/head", urls[2])).await.1, head);
    assert_eq!(balances(&urls[2], &keys).await, reference(&keys, &readings).await);
    // Restarted, it agrees (its start checks the ledger the others extended).
    servers[0] = start(dirs[0].path(), Some(&db.url));
    assert_eq!(get(&format!("{}/v1/ledger/head", servers[0].url)).await.1, head);
    let out = cli(&[
        "rewards",
        "verify",
        "--store",
        &db.url,
        "--data-dir",
        dirs[0].path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    replays(&db, dirs[1].path());
}

/// A processor holding another processor key or read-token secret than the
/// ones already on the database refuses to start, naming the file to copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_with_another_key_or_secret_refuses_to_join() {
    let db = TestDb::create().await;
    let first = tempfile::tempdir().unwrap();
    let _a = start(first.path(), Some(&db.url));
    for missing in SHARED {
        let dir = tempfile::tempdir().unwrap();
        for f in SHARED.iter().filter(|f| **f != missing) {
            std::fs::copy(first.path().join(f), dir.path().join(f)).unwrap();
        }
        let config = config(dir.path());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattstream"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &db.url,
                "--config",
                &config,
                "--data-dir",
            ])
            .arg(dir.path())
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "joined with its own {missing}");
        assert!(said.contains(missing), "{said}");
    }
}

/// The database refusing connections (a restart, a failover): `/healthz` and
/// ingest answer 503 `store_unavailable`, nothing is acknowledged, and once it
/// is back the processor serves again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_is_answered_503_and_served_again_when_back() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(&db.url));
    let key = DeviceKey::generate();
    register_all(&server, std::slice::from_ref(&key)).await;
    let (admin_client, conn) = tokio_postgres::connect(&common::pg::admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    admin_client
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    let body = windows(&key, 2.0, two_hours_ago() + 7200, 1).remove(0);
    let (s, v) = get(&format!("{}/healthz", server.url)).await;
    assert_eq!((s, v["reason"].as_str()), (503, Some("store_unavailable")), "{v}");
    let (s, v) = post(&format!("{}/v1/events", server.url), body.clone()).await;
    assert_eq!(s, 503, "{v}");
    admin_client
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    wait_for("the store back", Duration::from_secs(10), async || {
        get(&format!("{}/healthz", server.url)).await.0 == 200
    })
    .await;
    let (s, v) = post(&format!("{}/v1/events", server.url), body).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("accepted")), "{v}");
}
