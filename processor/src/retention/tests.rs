//! Retention's SQLite pass: what goes, what stays, and that it takes turns
//! with the ingest writer.

use super::*;

const NOW: u64 = 1_800_000_000;
const DAYS: u64 = 90;
const OLD: i64 = (NOW - DAYS * 86_400) as i64 - 1_000;
const EPOCH_S: u64 = 3600;

/// A store with a default project whose worker has processed up to
/// `processed`, epochs sealed up to the one holding `OLD`.
fn store(processed: i64) -> (tempfile::TempDir, Projects) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::store::db_path(dir.path());
    let mut c = Connection::open(&db).unwrap();
    crate::store::migrate(&mut c).unwrap();
    c.execute_batch(&format!(
        "INSERT INTO project_env (project, key, value) VALUES ('default', 'k', 'v');
         INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at)
         VALUES ({}, 0, x'', x'', x'', '', 0);",
        OLD as u64 / EPOCH_S
    ))
    .unwrap();
    let projects = Projects::open(&db, dir.path()).unwrap();
    let p = projects.get("default").unwrap();
    p.db.read(|db| {
        db.conn()
            .execute(
                "INSERT INTO _ws_cursor (id, last_event_id) VALUES (1, ?1)",
                [processed],
            )
            .unwrap()
    })
    .unwrap();
    (dir, projects)
}

fn event(dir: &tempfile::TempDir, id: i64, timestamp: i64, received_at: i64) {
    Connection::open(crate::store::db_path(dir.path()))
        .unwrap()
        .execute(
            "INSERT INTO events (id, device_id, seq, timestamp, dedup_key, sensor_reading, data, signature, received_at)
             VALUES (?1, 'd', ?1, ?2, ?1, 1.0, '{}', x'', ?3)",
            params![id, timestamp, received_at],
        )
        .unwrap();
}

fn ids(dir: &tempfile::TempDir) -> Vec<i64> {
    Connection::open(crate::store::db_path(dir.path()))
        .unwrap()
        .prepare("SELECT id FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn pass(dir: &tempfile::TempDir, projects: &Projects, days: u64) -> Removed {
    run_once(dir.path(), projects, "default", (days, EPOCH_S), NOW, None).unwrap()
}

#[test]
fn old_events_go_only_once_processed_and_sealed_and_never_the_newest() {
    let (dir, projects) = store(4);
    let unsealed = (OLD as u64 / EPOCH_S + 1) as i64 * EPOCH_S as i64;
    event(&dir, 1, OLD, OLD);
    event(&dir, 2, OLD, OLD);
    event(&dir, 3, unsealed, OLD); // its epoch is not sealed
    event(&dir, 4, OLD, NOW as i64 - 10); // received recently
    event(&dir, 5, OLD, OLD); // not processed yet
    assert_eq!(pass(&dir, &projects, 0).events, 0, "0 days keeps everything");
    assert_eq!(pass(&dir, &projects, DAYS).events, 2);
    assert_eq!(ids(&dir), vec![3, 4, 5]);
    projects
        .get("default")
        .unwrap()
        .db
        .read(|db| {
            db.conn()
                .execute("UPDATE _ws_cursor SET last_event_id = 5", [])
                .unwrap()
        })
        .unwrap();
    assert_eq!(pass(&dir, &projects, DAYS).events, 0, "5 is the newest row");
    assert_eq!(ids(&dir), vec![3, 4, 5]);
    // A new event does not reuse an id below the cursor.
    event(&dir, 6, NOW as i64, NOW as i64);
    assert_eq!(pass(&dir, &projects, DAYS).events, 1);
    assert_eq!(ids(&dir), vec![3, 4, 6]);
}

#[test]
fn taken_credits_and_old_failures_go_and_the_balance_applets_see_stays() {
    let (dir, projects) = store(0);
    let p = projects.get("default").unwrap();
    let address = format!("0x{}", "ab".repeat(20));
    p.db.read(|db| {
        for i in 1..=4i64 {
            db.conn()
                .execute(
                    "INSERT INTO _ws_credits (event_id, applet, idx, applet_hash, address, amount, timestamp)
                     VALUES (?1, 'a', 0, 'h', ?2, '1000', ?3)",
                    params![i, address, OLD],
                )
                .unwrap();
            db.add_to_balance(&address, 1000).unwrap();
        }
        db.conn()
            .execute_batch(&format!(
                "INSERT INTO _ws_failures (event_id, applet, code, error, at) VALUES (1, 'a', 1, 'x', {OLD});
                 INSERT INTO _ws_failures (event_id, applet, code, error, at) VALUES (2, 'a', 1, 'x', {NOW});"
            ))
            .unwrap();
        // Old ended transactions go; an old one still on its way and a new one stay.
        db.conn()
            .execute_batch(&format!(
                "INSERT INTO _ws_txs (event_id, applet, idx, chain_id, to_addr, value, data, state, attempts, next_at, at)
                 VALUES (1, 'a', 0, 1, '0x', '0', '0x', 'confirmed', 0, 0, {OLD}),
                        (1, 'a', 1, 1, '0x', '0', '0x', 'failed', 20, 0, {OLD}),
                        (1, 'a', 2, 1, '0x', '0', '0x', 'signed', 0, 0, {OLD}),
                        (2, 'a', 0, 1, '0x', '0', '0x', 'confirmed', 0, 0, {NOW});"
            ))
            .unwrap();
    })
    .unwrap();
    Connection::open(crate::store::db_path(dir.path()))
        .unwrap()
        .execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('credits_rowid', 3)",
            [],
        )
        .unwrap();
    let r = pass(&dir, &projects, DAYS);
    assert_eq!((r.credits, r.failures, r.txs), (3, 1, 2), "{r:?}");
    let states: Vec<String> =
        p.db.read(|db| {
            let mut st = db
                .conn()
                .prepare("SELECT state FROM _ws_txs ORDER BY id")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        })
        .unwrap();
    assert_eq!(states, ["signed", "confirmed"]);
    let (left, balance) =
        p.db.read(|db| {
            let left: i64 = db
                .conn()
                .query_row("SELECT COUNT(*) FROM _ws_credits", [], |r| r.get(0))
                .unwrap();
            (left, db.balance(&address).unwrap())
        })
        .unwrap();
    assert_eq!(left, 1, "not taken by the ledger yet");
    assert_eq!(balance, 4000, "balanceOf still counts removed credits");
}

