//! The store's behaviour, the same on both engines: every test here runs once
//! on SQLite and once on PostgreSQL (`<behaviour>::sqlite`,
//! `<behaviour>::postgres`), through the handles the processor uses
//! ([`Writer`], [`Reads`]). PostgreSQL tests get a database of their own.

mod common;

use std::sync::Arc;

use wattstream_processor::config::StoreConfig;
use wattstream_processor::metrics::Metrics;
use wattstream_processor::store::{self, Committed, NewDevice, NewEvent, Reads, RegisterOutcome, Writer, pg};

use common::pg::TestDb;

#[derive(Clone, Copy, Debug)]
enum Engine {
    Sqlite,
    Postgres,
}

/// An open store and what keeps it alive (a directory, a database).
struct Open {
    writer: Writer,
    reads: Reads,
    _dir: Option<tempfile::TempDir>,
    db: Option<Arc<TestDb>>,
}

async fn open(engine: Engine) -> Open {
    match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let (writer, reads, _thread, _) =
                store::open(dir.path(), &StoreConfig::default(), Arc::new(Metrics::default())).unwrap();
            Open {
                writer,
                reads,
                _dir: Some(dir),
                db: None,
            }
        }
        Engine::Postgres => {
            let db = Arc::new(TestDb::create().await);
            let (writer, reads) = open_pg(&db.url).await;
            Open {
                writer,
                reads,
                _dir: None,
                db: Some(db),
            }
        }
    }
}

async fn open_pg(url: &str) -> (Writer, Reads) {
    let (w, r, _) = open_pg_with(url, Arc::new(Metrics::default())).await;
    (w, r)
}

async fn open_pg_with(url: &str, metrics: Arc<Metrics>) -> (Writer, Reads, Arc<Metrics>) {
    let (writer, reads, _task) = pg::open(url, &StoreConfig::default(), metrics.clone(), None)
        .await
        .unwrap();
    (writer, Reads::Postgres(reads), metrics)
}

/// Runs a behaviour on both engines.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await
            }
        }
    )*};
}

on_both_engines!(
    a_reading_is_stored_once_and_another_for_its_slot_is_a_conflict,
    one_group_with_a_reading_twice_stores_it_once,
    concurrent_writers_store_each_reading_once,
    events_page_by_time_with_a_cursor,
    the_registry_registers_once_updates_owners_and_revokes_for_good,
    rejected_envelopes_are_counted,
);

