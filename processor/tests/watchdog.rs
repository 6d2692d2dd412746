//! The systemd watchdog is fed only while the processor makes progress: a
//! real `wattstream serve` under a fake systemd (a `NOTIFY_SOCKET` the test
//! reads) pings while healthy, stops pinging while the applet worker is stuck
//! in a long call (`applets.stall_after_s` = 2 here), and resumes after.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use wattstream_sdk::{DeviceKey, Reading};

/// Messages received within `within`.
fn messages(sock: &UnixDatagram, within: Duration) -> Vec<String> {
    let until = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_only_while_the_applet_worker_makes_progress() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    let config = dir.path().join("wattstream.toml");
    std::fs::write(&config, "[applets]\nstall_after_s = 2\n").unwrap();
    let server = Server::start_env(
        &dir.path().join("data"),
        &["--admin-token", TOKEN, "--config", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", socket.as_os_str()),
            ("WATCHDOG_USEC", "2000000".as_ref()),
        ],
    );
    let first = messages(&sock, Duration::from_secs(6));
    assert!(first.iter().any(|m| m.contains("READY=1")), "{first:?}");
    assert!(pings(&first) >= 1, "healthy: pinged {first:?}");

    // An applet that spins for its whole 8 s deadline on every event.
    deploy_ok(
        &server,
        "default",
        "spin?deadline_ms=8000",
        wat_applet("(loop br 0) i32.const 0"),
    )
    .await;
    let key = DeviceKey::generate();
    register(&server, &key.public_key().to_hex()).await;
    let body = key.sign_reading(&Reading::new(1.0, now()).with_seq(1));
    assert_eq!(post(&format!("{}/v1/events", server.url), body).await.0, 200);
    // The call runs for 8 s: after 2 s without progress the pings stop.
    let _ = messages(&sock, Duration::from_secs(3));
    let stuck = messages(&sock, Duration::from_secs(3));
    assert_eq!(pings(&stuck), 0, "stuck: not pinged {stuck:?}");
    let (_, health) = get(&format!("{}/healthz", server.url)).await;
    assert_eq!(health["status"], "degraded", "{health}");
    // The deadline ends the call; progress resumes, and so do the pings.
    let after = messages(&sock, Duration::from_secs(8));
    assert!(pings(&after) >= 1, "pinged again: {after:?}");
}
