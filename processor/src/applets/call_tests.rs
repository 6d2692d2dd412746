//! The call's outcome rules, and when a stateless applet's instance is kept.

use std::time::Duration;

use super::*;
use crate::applets::abi::testing::event;

/// Counts its calls in a global and answers the count; logs each call, writes
/// its count as a KV key, and traps from the call whose count reaches `trap_at`.
fn counter(trap_at: i32) -> String {
    format!(
        r#"(module
          (import "env" "ws_log" (func $log (param i32 i32 i32) (result i32)))
          (import "env" "ws_set_db" (func $set (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "call")
          (global $n (mut i32) (i32.const 0))
          (func (export "start") (param i32) (result i32)
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (drop (call $log (i32.const 3) (i32.const 0) (i32.const 4)))
            (i32.store (i32.const 16) (global.get $n))
            (drop (call $set (i32.const 16) (i32.const 4) (i32.const 0) (i32.const 4)))
            (if (i32.ge_s (global.get $n) (i32.const {trap_at})) (then unreachable))
            (global.get $n)))"#
    )
}

fn db() -> HostDb {
    HostDb::Sqlite(ProjectDb::open(None, Duration::from_millis(100)).unwrap())
}

fn stateless() -> AppletLimits {
    AppletLimits {
        stateless: true,
        ..AppletLimits::default()
    }
}

/// The codes of `calls` calls through one slot, and the slot after them.
fn codes(
    runtime: &Runtime,
    applet: &Applet,
    limits: &AppletLimits,
    calls: usize,
) -> (Vec<Option<i32>>, Option<Warm>) {
    let (mut warm, mut db) = (None, db());
    let mut codes = Vec::new();
    for _ in 0..calls {
        let (o, back) = runtime.run_warm(applet, "start", event(), db, limits, &mut warm);
        db = back;
        codes.push(o.code);
    }
    (codes, warm)
}

#[test]
fn every_call_gets_a_fresh_instance_unless_the_applet_is_stateless() {
    let runtime = Runtime::new(None).unwrap();
    let applet = runtime.compile(counter(1000).as_bytes()).unwrap();
    let (fresh, kept) = codes(&runtime, &applet, &AppletLimits::default(), 3);
    assert_eq!(fresh, [Some(1), Some(1), Some(1)]);
    assert!(
        kept.is_none(),
        "nothing kept for an applet not deployed stateless"
    );
    let (warm, kept) = codes(&runtime, &applet, &stateless(), 3);
    assert_eq!(
        warm,
        [Some(1), Some(2), Some(3)],
        "one instance served the three calls"
    );
    assert_eq!(kept.unwrap().calls(), 3);
}

#[test]
fn a_call_that_fails_on_a_reused_instance_runs_again_on_a_fresh_one() {
    let runtime = Runtime::new(None).unwrap();
    // Traps from its third call in one instance: as a heap that only grows
    // would, once full.
    let applet = runtime.compile(counter(3).as_bytes()).unwrap();
    let limits = stateless();
    let (mut warm, mut db) = (None, db());
    for expected in [1, 2] {
        let (o, back) = runtime.run_warm(&applet, "start", event(), db, &limits, &mut warm);
        db = back;
        assert_eq!(o.code, Some(expected));
    }
    let (o, db) = runtime.run_warm(&applet, "start", event(), db, &limits, &mut warm);
    assert!(o.ok(), "the event passes as it would in a fresh instance: {o:?}");
    assert_eq!(o.code, Some(1), "it ran on a fresh instance");
    assert_eq!(
        o.effects.logs.len(),
        1,
        "only the run that counts left its logs: {o:?}"
    );
    assert_eq!(
        warm.as_ref().map(Warm::calls),
        Some(1),
        "the fresh instance is kept, the failed one dropped"
    );
    // The failed run's write (key 3) was rolled back.
    let key = |n: i32| db.kv_get(&n.to_le_bytes()).unwrap();
    assert!(key(1).is_some() && key(2).is_some());
    assert_eq!(key(3), None, "the failed run's write is gone");
}

#[test]
fn a_call_that_fails_on_a_fresh_instance_fails_once_and_keeps_nothing() {
    let runtime = Runtime::new(None).unwrap();
    let applet = runtime.compile(counter(1).as_bytes()).unwrap();
    let mut warm = None;
    let (o, _db) = runtime.run_warm(&applet, "start", event(), db(), &stateless(), &mut warm);
    assert!(!o.ok());
    assert!(o.error.as_deref().unwrap_or("").contains("unreachable"), "{o:?}");
    assert_eq!(o.effects.logs.len(), 1, "run once, not retried: {o:?}");
    assert!(warm.is_none(), "a trapped instance is not kept");
}

#[test]
fn an_instance_kept_for_one_applet_does_not_serve_another() {
    let runtime = Runtime::new(None).unwrap();
    let first = runtime.compile(counter(1000).as_bytes()).unwrap();
    let second = runtime.compile(counter(999).as_bytes()).unwrap();
    let limits = stateless();
    let mut warm = None;
    let (o, db) = runtime.run_warm(&first, "start", event(), db(), &limits, &mut warm);
    assert_eq!(o.code, Some(1));
    let (o, db) = runtime.run_warm(&second, "start", event(), db, &limits, &mut warm);
    assert_eq!(o.code, Some(1), "the second applet got its own instance");
    // Nor is it kept when the applet is no longer stateless.
    let (o, _db) = runtime.run_warm(&second, "start", event(), db, &AppletLimits::default(), &mut warm);
    assert_eq!(o.code, Some(1));
    assert!(warm.is_none());
}

#[test]
fn a_call_whose_writes_cannot_be_kept_is_a_failed_call() {
    let runtime = Runtime::new(None).unwrap();
    // Stores a KV pair, mints, and returns 0.
    let tx = format!(
        r#"{{"to":"{}","data":"0x40c10f19{:0>64}{:064x}"}}"#,
        wattstream_abi::LEDGER_TOKEN,
        "ab".repeat(20),
        7
    );
    let wat = format!(
        r#"(module
          (import "env" "ws_set_db" (func $set (param i32 i32 i32 i32) (result i32)))
          (import "env" "ws_send_tx" (func $tx (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "kv")
          (data (i32.const 64) "{}")
          (func (export "alloc") (param i32) (result i32) i32.const 4096)
          (func (export "start") (param i32) (result i32)
            (drop (call $set (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1)))
            (drop (call $tx (i32.const 0) (i32.const 64) (i32.const {}) (i32.const 32) (i32.const 36)))
            i32.const 0))"#,
        tx.replace('"', "\\\""),
        tx.len()
    );
    let applet = runtime.compile(wat.as_bytes()).unwrap();
    let db = ProjectDb::open(None, Duration::from_millis(100)).unwrap();
    let limits = AppletLimits::default();
    let (ok, mut db) = runtime.run_sqlite(&applet, "start", event(), db, &limits);
    assert!(ok.ok() && ok.effects.credits.len() == 1, "{ok:?}");
    // The commit of the call's savepoint now fails.
    db.conn_mut().commit_hook(Some(|| true)).unwrap();
    let (failed, mut db) = runtime.run_sqlite(&applet, "start", event(), db, &limits);
    assert!(!failed.ok(), "{failed:?}");
    assert!(failed.error.unwrap().contains("commit failed"));
    assert!(
        failed.effects.credits.is_empty(),
        "no credit from a call whose writes were lost"
    );
    db.conn_mut().commit_hook(None::<fn() -> bool>).unwrap();
}