const DEVICE: &str = "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn event(seq: Option<u64>, timestamp: u64, watts: f64) -> NewEvent {
    let data = match seq {
        Some(s) => format!(r#"{{"seq":{s},"sensor_reading":{watts},"timestamp":{timestamp}}}"#),
        None => format!(r#"{{"sensor_reading":{watts},"timestamp":{timestamp}}}"#),
    };
    NewEvent {
        device_id: DEVICE.into(),
        seq,
        timestamp,
        sensor_reading: watts,
        data,
        signature: [7; 64],
        received_at: 1_795_515_000 + timestamp as i64 % 1000,
    }
}

async fn register(w: &Writer, id: &str, owner: Option<&str>) -> RegisterOutcome {
    w.register(NewDevice {
        device_id: id.into(),
        public_key: "04ab".into(),
        owner: owner.map(Into::into),
        at: 1_795_515_000,
    })
    .await
    .unwrap()
}

async fn a_reading_is_stored_once_and_another_for_its_slot_is_a_conflict(engine: Engine) {
    let s = open(engine).await;
    register(&s.writer, DEVICE, None).await;
    let first = s
        .writer
        .insert_events(vec![event(Some(1), 100, 2.0)])
        .await
        .unwrap();
    assert!(matches!(first[..], [Committed::Accepted(_)]), "{first:?}");
    let again = s
        .writer
        .insert_events(vec![event(Some(1), 100, 2.0)])
        .await
        .unwrap();
    assert_eq!(again, vec![Committed::Duplicate]);
    let other = s
        .writer
        .insert_events(vec![event(Some(1), 100, 9.0)])
        .await
        .unwrap();
    assert_eq!(other, vec![Committed::Conflict]);
    // Without a seq the timestamp is the slot; it never collides with a seq.
    let by_time = s
        .writer
        .insert_events(vec![event(None, 1, 2.0), event(None, 1, 2.0)])
        .await
        .unwrap();
    assert!(
        matches!(by_time[..], [Committed::Accepted(_), Committed::Duplicate]),
        "{by_time:?}"
    );
    let d = s.reads.device(DEVICE).await.unwrap().expect("registered");
    assert_eq!((d.accepted, d.duplicate, d.conflict), (2, 2, 1));
    assert_eq!(d.last_seen, Some(1_795_515_100));
    let page = s
        .reads
        .events(DEVICE, i64::MIN, i64::MAX, None, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(
        page[1].data.get(),
        event(Some(1), 100, 2.0).data,
        "the signed bytes as sent"
    );
}

async fn one_group_with_a_reading_twice_stores_it_once(engine: Engine) {
    let s = open(engine).await;
    register(&s.writer, DEVICE, None).await;
    let batch = vec![
        event(Some(5), 50, 1.0),
        event(Some(5), 50, 1.0),
        event(Some(5), 50, 3.0),
        event(Some(6), 55, 1.0),
    ];
    let got = s.writer.insert_events(batch).await.unwrap();
    assert!(
        matches!(
            got[..],
            [
                Committed::Accepted(_),
                Committed::Duplicate,
                Committed::Conflict,
                Committed::Accepted(_)
            ]
        ),
        "{got:?}"
    );
    let d = s.reads.device(DEVICE).await.unwrap().unwrap();
    assert_eq!((d.accepted, d.duplicate, d.conflict), (2, 1, 1));
}

/// Eight clients send the same 50 readings at once, each in its own order;
/// on PostgreSQL half of them go through a second store handle, as a second
/// processor would.
async fn concurrent_writers_store_each_reading_once(engine: Engine) {
    let s = open(engine).await;
    register(&s.writer, DEVICE, None).await;
    let second = match &s.db {
        Some(db) => Some(open_pg(&db.url).await.0),
        None => None,
    };
    let readings: Vec<NewEvent> = (1..=50).map(|i| event(Some(i), i * 5, 1.0)).collect();
    let mut tasks = Vec::new();
    for client in 0..8usize {
        let writer = match (&second, client % 2) {
            (Some(w), 1) => w.clone(),
            _ => s.writer.clone(),
        };
        let mut mine = readings.clone();
        mine.rotate_left(client * 7);
        if client % 3 == 0 {
            mine.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for chunk in mine.chunks(10) {
                for (e, c) in chunk
                    .iter()
                    .zip(writer.insert_events(chunk.to_vec()).await.unwrap())
                {
                    if let Committed::Accepted(_) = c {
                        accepted.push(e.seq.unwrap());
                    }
                }
            }
            accepted
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    accepted.sort_unstable();
    assert_eq!(
        accepted,
        (1..=50).collect::<Vec<_>>(),
        "each reading accepted exactly once"
    );
    let stored = s
        .reads
        .events(DEVICE, i64::MIN, i64::MAX, None, 1000)
        .await
        .unwrap();
    assert_eq!(stored.len(), 50);
    let d = s.reads.device(DEVICE).await.unwrap().unwrap();
    assert_eq!((d.accepted, d.duplicate, d.conflict), (50, 350, 0));
}

async fn events_page_by_time_with_a_cursor(engine: Engine) {
    let s = open(engine).await;
    register(&s.writer, DEVICE, None).await;
    // Timestamps out of order, two readings per timestamp (seq differs).
    let mut batch = Vec::new();
    for i in 0..25u64 {
        batch.push(event(Some(i), 1000 + (i * 7 % 13), i as f64));
    }
    s.writer.insert_events(batch).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.reads.events(DEVICE, 1000, 1010, after, 4).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some((last.timestamp, last.id));
        seen.extend(page.iter().map(|e| (e.timestamp, e.id)));
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted, "ordered by (timestamp, id)");
    let expected = (0..25u64).filter(|i| 1000 + (i * 7 % 13) < 1010).count();
    assert_eq!(seen.len(), expected, "from <= timestamp < to, none twice");
    let last = s.reads.last_event(DEVICE).await.unwrap().unwrap();
    assert_eq!(last.timestamp, 1012);
    assert!(
        s.reads
            .last_event("0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
            .await
            .unwrap()
            .is_none()
    );
}

async fn the_registry_registers_once_updates_owners_and_revokes_for_good(engine: Engine) {
    let s = open(engine).await;
    assert_eq!(
        register(&s.writer, DEVICE, Some("alice")).await,
        RegisterOutcome::Created
    );
    assert_eq!(
        register(&s.writer, DEVICE, Some("bob")).await,
        RegisterOutcome::AlreadyRegistered
    );
    assert_eq!(
        s.reads.device(DEVICE).await.unwrap().unwrap().owner.as_deref(),
        Some("bob")
    );
    assert_eq!(
        register(&s.writer, DEVICE, None).await,
        RegisterOutcome::AlreadyRegistered
    );
    assert_eq!(
        s.reads.device(DEVICE).await.unwrap().unwrap().owner.as_deref(),
        Some("bob"),
        "kept"
    );
    assert!(s.writer.revoke(DEVICE.into(), 1_795_516_000).await.unwrap());
    assert!(s.writer.revoke(DEVICE.into(), 1_795_517_000).await.unwrap());
    assert_eq!(
        s.reads.device(DEVICE).await.unwrap().unwrap().revoked_at,
        Some(1_795_516_000),
        "the first revocation stands"
    );
    assert!(
        !s.writer
            .revoke("0xcccccccccccccccccccccccccccccccccccccccc".into(), 1)
            .await
            .unwrap()
    );
    assert_eq!(register(&s.writer, DEVICE, None).await, RegisterOutcome::Revoked);
    register(&s.writer, "0x1111111111111111111111111111111111111111", None).await;
    let all = s.reads.all_devices().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        s.reads
            .device("0x2222222222222222222222222222222222222222")
            .await
            .unwrap()
            .is_none()
    );
}

async fn rejected_envelopes_are_counted(engine: Engine) {
    let s = open(engine).await;
    register(&s.writer, DEVICE, None).await;
    s.writer.count_rejected(DEVICE.into());
    s.writer.count_rejected(DEVICE.into());
    assert!(
        s.writer.ping().await,
        "the writer worked through what came before"
    );
    assert_eq!(s.reads.device(DEVICE).await.unwrap().unwrap().rejected, 2);
    s.reads.ping().await.unwrap();
}

/// PostgreSQL's connections are killed (`pg_terminate_backend`) again and
/// again while groups are being written, each group slowed by a trigger so
/// the kills land inside transactions. A batch the writer acknowledged is
/// stored, and stored once; a batch it failed is sent again, as a meter's
/// outbox would, and lands; the writer reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_killed_under_load_lose_nothing_acknowledged() {
    let db = TestDb::create().await;
    let (writer, reads, metrics) = open_pg_with(&db.url, Arc::new(Metrics::default())).await;
    register(&writer, DEVICE, None).await;
    let (admin, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$;
             CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION slow();",
        )
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut kills = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(45)).await;
                let n = admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .len();
                kills += n as u32;
            }
            kills
        })
    };
    let readings: Vec<NewEvent> = (1..=400).map(|i| event(Some(i), i * 5, 1.0)).collect();
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    for chunk in readings.chunks(10) {
        match writer.insert_events(chunk.to_vec()).await {
            Ok(c) => {
                assert_eq!(c.len(), chunk.len());
                acknowledged.extend(chunk.iter().map(|e| e.seq.unwrap()));
            }
            Err(_) => failed.push(chunk.to_vec()),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.await.unwrap();
    let (failures, retries) = metrics.commit_trouble();
    assert!(
        kills > 0 && failures + retries > 0,
        "the kills landed in transactions: {kills} kills, {failures} groups failed, {retries} tried again"
    );
    let stored = |rows: &[wattstream_processor::store::EventRow]| {
        rows.iter().map(|e| e.seq.unwrap() as u64).collect::<Vec<_>>()
    };
    let now = reads
        .events(DEVICE, i64::MIN, i64::MAX, None, 1000)
        .await
        .unwrap();
    let now = stored(&now);
    for seq in &acknowledged {
        assert!(now.contains(seq), "acknowledged reading {seq} was lost");
    }
    // The outbox sends the failed batches again: they land (or were stored
    // by a commit whose answer was lost, and are duplicates now).
    for batch in failed {
        let again = writer.insert_events(batch).await.expect("the writer reconnected");
        assert!(
            again.iter().all(|c| !matches!(c, Committed::Conflict)),
            "{again:?}"
        );
    }
    let all = stored(
        &reads
            .events(DEVICE, i64::MIN, i64::MAX, None, 1000)
            .await
            .unwrap(),
    );
    assert_eq!(all, (1..=400).collect::<Vec<_>>(), "every reading stored once");
}

/// Two processors on one database: a registration and a revocation made
/// through the first reach the registry of another by notification; a
/// listener whose session is killed comes back and asks for a full reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_through_one_postgres_processor_reaches_the_others() {
    use wattstream_processor::registry::Registry;
    use wattstream_processor::store::pg::notify::{Change, listen};
    let wait = std::time::Duration::from_secs(30); // a hang guard, not a timing claim
    let db = TestDb::create().await;
    let (a, _) = open_pg(&db.url).await;
    let (_, reads_b) = open_pg(&db.url).await;
    let registry_b = Registry::from_rows(&reads_b.all_devices().await.unwrap());
    let mut heard = listen(db.url.clone(), std::time::Duration::from_millis(50));
    assert_eq!(
        tokio::time::timeout(wait, heard.recv()).await.unwrap(),
        Some(Change::Resync)
    );
    // Processor B applies what it hears, as `serve` does.
    let follow = |registry: &Registry, row: Option<wattstream_processor::store::DeviceRow>| {
        registry.refresh(&row.expect("the row the notification named"));
    };
    register(&a, DEVICE, Some("alice")).await;
    let id = wattstream_sdk::DeviceId::from_hex(DEVICE).unwrap();
    assert_eq!(
        tokio::time::timeout(wait, heard.recv()).await.unwrap(),
        Some(Change::Device(DEVICE.into()))
    );
    follow(&registry_b, reads_b.device(DEVICE).await.unwrap());
    assert_eq!(registry_b.get(&id).map(|s| s.revoked), Some(false));
    assert!(a.revoke(DEVICE.into(), 1_795_600_000).await.unwrap());
    assert_eq!(
        tokio::time::timeout(wait, heard.recv()).await.unwrap(),
        Some(Change::Device(DEVICE.into()))
    );
    follow(&registry_b, reads_b.device(DEVICE).await.unwrap());
    assert_eq!(
        registry_b.get(&id).map(|s| s.revoked),
        Some(true),
        "B refuses the device now"
    );
    // The listener's session is killed: it reconnects and says Resync.
    let (admin, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'wattstream-registry-listener'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1);
    assert_eq!(
        tokio::time::timeout(wait, heard.recv()).await.unwrap(),
        Some(Change::Resync)
    );
}

