//! Durability: concurrent ingest, SIGKILL in the middle of it, restart on the same
//! data directory. Every event the server acknowledged must be there, exactly once.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use common::*;
use wattstream_sdk::{DeviceKey, Reading};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let keys: Vec<DeviceKey> = (0..6).map(|_| DeviceKey::generate()).collect();
    for k in &keys {
        register(&server, &k.public_key().to_hex()).await;
    }
    let acked: Arc<Mutex<HashMap<String, BTreeSet<u64>>>> = Arc::default();
    let url = format!("{}/v1/events", server.url);
    let t0 = now() - 100_000;
    let mut tasks = Vec::new();
    for (n, key) in keys.iter().cloned().enumerate() {
        let (url, acked) = (url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let id = key.device_id().to_string();
            let mut seq = 0u64;
            loop {
                // Alternate single envelopes and batches of five.
                let count = if (seq / 5 + n as u64).is_multiple_of(2) {
                    1
                } else {
                    5
                };
                let bodies: Vec<String> = (seq..seq + count)
                    .map(|s| key.sign_reading(&Reading::new(s as f64 / 10.0, t0 + s * 5).with_seq(s)))
                    .collect();
                let body = if count == 1 {
                    bodies[0].clone()
                } else {
                    format!("[{}]", bodies.join(","))
                };
                let Ok(resp) = client().post(&url).body(body).send().await else {
                    return;
                };
                let Ok(text) = resp.text().await else { return };
                let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
                let results = match answer.get("results") {
                    Some(r) => r.as_array().unwrap().clone(),
                    None => vec![answer],
                };
                for (i, r) in results.iter().enumerate() {
                    let status = r["status"].as_str().unwrap();
                    assert!(status == "accepted" || status == "duplicate", "{r}");
                    acked
                        .lock()
                        .unwrap()
                        .entry(id.clone())
                        .or_default()
                        .insert(seq + i as u64);
                }
                seq += count;
            }
        }));
    }
    // Let it run until a good number of events are acknowledged, then pull the plug.
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let total: usize = acked.lock().unwrap().values().map(|s| s.len()).sum();
        if total >= 400 {
            break;
        }
    }
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = Server::start(dir.path());
    let mut total = 0;
    for key in &keys {
        let id = key.device_id().to_string();
        let stored: Vec<u64> = all_events(&server, &id)
            .await
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        let unique: BTreeSet<u64> = stored.iter().copied().collect();
        assert_eq!(
            unique.len(),
            stored.len(),
            "device {id}: an event is stored twice"
        );
        let want = acked.get(&id).cloned().unwrap_or_default();
        let missing: Vec<_> = want.difference(&unique).collect();
        assert!(
            missing.is_empty(),
            "device {id}: acknowledged but lost: {missing:?}"
        );
        total += want.len();
        // Sending them all again changes nothing.
        let bodies: Vec<String> = want
            .iter()
            .map(|&s| key.sign_reading(&Reading::new(s as f64 / 10.0, t0 + s * 5).with_seq(s)))
            .collect();
        for chunk in bodies.chunks(500) {
            let (s, a) = post(
                &format!("{}/v1/events", server.url),
                format!("[{}]", chunk.join(",")),
            )
            .await;
            assert_all_duplicate(s, &a);
        }
        assert_eq!(all_events(&server, &id).await.len(), stored.len());
    }
    assert!(total >= 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let key = DeviceKey::generate();
    let id = register(&server, &key.public_key().to_hex()).await;
    let url = format!("{}/v1/events", server.url);
    let bodies: Vec<String> = (0..200u64)
        .map(|s| key.sign_reading(&Reading::new(1.0, now() - 1000 + s).with_seq(s)))
        .collect();
    let body = format!("[{}]", bodies.join(","));
    let request = tokio::spawn(async move {
        // The request may reach the server after it stopped accepting: that is an
        // error here, not a failure of the test.
        match client().post(&url).body(body).send().await {
            Ok(resp) if resp.status() == 200 => resp.json::<serde_json::Value>().await.ok(),
            _ => None,
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    server.terminate();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        std::mem::forget(server);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    // The request was either answered in full (then every event is stored) or
    // never taken (then nothing is): what is stored is exactly what was
    // acknowledged.
    let acked = match request.await.unwrap() {
        Some(a) => a["results"].as_array().unwrap().len(),
        None => 0,
    };
    let server = Server::start(dir.path());
    let stored = all_events(&server, &id).await.len();
    assert_eq!(stored, acked, "acked {acked}, stored {stored}");
}

/// An `LD_PRELOAD` shim that appends a line to `$FSYNC_LOG` for every
/// `fsync`/`fdatasync` the process makes, then does the real call.
const FSYNC_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
static void note(void) {
    const char *p = getenv("FSYNC_LOG");
    if (!p) return;
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    (void)!write(fd, "s\n", 2);
    close(fd);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    note();
    return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    note();
    return real(fd);
}
"#;

fn syncs(log: &std::path::Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len() / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledgement_follows_a_sync_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (src, shim, log) = (
        dir.path().join("shim.c"),
        dir.path().join("fsync-shim.so"),
        dir.path().join("fsync.log"),
    );
    std::fs::write(&src, FSYNC_SHIM).unwrap();
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("a C compiler (build-essential) builds the fsync shim");
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let server = Server::start_env(
        &dir.path().join("data"),
        &["--admin-token", TOKEN],
        &[("LD_PRELOAD", shim.as_os_str()), ("FSYNC_LOG", log.as_os_str())],
    );
    let key = DeviceKey::generate();
    register(&server, &key.public_key().to_hex()).await;
    let before = syncs(&log);
    assert!(before > 0, "the shim sees the store's syncs");
    // One request at a time: each is its own group commit, acknowledged only
    // after its commit reached the disk.
    let requests = 20u64;
    for s in 0..requests {
        let body = key.sign_reading(&Reading::new(1.0, now() - 100 + s).with_seq(s));
        let (status, a) = post(&format!("{}/v1/events", server.url), body).await;
        assert_eq!((status, a["status"].as_str()), (200, Some("accepted")), "{a}");
        assert!(
            syncs(&log) > before + s,
            "request {s} was acknowledged before a sync: {} syncs",
            syncs(&log) - before
        );
    }
}
