//! The dashboard in a real browser, on the demo a newcomer runs: `wattstream
//! demo --serve` with its three simulated meters, and
//! `processor/web/tests/dashboard.mjs` driving Debian's chromium through
//! playwright-core (scripts/test.sh installs both). The script logs in, sees
//! the three meters, watches a reading arrive through the live stream, opens
//! a meter (chart points, the seal verified in the browser), shows a tampered
//! proof as a mismatch, logs in as a meter owner with a read token, and
//! checks the applets and epochs pages. Then the meters stop and the
//! dashboard stays up until the demo is interrupted.
//!
//! `WS_SCREENSHOTS=DIR` saves each page there (scripts/screenshots.sh).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::client;
use serde_json::Value;

/// The demo process; interrupted (as Ctrl-C would) on drop, so its meters
/// stop with it.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    /// The next stdout line that starts with `prefix`.
    fn line(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no line {prefix:?}; so far:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.interrupt();
        let _ = self.child.wait();
    }
}

async fn get(url: &str, token: &str) -> Value {
    let r = client().get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demo_live_and_verifies_a_seal_in_the_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = root.join("processor/web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "processor/web/node_modules is missing: scripts/test.sh installs it (npm ci)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wattstream"))
        .args([
            "demo",
            "--serve",
            "--duration",
            "45",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .arg("--applets")
        .arg(root.join("applets/dist"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut demo = Demo {
        child,
        lines,
        seen: Vec::new(),
    };
    let line = demo.line("dashboard: ");
    let url = line["dashboard: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    demo.line("3 simulated meters running");

    // The first seal, awaited on the live stream the pages use.
    let _ = client();
    let mut stream = reqwest::Client::new()
        .get(format!("{url}/v1/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("event: seal") {
        let chunk = tokio::time::timeout(Duration::from_secs(90), stream.chunk())
            .await
            .expect("a seal within 90 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    let fleet = get(&format!("{url}/v1/fleet?q=demo-frugal"), &token).await;
    let frugal = fleet["devices"][0]["device_id"].as_str().unwrap().to_string();
    let read = client()
        .post(format!("{url}/v1/devices/{frugal}/read-token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let read: Value = read.json().await.unwrap();

    let mut browser = Command::new("node");
    browser
        .arg("tests/dashboard.mjs")
        .current_dir(&web)
        .env("WS_URL", &url)
        .env("WS_TOKEN", &token)
        .env("WS_READ_DEVICE", &frugal)
        .env("WS_READ_TOKEN", read["token"].as_str().unwrap());
    let out = tokio::task::spawn_blocking(move || browser.output().expect("node runs"))
        .await
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser checks failed:\n{log}");
    assert!(log.contains("dashboard: all checks passed"), "{log}");

    // The meters stop; the dashboard stays up until the demo is interrupted.
    demo.line("the meters have stopped; the dashboard stays up");
    let r = client().get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after = get(&format!("{url}/v1/fleet"), &token).await;
    assert_eq!(after["counts"]["all"], 3);
    demo.interrupt();
    demo.line("rewards verify: ok");
}