/// The ledger and retention write to the same SQLite file from connections
/// of their own. Whenever they commit, registrations and ingest still commit:
/// the writer takes the write lock before it reads (a deferred transaction
/// that had read was refused the upgrade at once, and the whole group
/// answered 503: seen registering 100,000 devices in `bench`).
#[tokio::test]
async fn sqlite_registrations_and_ingest_commit_while_another_connection_keeps_committing() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _reads, _thread, _) =
        store::open(dir.path(), &StoreConfig::default(), Arc::new(Metrics::default())).unwrap();
    register(&writer, DEVICE, None).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let (path, stop) = (store::db_path(dir.path()), stop.clone());
        std::thread::spawn(move || {
            let mut c = rusqlite::Connection::open(path).unwrap();
            store::wait_for_locks(&mut c).unwrap();
            let mut commits = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.execute_batch(
                    "BEGIN IMMEDIATE;
                     INSERT INTO ledger_meta (key, value) VALUES ('test_other', 1)
                       ON CONFLICT (key) DO UPDATE SET value = value + 1;
                     COMMIT;",
                )
                .unwrap();
                commits += 1;
            }
            commits
        })
    };
    // Registrations read (is the device there?) before they write.
    let mut registered = Vec::new();
    for i in 0..300 {
        let id = format!("{i:040x}");
        let outcome = writer
            .register(NewDevice {
                device_id: id.clone(),
                public_key: "04ab".into(),
                owner: None,
                at: 1_795_515_000,
            })
            .await
            .expect("a registration between the other connection's commits");
        registered.push(outcome);
    }
    let mut accepted = 0;
    for chunk in (1..=300u64).collect::<Vec<_>>().chunks(3) {
        let events = chunk.iter().map(|&i| event(Some(i), i * 5, 1.0)).collect();
        let results = writer
            .insert_events(events)
            .await
            .expect("a commit between the other connection's");
        accepted += results
            .iter()
            .filter(|c| matches!(c, Committed::Accepted(_)))
            .count();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        other.join().unwrap() > 0,
        "the other connection committed meanwhile"
    );
    assert_eq!(registered.len(), 300);
    assert_eq!(accepted, 300);
}
