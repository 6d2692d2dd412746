//! The checkpoint thread against a real WAL: what asks it for a checkpoint
//! (the writer's and the ledger's commits, counted from the newest
//! checkpoint) and when it restarts the WAL (past the restart size, once no
//! reader is in it, in a turn of its own).

use super::*;

/// A store-configured database with a table, its writer's connection
/// hooked to a checkpoint thread.
fn hooked_writer() -> (tempfile::TempDir, std::path::PathBuf, Connection, Checkpointer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut writer = Connection::open(&path).unwrap();
    super::super::schema::configure(&mut writer).unwrap();
    writer.execute_batch("CREATE TABLE t (x BLOB NOT NULL)").unwrap();
    let cp = Checkpointer::start(&path, "test-checkpoint", None, RESTART_BYTES).unwrap();
    cp.hook(&mut writer).unwrap();
    (dir, path, writer, cp)
}

#[test]
fn the_writers_big_commits_are_checkpointed_by_the_thread_not_the_writer() {
    let (_dir, _, writer, cp) = hooked_writer();
    let page: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let threshold = WAL_BYTES / page;
    let fill = |c: &Connection, bytes: i64| {
        let tx = c.unchecked_transaction().unwrap();
        for _ in 0..bytes / 3000 {
            tx.execute("INSERT INTO t (x) VALUES (zeroblob(3000))", [])
                .unwrap();
        }
        tx.commit().unwrap();
    };
    // Below the threshold nothing is asked for.
    fill(&writer, WAL_BYTES / 10);
    assert_eq!(cp.asked(), 0);
    // Past it the commit asks, and the thread copies every frame (no
    // reader holds an old snapshot here).
    fill(&writer, WAL_BYTES);
    assert_eq!(cp.asked(), 1);
    let (wal, copied) = cp
        .wait_made(1, Duration::from_secs(60))
        .expect("the thread checkpoints");
    assert!(wal >= threshold && copied == wal, "{wal} frames, {copied} copied");
    // The writer did not checkpoint by itself: its automatic checkpoint
    // is off (the WAL hook replaced it), so the WAL was still whole when
    // the thread got to it.
    let auto: i64 = writer
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(auto, 0);
}

/// Commits `bytes` of rows in transactions of at most 1 MiB.
fn fill(c: &Connection, bytes: i64) {
    let mut left = bytes;
    while left > 0 {
        let chunk = left.min(1 << 20);
        let tx = c.unchecked_transaction().unwrap();
        for _ in 0..(chunk / 3000).max(1) {
            tx.execute("INSERT INTO t (x) VALUES (zeroblob(3000))", [])
                .unwrap();
        }
        tx.commit().unwrap();
        left -= chunk;
    }
}

/// Commits rows in small transactions until the WAL file grew by
/// `bytes` of pages (frames are written in order, so its length counts
/// them while the WAL is not started over).
fn grow_wal(c: &Connection, path: &Path, bytes: i64) {
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let wal = path.with_extension("db-wal");
    let frames = || std::fs::metadata(&wal).map_or(0, |m| m.len() as i64) / (page + 24);
    let target = frames() + bytes / page;
    while frames() < target {
        fill(c, 32 << 10);
    }
}

/// A connection in a read transaction on the WAL as it is now.
fn reader_in_the_wal(path: &Path) -> Connection {
    let r = Connection::open(path).unwrap();
    r.execute_batch("BEGIN").unwrap();
    let _: i64 = r.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    r
}

/// The WAL's frames, as a checkpoint on another connection reports them.
fn wal_frames(path: &Path) -> i64 {
    let c = Connection::open(path).unwrap();
    checkpoint(&c, "PASSIVE").unwrap().1
}

