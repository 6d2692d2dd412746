//! A project database on SQLite against its applets: typed parameters and
//! JSON rows, the host's `_ws_*` tables and the worker's transaction that an
//! applet's SQL cannot reach, and the bounds on values, rows and time.

use super::*;

fn req(s: &str) -> SqlRequest {
    SqlRequest::parse(s.as_bytes()).unwrap()
}

#[test]
fn typed_params_and_json_rows() {
    let mut db = ProjectDb::open(None, Duration::from_millis(100)).unwrap();
    db.exec(&req(
        r#"{"statement":"CREATE TABLE r (d TEXT, w REAL, n INTEGER, ok INTEGER, b BLOB)"}"#,
    ))
    .unwrap();
    let n = db
        .exec(&req(r#"{"statement":"INSERT INTO r VALUES (?,?,?,?,?)","params":[{"string":"x"},{"float64":1.5},{"int64":7},{"bool":true},{"bytes":"AQI="}]}"#))
        .unwrap();
    assert_eq!(n, 1);
    let rows: serde_json::Value =
        serde_json::from_slice(&db.query(&req(r#"{"statement":"SELECT * FROM r"}"#)).unwrap()).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"d":"x","w":1.5,"n":7,"ok":1,"b":"AQI="}])
    );
}

#[test]
fn applets_cannot_reach_internal_tables_or_attach() {
    let mut db = ProjectDb::open(None, Duration::from_millis(100)).unwrap();
    db.kv_set(b"k", b"v").unwrap();
    for s in [
        r#"{"statement":"SELECT * FROM _ws_kv"}"#,
        r#"{"statement":"DELETE FROM _WS_KV"}"#,
        r#"{"statement":"DROP TABLE _ws_kv"}"#,
        r#"{"statement":"ATTACH DATABASE '/tmp/x.db' AS other"}"#,
        r#"{"statement":"PRAGMA journal_mode=DELETE"}"#,
    ] {
        assert!(db.exec(&req(s)).is_err() && db.query(&req(s)).is_err(), "{s}");
    }
    assert_eq!(
        db.kv_get(b"k").unwrap().as_deref(),
        Some(&b"v"[..]),
        "internal access still works"
    );
}

#[test]
fn applets_cannot_touch_the_workers_transaction_or_tie_tables_to_it() {
    let mut db = ProjectDb::open(None, Duration::from_millis(100)).unwrap();
    db.conn().execute_batch("BEGIN").unwrap();
    super::super::tables::savepoint(db.conn()).unwrap();
    for s in [
        "COMMIT",
        "ROLLBACK",
        "BEGIN",
        "END",
        "SAVEPOINT mine",
        "RELEASE applet_call",
        "ROLLBACK TO applet_call",
        "CREATE TABLE x (id INTEGER REFERENCES _ws_cursor(id))",
        "CREATE VIEW v AS SELECT * FROM \"_WS_KV\"",
        "SELECT * FROM dbstat",
        "INSERT INTO sqlite_sequence VALUES ('t', 1)",
    ] {
        let r = req(&serde_json::json!({ "statement": s }).to_string());
        assert!(db.exec(&r).is_err() && db.query(&r).is_err(), "{s}");
    }
    // The host's savepoint and transaction are still there to release and commit.
    super::super::tables::release(db.conn()).unwrap();
    db.conn().execute_batch("COMMIT").unwrap();
    let fk: i64 = db
        .conn()
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 0, "foreign keys are off on project databases");
}

#[test]
fn values_rows_and_results_are_bounded() {
    let mut db = ProjectDb::open(None, Duration::from_millis(500)).unwrap();
    let big = req(&format!(
        r#"{{"statement":"SELECT zeroblob({}) AS b"}}"#,
        MAX_LENGTH + 1
    ));
    assert!(db.query(&big).unwrap_err().to_string().contains("too big"));
    let many = req(&format!(
        r#"{{"statement":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT {}) SELECT x FROM c"}}"#,
        MAX_ROWS + 1
    ));
    assert!(db.query(&many).unwrap_err().to_string().contains("rows"));
    let wide = req(
        r#"{"statement":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 20) SELECT x, hex(zeroblob(60000)) AS h FROM c"}"#,
    );
    assert!(db.query(&wide).unwrap_err().to_string().contains("bytes"));
    let fine = req(
        r#"{"statement":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100) SELECT x FROM c"}"#,
    );
    assert!(db.query(&fine).is_ok());
}

#[test]
fn a_runaway_query_is_interrupted() {
    let mut db = ProjectDb::open(None, Duration::from_millis(50)).unwrap();
    let q = req(
        r#"{"statement":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"}"#,
    );
    let err = db.query(&q).unwrap_err().to_string();
    assert!(err.contains("interrupt"), "{err}");
}
