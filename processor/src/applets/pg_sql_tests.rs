//! Applet SQL on PostgreSQL against a real server: what an applet may do in
//! its own schema, and each way out that it must not find. The applet's
//! author is the adversary here: they would like the host's paid time, the
//! ledger, another project's data, or the processor's own database role.

use super::*;
use crate::applets::host_db::{HostDb, host_path};
use crate::applets::lease::{PgWork, prepare};
use crate::applets::tables;
use crate::store::sql::PgSql;
use crate::testdb::TestDb;

struct Db {
    rt: tokio::runtime::Runtime,
    work: PgWork,
    _db: TestDb,
}

fn db() -> Db {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDb::create());
    let pool = rt.block_on(crate::store::pg::connect(&db.url, 4)).unwrap();
    let work = PgWork {
        pool,
        rt: rt.handle().clone(),
    };
    for p in ["p1", "p2"] {
        prepare(&work, p).unwrap();
    }
    Db { rt, work, _db: db }
}

impl Db {
    /// A batch's session for `project`: a transaction, the host's path.
    fn batch(&self, project: &str) -> HostDb {
        let c = PgSql::get(&self.work.pool, self.rt.handle()).unwrap();
        c.batch("BEGIN").unwrap();
        host_path(&c, project).unwrap();
        c.taint();
        HostDb::Postgres {
            conn: c,
            project: project.into(),
        }
    }

    fn admin(&self) -> PgSql {
        PgSql::get(&self.work.pool, self.rt.handle()).unwrap()
    }
}

use super::tests::req;

fn run(db: &mut HostDb, statement: &str) -> Result<usize, DbError> {
    db.exec(&req(statement, serde_json::json!([])), 1000)
}

#[test]
fn an_applet_keeps_tables_of_its_own_with_typed_parameters() {
    let d = db();
    let mut b = d.batch("p1");
    run(
        &mut b,
        "CREATE TABLE readings (device TEXT, watts DOUBLE PRECISION, n BIGINT, ok BOOLEAN, raw BYTEA)",
    )
    .unwrap();
    let insert = req(
        "INSERT INTO readings VALUES ($1, $2, $3, $4, $5)",
        serde_json::json!([{"string": "a'b"}, {"float64": 4.5}, {"int64": 7}, {"bool": true}, {"bytes": "AQI="}]),
    );
    assert_eq!(b.exec(&insert, 1000).unwrap(), 1);
    let rows = b
        .query(
            &req(
                "SELECT device, watts, n, ok FROM readings WHERE n = $1",
                serde_json::json!([{"int64": 7}]),
            ),
            1000,
        )
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&rows).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"device": "a'b", "watts": 4.5, "n": 7, "ok": true}])
    );
}

#[test]
fn an_applet_reaches_neither_the_host_nor_the_stream_nor_another_project() {
    let d = db();
    let mut other = d.batch("p2");
    run(&mut other, "CREATE TABLE secrets (s TEXT)").unwrap();
    other.sql().batch("COMMIT").unwrap();
    let mut b = d.batch("p1");
    for s in [
        "SELECT * FROM \"ws_project_p1\"._ws_paid",
        "SELECT * FROM \"ws_project_p1\"._ws_balances",
        "SELECT * FROM public.events",
        "SELECT * FROM public.devices",
        "SELECT * FROM public.ledger_entries",
        "SELECT * FROM public.applet_credits",
        "SELECT * FROM \"ws_applet_p2\".secrets",
        "DELETE FROM public.applet_pending",
        "INSERT INTO \"ws_project_p1\"._ws_kv VALUES ('\\x00', '\\x00')",
    ] {
        let r = b.query(&req(s, serde_json::json!([])), 1000);
        assert!(r.is_err(), "{s}: {r:?}");
        let r = run(&mut b, s);
        assert!(r.is_err(), "{s}: {r:?}");
    }
}

#[test]
fn an_applet_cannot_become_the_processor_or_end_the_batch() {
    let d = db();
    let mut b = d.batch("p1");
    for s in [
        "SET ROLE NONE",
        "RESET ROLE",
        "SELECT set_config('role', session_user, false)",
        "SET SESSION AUTHORIZATION DEFAULT",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT mine",
        "RELEASE applet_call",
        "SELECT 1; SELECT 2",
        "CREATE EXTENSION IF NOT EXISTS dblink",
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE public.mine (a INT)",
        "COPY (SELECT 1) TO '/tmp/out'",
    ] {
        let r = run(&mut b, s);
        assert!(r.is_err(), "{s}: {r:?}");
    }
    // The batch is still the host's, and still open.
    tables::kv_set(b.sql(), b"k", b"v").unwrap();
    assert_eq!(tables::kv_get(b.sql(), b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// An applet that puts its own `_ws_paid` (and temporary `_ws_balances`) in
/// front of the host's through the session's `search_path`: the host's next
/// statements still read and write its own tables.
#[test]
fn tables_an_applet_makes_never_stand_in_for_the_hosts() {
    let d = db();
    let mut b = d.batch("p1");
    tables::set_last_paid(b.sql(), "dev", 1000).unwrap();
    run(
        &mut b,
        "CREATE TABLE _ws_paid (device_id TEXT PRIMARY KEY, last_paid BIGINT)",
    )
    .unwrap();
    run(&mut b, "INSERT INTO _ws_paid VALUES ('dev', 0)").unwrap();
    run(
        &mut b,
        "CREATE TEMP TABLE _ws_balances (address TEXT PRIMARY KEY, amount TEXT)",
    )
    .ok();
    run(
        &mut b,
        "SELECT set_config('search_path', 'pg_temp, \"ws_applet_p1\", public', false)",
    )
    .unwrap();
    assert_eq!(
        tables::last_paid(b.sql(), "dev").unwrap(),
        Some(1000),
        "the host's paid time"
    );
    tables::add_to_balance(b.sql(), "0xab", 5).unwrap();
    b.sql().batch("COMMIT").unwrap();
    let a = d.admin();
    let host = a
        .row(
            "SELECT amount FROM \"ws_project_p1\"._ws_balances WHERE address = '0xab'",
            &[],
        )
        .unwrap();
    assert_eq!(host.unwrap()[0], Val::Text("5".into()));
}

#[test]
fn a_slow_or_huge_statement_stops_at_its_limits_and_the_batch_goes_on() {
    let d = db();
    let mut b = d.batch("p1");
    let slow = b.exec(&req("SELECT pg_sleep(5)", serde_json::json!([])), 50);
    assert!(format!("{:?}", slow.unwrap_err()).contains("statement timeout"));
    let huge = b.query(
        &req("SELECT generate_series(1, 20000) AS n", serde_json::json!([])),
        1000,
    );
    assert!(format!("{:?}", huge.unwrap_err()).contains("more than"));
    tables::kv_set(b.sql(), b"k", b"v").unwrap();
}

/// A session applet SQL ran on, dropped before it was reset (a failed or
/// panicking batch), is closed instead of going back to the pool.
#[test]
fn a_session_applet_sql_used_never_returns_to_the_pool_unreset() {
    let d = db();
    let mut b = d.batch("p1");
    run(
        &mut b,
        "SELECT set_config('search_path', '\"ws_applet_p1\"', false)",
    )
    .unwrap();
    let pid = b.sql().row("SELECT pg_backend_pid()", &[]).unwrap().unwrap()[0].clone();
    drop(b);
    let held: Vec<PgSql> = (0..4).map(|_| d.admin()).collect();
    for c in &held {
        assert_ne!(c.row("SELECT pg_backend_pid()", &[]).unwrap().unwrap()[0], pid);
    }
}
