//! `power-meter run --sim` against a local processor stand-in that the test
//! controls: delivery, order, outages, SIGKILL, dead letters, start-up errors.
//! Windows are 1 s and samples 50 ms so the tests see many windows quickly.

#[path = "../../sdk/tests/support/runner.rs"]
mod runner;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use wattstream_sdk::{Envelope, VerifyPath};

/// What the stand-in received.
#[derive(Default)]
struct Received {
    /// seq -> body, every delivery.
    bodies: BTreeMap<u64, String>,
    /// seqs in arrival order (each delivery).
    order: Vec<u64>,
    /// Bodies that failed verification or resent with other content.
    problems: Vec<String>,
}

struct Mock {
    received: Mutex<Received>,
    down: AtomicBool,
    /// A seq the stand-in refuses with HTTP 400.
    poison: Mutex<Option<u64>>,
    /// Poison the second envelope of the first batch that arrives.
    poison_second_of_next_batch: AtomicBool,
}

fn verdict(mock: &Mock, body: &str) -> (Value, bool) {
    let env = match Envelope::parse(body.as_bytes()) {
        Ok(e) => e,
        Err(e) => return (json!({"status": "rejected", "reason": e.code()}), false),
    };
    let seq = env.reading().seq.expect("the meter always sends seq");
    if *mock.poison.lock().unwrap() == Some(seq) {
        return (
            json!({"status": "rejected", "reason": "bad_signature", "detail": "poisoned by the test"}),
            false,
        );
    }
    let mut r = mock.received.lock().unwrap();
    if env.verify(VerifyPath::Reference).is_err() {
        r.problems.push(format!("seq {seq} does not verify"));
    }
    r.order.push(seq);
    let status = match r.bodies.get(&seq) {
        Some(old) if old != body => {
            r.problems
                .push(format!("seq {seq} sent again with other content"));
            "duplicate"
        }
        Some(_) => "duplicate",
        None => {
            r.bodies.insert(seq, body.to_string());
            "accepted"
        }
    };
    (
        json!({"status": status, "device_id": env.device_id().to_string()}),
        true,
    )
}

async fn events(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    if mock.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let text = String::from_utf8(body.to_vec()).unwrap();
    if text.trim_start().starts_with('[') {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text).unwrap();
        if items.len() >= 2 && mock.poison_second_of_next_batch.swap(false, Ordering::SeqCst) {
            *mock.poison.lock().unwrap() = Envelope::parse(items[1].get().as_bytes()).unwrap().reading().seq;
        }
        let poison = *mock.poison.lock().unwrap();
        let poisoned = items.iter().any(|i| {
            Envelope::parse(i.get().as_bytes())
                .ok()
                .and_then(|e| e.reading().seq)
                == poison
                && poison.is_some()
        });
        if poisoned {
            // Refuse the whole request: the meter must sort it out one by one.
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "rejected", "reason": "malformed"})),
            )
                .into_response();
        }
        let results: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let mut v = verdict(&mock, item.get()).0;
                v["index"] = json!(i);
                v
            })
            .collect();
        return axum::Json(json!({ "results": results })).into_response();
    }
    let (v, ok) = verdict(&mock, &text);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, axum::Json(v)).into_response()
}

