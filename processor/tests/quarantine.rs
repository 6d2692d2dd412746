//! An event whose applet batch keeps failing (here: the project's log table
//! refuses every insert) is retried, then quarantined with a failure row that
//! says why, and the events after it run: one bad event never stops a
//! project's stream. On both stores: a SQLite project file, and a project's
//! schema on PostgreSQL (leased work, `applets::lease::quarantine`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use wattstream_sdk::{DeviceKey, Reading};

on_both_engines!(an_event_whose_batch_keeps_failing_is_quarantined_and_the_stream_goes_on);

/// Makes every insert into the default project's `_ws_logs` fail (`on`), or
/// stops it, behind the processor's back.
async fn poison(store: &TestStore, data_dir: &Path, on: bool) {
    match &store.db {
        None => {
            let db = rusqlite::Connection::open(data_dir.join("projects/default.db")).unwrap();
            db.execute_batch(if on {
                "CREATE TRIGGER poison BEFORE INSERT ON _ws_logs BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            } else {
                "DROP TRIGGER poison"
            })
            .unwrap();
        }
        Some(pg) => {
            let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let table = "\"ws_project_default\"._ws_logs";
            let sql = if on {
                format!(
                    "CREATE FUNCTION public.ws_poison() RETURNS trigger LANGUAGE plpgsql
                       AS $$ BEGIN RAISE EXCEPTION 'poisoned'; END $$;
                     CREATE TRIGGER poison BEFORE INSERT ON {table}
                       FOR EACH ROW EXECUTE FUNCTION public.ws_poison();"
                )
            } else {
                format!("DROP TRIGGER poison ON {table}")
            };
            client.batch_execute(&sql).await.unwrap();
        }
    }
}

async fn an_event_whose_batch_keeps_failing_is_quarantined_and_the_stream_goes_on(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(engine).await;
    let server = store.start(dir.path(), &[]);
    let logger = r#"(module
        (import "env" "ws_log" (func $log (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "seen")
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "start") (param i32) (result i32)
          (drop (call $log (i32.const 4) (i32.const 16) (i32.const 4))) i32.const 0))"#;
    deploy_ok(&server, "default", "logger", logger).await;
    let key = DeviceKey::generate();
    register(&server, &key.public_key().to_hex()).await;
    let send = |seq: u64| {
        let body = key.sign_reading(&Reading::new(2.0, now() - 100 + seq).with_seq(seq));
        let url = format!("{}/v1/events", server.url);
        async move {
            let answer: serde_json::Value = client()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["event_id"].as_i64().unwrap()
        }
    };
    let rows = |what: &'static str| {
        let url = format!("{}/v1/projects/default/{what}?limit=100", server.url);
        async move { admin_get(&url).await.1[what].as_array().unwrap().clone() }
    };
    let logged = |event: i64| async move { rows("logs").await.iter().any(|l| l["event_id"] == event) };
    let wait = || async { tokio::time::sleep(Duration::from_millis(50)).await };
    let start = Instant::now();
    let a = send(1).await;
    while !logged(a).await && start.elapsed() < Duration::from_secs(20) {
        wait().await;
    }
    assert!(logged(a).await, "the first event ran");

    // Every log insert now fails: the batch of the next event cannot commit.
    poison(&store, dir.path(), true).await;
    let b = send(2).await;
    let quarantined = || async move { rows("failures").await.into_iter().find(|f| f["event_id"] == b) };
    while quarantined().await.is_none() && start.elapsed() < Duration::from_secs(30) {
        wait().await;
    }
    let failure = quarantined().await.expect("the poisonous event is quarantined");
    assert!(
        failure["error"].as_str().unwrap().contains("quarantined after 3"),
        "{failure}"
    );
    assert!(!logged(b).await);

    poison(&store, dir.path(), false).await;
    let c = send(3).await;
    while !logged(c).await && start.elapsed() < Duration::from_secs(40) {
        wait().await;
    }
    assert!(logged(c).await, "the stream goes on after the quarantined event");
}