#[test]
fn a_wal_a_reader_keeps_is_checkpointed_per_wal_bytes_written_since_not_per_commit() {
    let (_dir, path, writer, cp) = hooked_writer();
    grow_wal(&writer, &path, WAL_BYTES - (200 << 10));
    assert_eq!(cp.asked(), 0);
    // A reader in the WAL: the writer cannot start it over, so it only
    // grows, as under load.
    let reader = reader_in_the_wal(&path);
    grow_wal(&writer, &path, 400 << 10);
    assert!(cp.asked() >= 1, "past WAL_BYTES the commits ask");
    let (wal, copied) = cp.wait_made(1, Duration::from_secs(60)).unwrap();
    assert!(
        copied > 0 && copied < wal,
        "{copied} of {wal}: the reader's snapshot"
    );
    // Small commits after it write far less than WAL_BYTES: nobody asks
    // (counting the whole WAL, each of them asked again).
    let asked = cp.asked();
    for _ in 0..10 {
        fill(&writer, 10 << 10);
    }
    assert_eq!(cp.asked(), asked, "small commits after a checkpoint ask nothing");
    // Another WAL_BYTES since that checkpoint asks again.
    grow_wal(&writer, &path, WAL_BYTES);
    assert!(cp.asked() > asked);
    assert_eq!(cp.restarts(), (0, 0), "far below RESTART_BYTES");
    drop(reader);
}

#[test]
fn past_the_restart_size_the_thread_restarts_the_wal_in_a_turn_once_no_reader_is_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut writer = Connection::open(&path).unwrap();
    super::super::schema::configure(&mut writer).unwrap();
    writer.execute_batch("CREATE TABLE t (x BLOB NOT NULL)").unwrap();
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let turns = Arc::new(Turns::new(metrics.clone()));
    let cp = Checkpointer::start(&path, "test-checkpoint", Some(turns), 3 * WAL_BYTES).unwrap();
    cp.hook(&mut writer).unwrap();
    let page: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();

    fill(&writer, 100 << 10);
    let reader = reader_in_the_wal(&path);
    fill(&writer, 4 * WAL_BYTES);
    // Checkpoints run meanwhile, but none copies the WAL whole while the
    // reader keeps its old snapshot: no restart is tried.
    let made = cp.hooks.0.lock().made;
    for n in 1..=2 {
        fill(&writer, 10 << 10);
        cp.wait_made(made + n, Duration::from_secs(60)).unwrap();
    }
    assert_eq!(cp.restarts(), (0, 0));
    assert!(wal_frames(&path) * page >= 4 * WAL_BYTES);

    // The reader leaves: the next commit's report has the thread copy the
    // WAL whole and restart it, in a turn of its own.
    drop(reader);
    fill(&writer, 10 << 10);
    assert!(
        cp.wait_restarts(1, Duration::from_secs(60)),
        "{:?}",
        cp.restarts()
    );
    let (tried, made) = cp.restarts();
    assert!(made >= 1 && tried >= made, "{tried} tried, {made} made");
    let text = metrics.render();
    let line = "wattstream_store_turn_held_seconds_count{writer=\"checkpoint\"} 1";
    assert!(text.contains(line), "{line} in\n{text}");
    // The writer's next commit writes the WAL from its beginning.
    fill(&writer, 10 << 10);
    let frames = wal_frames(&path);
    assert!(frames * page < WAL_BYTES, "{frames} frames after the restart");
    // And the count starts over with it: another WAL_BYTES written into
    // the new WAL asks for a checkpoint, long before the restart size
    // (counted from the old WAL's copied frames, nothing would ask until
    // then).
    let asked = cp.asked();
    fill(&writer, WAL_BYTES + (1 << 20));
    assert!(cp.asked() > asked, "the new WAL's first WAL_BYTES asked");
    assert!(wal_frames(&path) * page < 3 * WAL_BYTES, "below the restart size");
}

#[test]
fn another_hooked_connection_asks_the_same_thread() {
    let (_dir, path, _writer, cp) = hooked_writer();
    // The ledger's connection: hooked without keeping the thread alive.
    let mut ledger = Connection::open(&path).unwrap();
    cp.hooks().hook(&mut ledger).unwrap();
    let tx = ledger.unchecked_transaction().unwrap();
    for _ in 0..WAL_BYTES / 3000 + 1 {
        tx.execute("INSERT INTO t (x) VALUES (zeroblob(3000))", [])
            .unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(cp.asked(), 1, "the ledger's big commit asked the thread");
    let (wal, copied) = cp.wait_made(1, Duration::from_secs(60)).unwrap();
    assert!(copied == wal && wal > 0, "{wal} frames, {copied} copied");
}