struct Stand {
    mock: Arc<Mock>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Stand {
    async fn start() -> Stand {
        let mock = Arc::new(Mock {
            received: Mutex::default(),
            down: AtomicBool::new(false),
            poison: Mutex::new(None),
            poison_second_of_next_batch: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stand = Stand {
            mock,
            addr,
            server: None,
        };
        stand.serve(listener);
        stand
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/v1/events", post(events))
            .with_state(self.mock.clone());
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    /// An outage: no new connections, 503 on kept-alive ones.
    fn go_down(&mut self) {
        self.mock.down.store(true, Ordering::SeqCst);
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    async fn come_back(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
        self.mock.down.store(false, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seqs(&self) -> Vec<u64> {
        self.mock
            .received
            .lock()
            .unwrap()
            .bodies
            .keys()
            .copied()
            .collect()
    }

    fn order(&self) -> Vec<u64> {
        self.mock.received.lock().unwrap().order.clone()
    }

    fn problems(&self) -> Vec<String> {
        self.mock.received.lock().unwrap().problems.clone()
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut(&Stand) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; got {:?}",
                self.seqs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Meter {
    child: Child,
}

impl Drop for Meter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn power_meter() -> Command {
    let mut c = runner::command(env!("CARGO_BIN_EXE_power-meter"));
    c.env("RUST_LOG", "warn");
    c
}

fn provision(dir: &Path) -> PathBuf {
    let key = dir.join("device.pem");
    let out = power_meter()
        .args(["keygen", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    key
}

fn config(dir: &Path, processor: &str) -> PathBuf {
    let path = dir.join("meter.toml");
    std::fs::write(
        &path,
        format!(
            "processor = \"{processor}\"\nkey = \"{key}\"\ndata_dir = \"{data}\"\nwindow_s = 1\nsample_ms = 50\nclock_sync_command = []\n\
             [sim]\nprofile = \"constant\"\nwatts = 6.0\n\
             [uplink]\nbatch = 20\nbackoff_min_ms = 100\nbackoff_max_s = 1\nrewards_poll_s = 3600\n",
            key = dir.join("device.pem").display(),
            data = dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn start_meter(config: &Path) -> Meter {
    Meter {
        child: power_meter()
            .args(["run", "--sim", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    }
}

fn assert_contiguous(seqs: &[u64]) {
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "gap in seq: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_arrive_signed_in_order_and_survive_a_30_s_outage() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let mut stand = Stand::start().await;
    let _meter = start_meter(&config(dir.path(), &stand.url()));
    stand.wait_for("three windows", |s| s.seqs().len() >= 3).await;
    let order = stand.order();
    assert!(
        order.windows(2).all(|p| p[1] > p[0]),
        "seq strictly increasing: {order:?}"
    );
    assert_contiguous(&stand.seqs());

    // 30 seconds without the processor.
    stand.go_down();
    let before = *stand.seqs().last().unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("data/state.json")).unwrap()).unwrap();
    assert_eq!(state["link"]["status"], "offline", "{state}");
    assert!(state["link"]["outbox_depth"].as_u64().unwrap() >= 25, "{state}");
    stand.come_back().await;

    stand
        .wait_for("the backlog", |s| {
            s.seqs().last().copied().unwrap_or(0) >= before + 31
        })
        .await;
    let seqs = stand.seqs();
    assert_contiguous(&seqs);
    // After the outage everything arrives in order.
    let after: Vec<u64> = stand.order().into_iter().filter(|s| *s > before).collect();
    assert!(
        after.windows(2).all(|p| p[1] > p[0]),
        "backlog out of order: {after:?}"
    );
    assert!(stand.problems().is_empty(), "{:?}", stand.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_continue_seq_without_gap_or_changed_content() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let stand = Stand::start().await;
    let cfg = config(dir.path(), &stand.url());
    let mut meter = start_meter(&cfg);
    stand.wait_for("four windows", |s| s.seqs().len() >= 4).await;
    meter.child.kill().unwrap(); // SIGKILL
    meter.child.wait().unwrap();
    let before = *stand.seqs().last().unwrap();

    let _meter = start_meter(&cfg);
    stand
        .wait_for("windows after the restart", |s| {
            s.seqs().last().copied().unwrap_or(0) >= before + 3
        })
        .await;
    let seqs = stand.seqs();
    assert_contiguous(&seqs);
    assert!(stand.problems().is_empty(), "{:?}", stand.problems());
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_window_goes_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let mut stand = Stand::start().await;
    // Hold the processor down so a batch builds up, with one poisoned entry in it.
    stand.go_down();
    let _meter = start_meter(&config(dir.path(), &stand.url()));
    let data = dir.path().join("data");
    stand
        .mock
        .poison_second_of_next_batch
        .store(true, Ordering::SeqCst);
    // Until a batch of several windows waits in the outbox.
    let depth = || {
        std::fs::read_to_string(data.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|s| s["link"]["outbox_depth"].as_u64())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while depth() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no backlog builds up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stand.come_back().await;
    stand
        .wait_for("the poisoned batch", |s| s.mock.poison.lock().unwrap().is_some())
        .await;
    let poison = stand.mock.poison.lock().unwrap().unwrap();
    stand
        .wait_for("windows after the poisoned one", |s| {
            s.seqs().iter().any(|&q| q > poison + 2)
        })
        .await;

    let dead = std::fs::read_to_string(data.join("dead-letter.jsonl")).unwrap();
    let lines: Vec<Value> = dead.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{dead}");
    assert_eq!(lines[0]["seq"], poison);
    assert_eq!(lines[0]["reason"], "bad_signature");
    assert!(Envelope::parse(lines[0]["body"].as_str().unwrap().as_bytes()).is_ok());
    let seqs = stand.seqs();
    assert!(!seqs.contains(&poison));
    assert!(seqs.contains(&(poison - 1)) && seqs.contains(&(poison + 1)));
    stand
        .wait_for("the state file to count it", |_| {
            std::fs::read_to_string(data.join("state.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|s| s["link"]["dead_lettered"] == 1)
        })
        .await;
}

#[test]
fn a_missing_i2c_device_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let cfg = dir.path().join("meter.toml");
    std::fs::write(
        &cfg,
        format!(
            "key = \"{}\"\ndata_dir = \"{}\"\n[sensor]\ni2c_bus = \"/dev/i2c-99\"\n",
            dir.path().join("device.pem").display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = power_meter()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/i2c-99") && err.contains("--sim"), "{err}");
}

#[test]
fn config_errors_name_the_file_or_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = power_meter()
        .args(["run", "--sim", "--config", "/nonexistent/meter.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/meter.toml"));
    let cfg = dir.path().join("meter.toml");
    std::fs::write(&cfg, "[uplink]\nbatch = \"lots\"\n").unwrap();
    let out = power_meter()
        .args(["run", "--sim", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("batch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = power_meter()
        .args(["run", "--sim", "--window", "0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("window_s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_signs_nothing_until_the_clock_is_synchronised() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let stand = Stand::start().await;
    let cfg = config(dir.path(), &stand.url());
    let flag = dir.path().join("synced");
    let check = format!(
        "clock_sync_command = [\"sh\", \"-c\", \"test -e {} && echo yes || echo no\"]",
        flag.display()
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("clock_sync_command = []", &check);
    std::fs::write(&cfg, text).unwrap();
    let _meter = start_meter(&cfg);
    let state_file = dir.path().join("data/state.json");
    let clock = || {
        std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|s| s["clock"].as_str().unwrap_or_default().to_string())
    };
    let start = Instant::now();
    while clock().as_deref() != Some("waiting") && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        clock().as_deref(),
        Some("waiting"),
        "the state file says why nothing is sent"
    );
    assert!(
        !dir.path().join("data/outbox.db").exists(),
        "no outbox before the clock is trusted"
    );
    assert!(stand.seqs().is_empty(), "nothing signed");

    std::fs::write(&flag, "").unwrap();
    stand
        .wait_for("windows once the clock is synchronised", |s| s.seqs().len() >= 2)
        .await;
    while clock().as_deref() != Some("synchronized") && start.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(clock().as_deref(), Some("synchronized"));
}

#[test]
fn resend_dead_letters_puts_them_back_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = wattstream_sdk::DeviceKey::generate();
    let mut outbox = wattstream_device::outbox::Outbox::open(&data, 100).unwrap();
    let e = outbox
        .append(&key, wattstream_sdk::Reading::new(1.0, 1_795_515_000))
        .unwrap();
    outbox
        .dead_letter(&e, "future_timestamp", "the meter's clock was ahead")
        .unwrap();
    drop(outbox);
    let out = power_meter()
        .args(["resend-dead-letters", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 dead letters back"));
    let outbox = wattstream_device::outbox::Outbox::open(&data, 100).unwrap();
    assert_eq!(outbox.peek(10).unwrap(), vec![e]);
}
