//! Conformance of every host function (status codes, the out-pointer protocol,
//! bad pointers and lengths) and hostile applets (infinite loop, unbounded
//! memory.grow, deep recursion, trap, huge ws_log, an alloc that returns
//! garbage), with WAT modules run through the real runtime. After each hostile
//! applet the same runtime serves a normal event.

use std::collections::HashMap;

use wattstream_abi::LEDGER_TOKEN;
use wattstream_processor::applets::db::ProjectDb;
use wattstream_processor::applets::runtime::{RunOutcome, Runtime};
use wattstream_processor::applets::state::{AppletLimits, EventInput};

const IMPORTS: &str = r#"
  (import "env" "ws_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "ws_get_data" (func $get_data (param i32 i32 i32) (result i32)))
  (import "env" "ws_set_data" (func $set_data (param i32 i32 i32) (result i32)))
  (import "env" "ws_get_db" (func $get_db (param i32 i32 i32 i32) (result i32)))
  (import "env" "ws_set_db" (func $set_db (param i32 i32 i32 i32) (result i32)))
  (import "env" "ws_get_env" (func $get_env (param i32 i32 i32 i32) (result i32)))
  (import "env" "ws_set_sql_db" (func $set_sql (param i32 i32) (result i32)))
  (import "env" "ws_get_sql_db" (func $get_sql (param i32 i32 i32 i32) (result i32)))
  (import "env" "ws_send_tx" (func $send_tx (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "ws_call_contract" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "ws_get_event_type" (func $event_type (param i32 i32 i32) (result i32)))
  (import "env" "ws_api_call" (func $api (param i32 i32 i32 i32) (result i32)))
  (import "stat" "ws_submit_metrics" (func $metrics (param i32 i32) (result i32)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
"#;

/// A module with every import, a bump `alloc` from 0x10000, `data` segments at
/// the given offsets, and `start` with `body` (which must leave an i32).
fn module(data: &[(u32, &str)], body: &str) -> Vec<u8> {
    module_with_alloc(
        data,
        body,
        "(global.get $next) (global.set $next (i32.add (global.get $next) (local.get 0)))",
    )
}

fn module_with_alloc(data: &[(u32, &str)], body: &str, alloc: &str) -> Vec<u8> {
    let data: String = data
        .iter()
        // Quotes are escaped; backslashes are left as WAT escapes (`\\06` is byte 6).
        .map(|(at, s)| format!("(data (i32.const {at}) \"{}\")\n", s.replace('"', "\\\"")))
        .collect();
    let wat = format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 2)
  (global $next (mut i32) (i32.const 0x10000))
  (func (export "alloc") (param i32) (result i32) {alloc})
  {data}
  (func $rec (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1))))
  (func (export "start") (param $rid i32) (result i32) {body}))"#
    );
    wat.into_bytes()
}

fn event(payload: &str) -> EventInput {
    EventInput {
        rid: 7,
        payload: payload.as_bytes().to_vec(),
        event_type: "DATA".into(),
        env: HashMap::from([("GREETING".to_string(), "hello".to_string())]),
        token: Some(LEDGER_TOKEN.into()),
        seed: 42,
        time_ns: 0,
        chains: Vec::new(),
        calls: None,
    }
}

struct Harness {
    runtime: Runtime,
    db: Option<ProjectDb>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            runtime: Runtime::new(None).unwrap(),
            db: Some(ProjectDb::open(None, std::time::Duration::from_millis(100)).unwrap()),
        }
    }

    fn run_with(&mut self, wasm: &[u8], payload: &str, limits: &AppletLimits) -> RunOutcome {
        let applet = self.runtime.compile(wasm).expect("compiles");
        let (outcome, db) =
            self.runtime
                .run_sqlite(&applet, "start", event(payload), self.db.take().unwrap(), limits);
        self.db = Some(db);
        outcome
    }

    fn run(&mut self, wasm: &[u8], payload: &str) -> RunOutcome {
        self.run_with(wasm, payload, &AppletLimits::default())
    }

    /// A normal event still works.
    fn still_serves(&mut self) {
        let o = self.run(
            &module(
                &[(16, "ok")],
                "(call $log (i32.const 3) (i32.const 16) (i32.const 2))",
            ),
            "{}",
        );
        assert_eq!(o.code, Some(0), "{o:?}");
        assert_eq!(o.effects.logs.last().unwrap().message, "ok");
    }
}

