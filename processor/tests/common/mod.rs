//! A real `wattstream serve` process for the integration tests: started on port
//! 0 in a data directory, its address read from stdout, killed on drop.

#![allow(dead_code)]

pub mod broker;
pub mod ganache;
pub mod meter;
pub mod onboard;
pub mod pg;
pub mod pki;
pub mod stream;
pub mod wallet;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &["--admin-token", TOKEN])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_env(data_dir, extra, &[])
    }

    /// With the admin token [`TOKEN`] and `config` (TOML) written to
    /// `wattstream.toml` in `data_dir`.
    pub fn start_configured(data_dir: &Path, config: &str) -> Server {
        let file = data_dir.join("wattstream.toml");
        std::fs::write(&file, config).expect("the test's config");
        Self::start_with(
            data_dir,
            &["--admin-token", TOKEN, "--config", file.to_str().unwrap()],
        )
    }

    /// With extra environment variables (an `LD_PRELOAD` shim, say).
    pub fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wattstream"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env_remove("WATTSTREAM_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wattstream starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// SIGTERM, as systemd stops the service.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGKILL, as a power cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; building a client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POST raw bytes; returns (status, JSON answer).
pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = client()
        .post(url)
        .body(body)
        .send()
        .await
        .expect("request completes");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn get(url: &str) -> (u16, Value) {
    get_as(url, None).await
}

/// A GET with the admin token (device readings are not public).
pub async fn admin_get(url: &str) -> (u16, Value) {
    get_as(url, Some(TOKEN)).await
}

pub async fn get_as(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request completes");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn admin(method: reqwest::Method, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request completes");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Registers `key` with `owner` as the admin; its device id (panics unless 201).
pub async fn register_with_owner(
    server: &Server,
    key: &wattstream_sdk::DeviceKey,
    owner: Option<&str>,
) -> String {
    let (s, a) = admin(
        reqwest::Method::POST,
        &format!("{}/v1/devices", server.url),
        TOKEN,
        Some(serde_json::json!({"public_key": key.public_key().to_hex(), "owner": owner})),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    a["device_id"].as_str().unwrap().to_string()
}

pub async fn register(server: &Server, public_key: &str) -> String {
    let (status, answer) = admin(
        reqwest::Method::POST,
        &format!("{}/v1/devices", server.url),
        TOKEN,
        Some(serde_json::json!({ "public_key": public_key })),
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {answer}");
    answer["device_id"].as_str().unwrap().to_string()
}

/// Every stored event of a device, following the pagination cursor.
pub async fn all_events(server: &Server, device_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/devices/{device_id}/events?limit=200", server.url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (status, page) = admin_get(&url).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

pub fn vectors_dir() -> PathBuf {
    std::env::var_os("WATTSTREAM_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/tests/vectors"))
}

#[allow(unused_imports)]
pub use wattstream_sdk::time::unix_now as now;

/// A built example applet (`applets/build.sh` puts them in `applets/dist`).
pub fn dist(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../applets/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run applets/build.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Asserts that a batch answer is HTTP 200 with every envelope a duplicate.
pub fn assert_all_duplicate(status: u16, answer: &Value) {
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch answer: {answer}"));
    assert!(results.iter().all(|r| r["status"] == "duplicate"), "{answer}");
}

/// A minimal applet module in WAT: memory, `alloc`, and `start` whose body
/// (leaving an i32 on the stack) is `body`.
pub fn wat_applet(body: &str) -> String {
    format!(
        r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "start") (param i32) (result i32) {body}))"#
    )
}

/// Deploys a module (wasm bytes or WAT text) as the admin:
/// `POST /v1/projects/{project}/applets/{name_and_query}`; panics unless 201.
pub async fn deploy_ok(
    server: &Server,
    project: &str,
    name_and_query: &str,
    module: impl Into<reqwest::Body>,
) {
    let r = client()
        .post(format!(
            "{}/v1/projects/{project}/applets/{name_and_query}",
            server.url
        ))
        .bearer_auth(TOKEN)
        .body(module)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        status,
        201,
        "deploying {name_and_query}: {}",
        r.text().await.unwrap()
    );
}

/// Deploys the built example applet `name` (`applets/dist`) to the default
/// project, at the end of its chain.
pub async fn deploy_example(server: &Server, name: &str) {
    deploy_ok(server, "default", name, std::fs::read(dist(name)).unwrap()).await;
}

/// The Prometheus text of `/metrics`.
pub async fn metrics_text(server: &Server) -> String {
    client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `within`.
/// (For state another process reaches on its own time: a meter's windows, a
/// broker's redelivery. Never a fixed sleep.)
pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the `wattstream` CLI; no admin token or CA comes from the environment.
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wattstream"))
        .args(args)
        .env_remove("WATTSTREAM_ADMIN_TOKEN")
        .env_remove("WATTSTREAM_CA_CERT")
        .output()
        .unwrap()
}

/// `wattstream applet deploy` of the built example `wasm` (see [`dist`]) with
/// `args` (`--name` among them); the error output on failure.
pub fn cli_deploy(server: &Server, wasm: &str, args: &[&str]) -> Result<(), String> {
    let path = dist(wasm);
    let mut all = vec![
        "applet",
        "deploy",
        "--server",
        &server.url,
        "--token",
        TOKEN,
        "--wasm",
    ];
    all.push(path.to_str().unwrap());
    all.extend_from_slice(args);
    let out = cli(&all);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Project `w3b` with the `as-readings` applet for event type `DEFAULT`
/// (deployed with the CLI) and a new publisher token for it, returned.
pub async fn w3b_project_with_publisher(server: &Server) -> String {
    let args = [
        "--project",
        "w3b",
        "--name",
        "readings",
        "--event-type",
        "DEFAULT",
    ];
    cli_deploy(server, "as-readings", &args).unwrap();
    let (s, p) = admin(
        reqwest::Method::POST,
        &format!("{}/v1/projects/w3b/publishers", server.url),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 201, "{p}");
    p["token"].as_str().unwrap().to_string()
}

/// Which store a test's processor runs on.
#[derive(Clone, Copy, Debug)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A store for one test: SQLite in the data directory, or a fresh
/// PostgreSQL database dropped when the test ends.
pub struct TestStore {
    pub db: Option<pg::TestDb>,
}

impl TestStore {
    pub async fn new(engine: Engine) -> TestStore {
        TestStore {
            db: match engine {
                Engine::Sqlite => None,
                Engine::Postgres => Some(pg::TestDb::create().await),
            },
        }
    }

    /// `serve` with the admin token and `extra`, on this store.
    pub fn start(&self, data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--admin-token", TOKEN];
        args.extend_from_slice(extra);
        if let Some(db) = &self.db {
            args.extend(["--store", db.url.as_str()]);
        }
        Server::start_with(data_dir, &args)
    }
}

/// Each named `async fn(Engine)` once per store, as `NAME::sqlite` and
/// `NAME::postgres`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Engine::Postgres).await
            }
        }
    )*};
}

/// `n` readings of `watts` every 5 s from `t0` (seq 1..=n), each claiming a
/// `window_s` window, signed by `key`, in order.
pub fn signed_windows(
    key: &wattstream_sdk::DeviceKey,
    watts: f64,
    t0: u64,
    n: u64,
    window_s: u32,
) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut r = wattstream_sdk::Reading::new(watts, t0 + i * 5).with_seq(i + 1);
            r.window_s = Some(window_s);
            key.sign_reading(&r)
        })
        .collect()
}