#[test]
fn compiled_modules_no_applet_uses_go_after_a_day() {
    let (dir, projects) = store(0);
    let cache = dir.path().join("applet-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let day_old = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - 2 * 86_400);
    for name in ["gone", "deployed", "fresh"] {
        let f = std::fs::File::create(cache.join(format!("{name}.cwasm"))).unwrap();
        let at = if name == "fresh" {
            SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
        } else {
            day_old
        };
        f.set_modified(at).unwrap();
    }
    Connection::open(crate::store::db_path(dir.path()))
        .unwrap()
        .execute(
            "INSERT INTO applets (project, name, hash, wasm, event_type, handler, limits, position, created_at)
             VALUES ('default', 'x', 'deployed', x'', 'DEFAULT', 'start', '{}', 0, 0)",
            [],
        )
        .unwrap();
    assert_eq!(pass(&dir, &projects, DAYS).cache_files, 1);
    assert!(!cache.join("gone.cwasm").exists());
    assert!(cache.join("deployed.cwasm").exists() && cache.join("fresh.cwasm").exists());
}

/// `wattstream_store_turn_held_seconds_count{writer="WHO"}` in `metrics`.
fn turns_held(metrics: &crate::metrics::Metrics, who: &str) -> u64 {
    let key = format!("wattstream_store_turn_held_seconds_count{{writer=\"{who}\"}} ");
    let text = metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(&key)?.parse().ok())
        .unwrap_or_else(|| panic!("{key} in\n{text}"))
}

#[test]
fn old_events_go_in_small_batches_each_in_a_turn_taken_with_the_ingest_writer() {
    use std::sync::Arc;
    const N: i64 = 1_000;
    let (dir, projects) = store(N + 1);
    {
        let mut c = Connection::open(crate::store::db_path(dir.path())).unwrap();
        let tx = c.transaction().unwrap();
        for id in 1..=N + 1 {
            tx.execute(
                "INSERT INTO events (id, device_id, seq, timestamp, dedup_key, sensor_reading, data, signature, received_at)
                 VALUES (?1, 'd' || (?1 % 97), ?1, ?2, ?1, 1.0, '{}', x'', ?2)",
                params![id, OLD],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let turns = Arc::new(Turns::new(metrics.clone()));
    let checkpoints = crate::store::checkpoint::Checkpointer::start(
        &crate::store::db_path(dir.path()),
        "test-checkpoint",
        Some(turns.clone()),
        crate::store::checkpoint::RESTART_BYTES,
    )
    .unwrap();
    let others = OtherWriters {
        checkpoints: checkpoints.hooks(),
        turns: turns.clone(),
    };
    // An ingest group holds the lock: retention's first batch waits for it.
    let group = turns.take(TurnOf::Ingest);
    let path = dir.path().to_path_buf();
    let pass = std::thread::spawn(move || {
        run_once(&path, &projects, "default", (DAYS, EPOCH_S), NOW, Some(&others)).unwrap()
    });
    while turns.waiting() < 2 {
        assert!(!pass.is_finished(), "the pass ended without waiting for a turn");
        std::thread::yield_now();
    }
    assert_eq!(ids(&dir).len() as i64, N + 1, "nothing deleted before its turn");
    drop(group);
    let removed = pass.join().unwrap();
    assert_eq!(removed.events, N as u64, "every old event but the newest");
    assert_eq!(ids(&dir), [N + 1]);
    // A turn per batch: the first of MIN_BATCH, each at most twice the one
    // before (100 + 200 + 400 < 1,000 < + 800), never fewer than MIN_BATCH.
    let batches = turns_held(&metrics, "retention");
    assert!(
        (4..=(N / MIN_BATCH) as u64).contains(&batches),
        "{batches} turns for {N} events"
    );
    assert_eq!(turns_held(&metrics, "ingest"), 1);
}
