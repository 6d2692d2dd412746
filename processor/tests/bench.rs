//! `wattstream bench` end to end, small: the sustained figure counts only
//! events the ledger has, and `--json` carries the fields the performance
//! issue asked for, with ratios computed from figures of the same run, and
//! the processor's account of its store's turns during the open-loop run;
//! `--config` reaches the processors it starts.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn a_small_bench_writes_sustained_and_open_loop_figures_from_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    // A tuning config, with a secret the figures must not carry.
    let config = dir.path().join("tuned.toml");
    std::fs::write(
        &config,
        "admin_token = \"a-secret-admin-token-0123\"\n[rewards]\npage_lock_ms = 7\n",
    )
    .unwrap();
    let out = small_bench(
        dir.path(),
        &[
            "--json",
            json.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read_to_string(&json).unwrap();
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        doc["processor_config"]["settings"]["rewards"]["page_lock_ms"], 7,
        "{doc}"
    );
    assert!(!raw.contains("a-secret-admin-token"), "{raw}");
    let limit = doc["limit"]["all_cores"].as_f64().unwrap();
    let s = &doc["sustained"];
    let rate = s["events_per_s"].as_f64().unwrap();
    assert!(limit > 0.0 && rate > 0.0, "{doc}");
    assert!(
        (s["ratio"].as_f64().unwrap() - rate / limit).abs() < 1e-9,
        "{doc}"
    );
    assert_eq!(s["devices"], 20);
    assert_eq!(s["applets"], serde_json::json!(["identity", "rewards-tiered"]));
    assert!(
        s["events"].as_u64().unwrap() > 0 && s["filesystem"].is_string(),
        "{doc}"
    );
    // The bytes written per event, by the processor's threads, add up to
    // the whole (the rest: threads that exited meanwhile).
    let by_thread = s["written_kb_per_event_by_thread"].as_object().unwrap();
    assert!(by_thread.contains_key("the rest"), "{doc}");
    let parts: f64 = by_thread.values().map(|v| v.as_f64().unwrap()).sum();
    let whole = s["written_kb_per_event"].as_f64().unwrap();
    assert!(
        (parts - whole).abs() <= 0.05 * by_thread.len() as f64 + 1e-9,
        "{doc}"
    );
    assert!(text.contains("written per event by thread, KB: "), "{text}");
    let l = &doc["latency_half"];
    assert_eq!(l["requests"], 30);
    assert_eq!(l["failed"], 0);
    let (p50, p99, p999) = (
        l["p50_ms"].as_f64().unwrap(),
        l["p99_ms"].as_f64().unwrap(),
        l["p999_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{l}");
    assert!(
        (l["offered_per_s"].as_f64().unwrap() - rate / 2.0).abs() < 1e-6,
        "{l}"
    );
    // Where the latency went: the processor's own count of the store's
    // turns during the open-loop run (its 30 requests committed in groups).
    let turns = &l["store_turns"];
    let groups = turns["ingest_groups"].as_u64().unwrap();
    assert!(groups >= 1, "{l}");
    assert!(turns["ingest_waited_over_5ms"].as_u64().unwrap() <= groups, "{l}");
    assert!(text.contains("the store's write lock meanwhile"), "{text}");
}

/// `bench ARGS` on 20 devices, a 1 s run, the example applets, in `dir`.
fn small_bench(dir: &std::path::Path, more: &[&str]) -> std::process::Output {
    let applets = dist("identity").parent().unwrap().to_path_buf();
    let store = dir.join("store");
    let mut args = vec![
        "bench",
        "--only",
        "ingest",
        "--micro-seconds",
        "0.2",
        "--seconds",
        "1",
        "--devices",
        "20",
        "--latency-requests",
        "30",
        "--dir",
        store.to_str().unwrap(),
        "--applets",
        applets.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    cli(&args)
}

#[test]
fn bench_runs_its_processors_on_the_config_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    // Batches of 10 at most: the sustained run sends requests of 100, which
    // this processor must refuse if it runs on this config.
    let config = dir.path().join("small-batches.toml");
    std::fs::write(&config, "[limits]\nmax_batch = 10\n").unwrap();
    let out = small_bench(dir.path(), &["--config", config.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("processor config: {}", config.display())),
        "{text}"
    );
    assert!(
        text.contains("413") || text.to_lowercase().contains("too large"),
        "{text}"
    );

    // Refused before any setup, naming what: a config the processor would
    // refuse, and settings that would reach outside the benchmark (a
    // broker's meters, a database it did not empty).
    for (toml, named) in [
        ("[store]\nmax_commit_events = 0\n", "max_commit_events"),
        ("[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n", "[mqtt]"),
        (
            "[store]\nurl = \"postgres://root@127.0.0.1:5432/prod\"\n",
            "store.url",
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        let out = small_bench(dir.path(), &["--config", config.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains(named), "{toml}: {text}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("Sustained"),
            "{toml}: {text}"
        );
    }
}