#[test]
fn ws_log_writes_lines_and_checks_its_range() {
    let mut h = Harness::new();
    let o = h.run(
        &module(
            &[(16, "hello")],
            // W3bstream v1 numbers levels like logrus: 3 is warn.
            "(call $log (i32.const 3) (i32.const 16) (i32.const 5))",
        ),
        "{}",
    );
    assert_eq!(o.code, Some(0));
    assert_eq!(
        (o.effects.logs[0].level, o.effects.logs[0].message.as_str()),
        ("warn", "hello")
    );
    let o = h.run(
        &module(
            &[],
            "(call $log (i32.const 3) (i32.const 131000) (i32.const 100))",
        ),
        "{}",
    );
    assert_eq!(o.code, Some(6), "a range past the end of memory");
    let o = h.run(
        &module(&[], "(call $log (i32.const 3) (i32.const -8) (i32.const 16))"),
        "{}",
    );
    assert_eq!(o.code, Some(6), "a negative pointer");
}

#[test]
fn get_data_follows_the_out_pointer_protocol() {
    let mut h = Harness::new();
    // Get the payload, then echo it back with ws_set_data from the address and
    // length the host wrote at 0 and 4.
    let echo = "(drop (call $get_data (local.get $rid) (i32.const 0) (i32.const 4)))
                (call $set_data (local.get $rid) (i32.load (i32.const 0)) (i32.load (i32.const 4)))";
    let o = h.run(&module(&[], echo), r#"{"sensor_reading":1}"#);
    assert_eq!(o.code, Some(0));
    assert_eq!(o.effects.response.as_deref(), Some(r#"{"sensor_reading":1}"#));
    let o = h.run(
        &module(&[], "(call $get_data (i32.const 99) (i32.const 0) (i32.const 4))"),
        "x",
    );
    assert_eq!(o.code, Some(2), "unknown rid");
    let o = h.run(
        &module(
            &[],
            "(call $get_data (local.get $rid) (i32.const 131070) (i32.const 4))",
        ),
        "x",
    );
    assert_eq!(o.code, Some(5), "out pointer past the end");
    let o = h.run(
        &module(
            &[],
            "(call $set_data (local.get $rid) (i32.const 131070) (i32.const 100))",
        ),
        "x",
    );
    assert_eq!(o.code, Some(6));
}

#[test]
fn event_type_env_and_kv() {
    let mut h = Harness::new();
    let o = h.run(
        &module(
            &[],
            "(drop (call $event_type (local.get $rid) (i32.const 0) (i32.const 4)))
                      (call $log (i32.const 3) (i32.load (i32.const 0)) (i32.load (i32.const 4)))",
        ),
        "x",
    );
    assert_eq!(o.effects.logs[0].message, "DATA");
    let get_env = |key_len: i32| {
        format!(
            "(local $s i32) (local.set $s (call $get_env (i32.const 16) (i32.const {key_len}) (i32.const 0) (i32.const 4)))
             (if (i32.eqz (local.get $s)) (then (drop (call $log (i32.const 3) (i32.load (i32.const 0)) (i32.load (i32.const 4))))))
             (local.get $s)"
        )
    };
    let o = h.run(&module(&[(16, "GREETING")], &get_env(8)), "x");
    assert_eq!((o.code, o.effects.logs[0].message.as_str()), (Some(0), "hello"));
    let o = h.run(&module(&[(16, "GREETING")], &get_env(5)), "x");
    assert_eq!(o.code, Some(8), "missing key");

    // KV: set, then get in a later call (committed), missing key is 2.
    let o = h.run(
        &module(
            &[(16, "key"), (32, "value")],
            "(call $set_db (i32.const 16) (i32.const 3) (i32.const 32) (i32.const 5))",
        ),
        "x",
    );
    assert_eq!(o.code, Some(0));
    let get = "(local $s i32) (local.set $s (call $get_db (i32.const 16) (i32.const 3) (i32.const 0) (i32.const 4)))
               (if (i32.eqz (local.get $s)) (then (drop (call $log (i32.const 3) (i32.load (i32.const 0)) (i32.load (i32.const 4))))))
               (local.get $s)";
    let o = h.run(&module(&[(16, "key")], get), "x");
    assert_eq!((o.code, o.effects.logs[0].message.as_str()), (Some(0), "value"));
    let o = h.run(&module(&[(16, "nop")], get), "x");
    assert_eq!(o.code, Some(2));
    let o = h.run(
        &module(
            &[],
            "(call $set_db (i32.const 131070) (i32.const 30) (i32.const 0) (i32.const 1))",
        ),
        "x",
    );
    assert_eq!(o.code, Some(6));
}

#[test]
fn a_negative_return_rolls_back_its_writes_and_a_positive_one_keeps_them() {
    // W3bstream v1: a handler's return value `< 0` is a failure, `>= 0` a
    // success (a positive value is a resource id it may answer with).
    let mut h = Harness::new();
    let set = |key: &str, code: i32| {
        module(
            &[(16, key), (32, "v")],
            &format!(
                "(drop (call $set_db (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 1))) (i32.const {code})"
            ),
        )
    };
    let get = |key: &str| {
        module(
            &[(16, key)],
            "(call $get_db (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 4))",
        )
    };
    let o = h.run(&set("k", -3), "x");
    assert_eq!(o.code, Some(-3));
    assert!(!o.ok());
    assert_eq!(
        h.run(&get("k"), "x").code,
        Some(2),
        "a failed call leaves nothing behind"
    );
    let o = h.run(&set("p", 3), "x");
    assert_eq!(o.code, Some(3));
    assert!(o.ok(), "a positive return is a success");
    assert_eq!(h.run(&get("p"), "x").code, Some(0), "and its writes are kept");
}

fn sql(statement: &str, params: &str) -> String {
    format!(r#"{{"statement":"{statement}","params":[{params}]}}"#)
}

#[test]
fn sql_exec_and_query() {
    let mut h = Harness::new();
    let create = sql("CREATE TABLE r (w REAL, n INTEGER)", "");
    let insert = sql("INSERT INTO r VALUES (?, ?)", r#"{"float64":2.5},{"int64":3}"#);
    let body = format!(
        "(drop (call $set_sql (i32.const 16) (i32.const {})))
         (call $set_sql (i32.const 1024) (i32.const {}))",
        create.len(),
        insert.len()
    );
    let o = h.run(&module(&[(16, &create), (1024, &insert)], &body), "x");
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.effects.sql.len(), 2);
    let query = sql("SELECT w, n FROM r", "");
    let body = format!(
        "(local $s i32) (local.set $s (call $get_sql (i32.const 16) (i32.const {}) (i32.const 0) (i32.const 4)))
         (drop (call $log (i32.const 3) (i32.load (i32.const 0)) (i32.load (i32.const 4)))) (local.get $s)",
        query.len()
    );
    let o = h.run(&module(&[(16, &query)], &body), "x");
    assert_eq!(
        (o.code, o.effects.logs[0].message.as_str()),
        (Some(0), r#"[{"w":2.5,"n":3}]"#)
    );
    let bad = "not json";
    let o = h.run(
        &module(
            &[(16, bad)],
            &format!("(call $set_sql (i32.const 16) (i32.const {}))", bad.len()),
        ),
        "x",
    );
    assert_eq!(o.code, Some(-1));
    let forbidden = sql("DELETE FROM _ws_kv", "");
    let o = h.run(
        &module(
            &[(16, &forbidden)],
            &format!("(call $set_sql (i32.const 16) (i32.const {}))", forbidden.len()),
        ),
        "x",
    );
    assert_eq!(o.code, Some(-1), "internal tables are out of reach");
}

#[test]
fn mint_credits_the_ledger_and_balance_of_reads_it() {
    let mut h = Harness::new();
    let address = "ab".repeat(20);
    let mint = format!(
        r#"{{"to":"{LEDGER_TOKEN}","value":"0","data":"0x40c10f19{:0>64}{:064x}"}}"#,
        address, 500u128
    );
    let balance = format!(r#"{{"to":"{LEDGER_TOKEN}","data":"0x70a08231{:0>64}"}}"#, address);
    let body = format!(
        "(drop (call $send_tx (i32.const 0) (i32.const 16) (i32.const {}) (i32.const 0) (i32.const 4)))
         (drop (call $call (i32.const 0) (i32.const 1024) (i32.const {}) (i32.const 8) (i32.const 12)))
         ;; the balance word's last byte: 500 = 0x01f4 (this call's mint); 0 when it is.
         (i32.ne (i32.load8_u (i32.add (i32.load (i32.const 8)) (i32.const 31))) (i32.const 0xf4))",
        mint.len(),
        balance.len()
    );
    let o = h.run(&module(&[(16, &mint), (1024, &balance)], &body), "x");
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.effects.credits.len(), 1);
    assert_eq!(o.effects.credits[0].amount, 500);
    assert_eq!(o.effects.credits[0].address, format!("0x{address}"));

    let other = r#"{"to":"0x00000000000000000000000000000000000000ff","value":"0","data":"0x"}"#;
    let o = h.run(
        &module(
            &[(16, other)],
            &format!(
                "(call $send_tx (i32.const 0) (i32.const 16) (i32.const {}) (i32.const 0) (i32.const 4))",
                other.len()
            ),
        ),
        "x",
    );
    assert_eq!(o.code, Some(-1));
    assert!(o.effects.logs[0].message.contains("no chain 0 is configured"));
}

#[test]
fn metrics_api_call_abort_and_wasi_stdout() {
    let mut h = Harness::new();
    let m = r#"{"windows":1}"#;
    let o = h.run(
        &module(
            &[(16, m)],
            &format!("(call $metrics (i32.const 16) (i32.const {}))", m.len()),
        ),
        "x",
    );
    assert_eq!((o.code, o.effects.metrics.len()), (Some(0), 1));
    let o = h.run(
        &module(&[(16, "[1]")], "(call $metrics (i32.const 16) (i32.const 3))"),
        "x",
    );
    assert_eq!(o.code, Some(-1), "metrics must be an object");
    let o = h.run(
        &module(
            &[],
            "(call $api (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4))",
        ),
        "x",
    );
    assert_eq!(o.code, Some(-1));
    // AssemblyScript abort: UTF-16 strings with their byte length before them.
    let o = h.run(
        &module(
            &[(12, "\\06\\00\\00\\00b\\00a\\00d\\00")],
            "(call $abort (i32.const 16) (i32.const 0) (i32.const 3) (i32.const 9)) (i32.const 0)",
        ),
        "x",
    );
    assert!(
        o.code.is_none() && o.error.as_deref().unwrap().contains("abort: bad"),
        "{o:?}"
    );
    // WASI stdout: one iovec at 64 pointing at "hi\n".
    let o = h.run(
        &module(
            &[(16, "hi\\0a"), (64, "\\10\\00\\00\\00\\03\\00\\00\\00")],
            "(call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 80))",
        ),
        "x",
    );
    assert_eq!((o.code, o.effects.logs[0].message.as_str()), (Some(0), "hi"));
}

#[test]
fn hostile_applets_are_stopped_and_the_next_event_is_served() {
    let mut h = Harness::new();
    let limits = AppletLimits::default();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "infinite loop",
            module(&[], "(loop $l (br $l)) (i32.const 0)"),
            "timeout",
        ),
        (
            "unbounded memory.grow",
            module(
                &[],
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i32.const 0)",
            ),
            "memory",
        ),
        (
            "deep recursion",
            module(&[], "(call $rec (i32.const 0))"),
            "stack overflow",
        ),
        ("trap", module(&[], "(unreachable)"), "unreachable"),
    ];
    for (name, wasm, expect) in cases {
        let o = h.run_with(&wasm, "x", &limits);
        let error = o.error.clone().unwrap_or_default();
        assert!(o.code.is_none() && error.contains(expect), "{name}: {o:?}");
        eprintln!("{name}: stopped after {} ms ({error})", o.duration.as_millis());
        h.still_serves();
    }
    // A huge ws_log: refused without copying, the applet goes on.
    let o = h.run(
        &module(
            &[],
            "(call $log (i32.const 3) (i32.const 0) (i32.const 0x7fffffff))",
        ),
        "x",
    );
    assert_eq!(o.code, Some(6));
    // Logs past the budget are dropped and counted.
    let flood = "(loop $l (drop (call $log (i32.const 3) (i32.const 0) (i32.const 4096))) (br_if $l (i32.lt_u (global.get $next) (i32.const 0))))
                 (local.set $rid (i32.const 100))
                 (loop $m (drop (call $log (i32.const 3) (i32.const 0) (i32.const 4096)))
                   (local.set $rid (i32.sub (local.get $rid) (i32.const 1))) (br_if $m (local.get $rid))) (i32.const 0)";
    let o = h.run(&module(&[], flood), "x");
    assert_eq!(o.code, Some(0));
    assert!(o.effects.logs.iter().map(|l| l.message.len()).sum::<usize>() <= limits.log_bytes);
    assert!(o.effects.dropped_log_bytes > 0);
    // An alloc that returns garbage: the copy is refused with status 5.
    let garbage = module_with_alloc(
        &[],
        "(call $get_data (local.get $rid) (i32.const 0) (i32.const 4))",
        "(i32.const -16)",
    );
    let o = h.run(&garbage, "payload");
    assert_eq!(o.code, Some(5));
    h.still_serves();
}

#[test]
fn a_module_without_alloc_runs_and_a_copy_into_it_answers_status_5() {
    // W3bstream v1 looks `alloc` up only when it must copy into the module
    // ("alloc is nil"): a module that only logs runs without it.
    let mut h = Harness::new();
    let logs_only = br#"(module
        (import "env" "ws_log" (func $log (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "hello")
        (func (export "start") (param i32) (result i32)
          (call $log (i32.const 4) (i32.const 16) (i32.const 5))))"#;
    let o = h.run(logs_only, "x");
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(o.effects.logs[0].message, "hello");
    let wants_data = br#"(module
        (import "env" "ws_get_data" (func $get_data (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "start") (param $rid i32) (result i32)
          (call $get_data (local.get $rid) (i32.const 0) (i32.const 4))))"#;
    assert_eq!(h.run(wants_data, "payload").code, Some(5));
    h.still_serves();
}

#[test]
fn modules_without_the_abi_exports_are_refused() {
    let runtime = Runtime::new(None).unwrap();
    let no_memory = br#"(module (func (export "start") (param i32) (result i32) (i32.const 0)))"#;
    assert!(
        runtime
            .compile(no_memory)
            .err()
            .unwrap()
            .to_string()
            .contains("memory")
    );
    let bad_import = br#"(module (import "env" "steal_keys" (func)) (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) (i32.const 0)))"#;
    assert!(runtime.compile(bad_import).is_err());
    assert!(runtime.compile(b"not wasm").is_err());
}
