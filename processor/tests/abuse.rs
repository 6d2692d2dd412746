//! HTTP under abuse, against a real `wattstream serve`: slow-loris clients
//! are disconnected (headers within `limits.header_read_timeout_s`, 10 s by
//! default) while meters still get through; a body that does not arrive in
//! time is answered 408; a client cannot grow `/metrics` with made-up methods.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wattstream_sdk::{DeviceKey, Reading};

fn addr(server: &Server) -> String {
    server.url.strip_prefix("http://").unwrap().to_string()
}

/// Trickles header bytes until the server closes the connection; how long that took.
async fn trickle_until_closed(mut s: TcpStream, started: Instant) -> Option<Duration> {
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(40) {
        if s.write_all(b"X").await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_disconnected_and_meters_still_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = DeviceKey::generate();
    register(&server, &key.public_key().to_hex()).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: meter\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(tokio::spawn(trickle_until_closed(s, started)));
    }
    // While 200 connections dribble, a meter's reading is accepted.
    let body = key.sign_reading(&Reading::new(3.0, now()).with_seq(1));
    let (status, answer) = post(&format!("{}/v1/events", server.url), body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    for h in slow {
        let closed = h
            .await
            .unwrap()
            .expect("the server closes a slow-loris connection");
        assert!(closed < Duration::from_secs(30), "closed after {closed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wattstream.toml");
    std::fs::write(&config, "[limits]\nbody_read_timeout_s = 1\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--admin-token", TOKEN, "--config", config.to_str().unwrap()],
    );
    let mut s = TcpStream::connect(addr(&server)).await.unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n[{\"data\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"reason\":\"timeout\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_are_counted_as_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for m in ["BREW", "XYZZY"] {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(format!("{m} /v1/events HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 405"));
    }
    let metrics = metrics_text(&server).await;
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(
        !metrics.contains("BREW") && !metrics.contains("XYZZY"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_reach_the_log_not_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    deploy_ok(&server, "default", "noop", wat_applet("i32.const 0")).await;
    // A table the processor needs disappears under it.
    rusqlite::Connection::open(dir.path().join("projects/default.db"))
        .unwrap()
        .execute_batch("DROP TABLE _ws_logs")
        .unwrap();
    let (s, a) = admin(
        reqwest::Method::GET,
        &format!("{}/v1/projects/default/logs", server.url),
        TOKEN,
        None,
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (503, Some("store_unavailable")), "{a}");
    let detail = a["detail"].as_str().unwrap().to_lowercase();
    for leak in ["sqlite", "no such table", "_ws_logs", "projects/"] {
        assert!(!detail.contains(leak), "the answer leaks {leak:?}: {detail}");
    }
}
