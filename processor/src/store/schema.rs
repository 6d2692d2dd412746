//! The SQLite schema and its migrations. `PRAGMA user_version` records how many
//! migrations a database has had; opening a database runs the missing ones in a
//! transaction each, so an old data directory upgrades in place.
//!
//! `events.dedup_key` is the duplicate rule of DESIGN §2 as one integer: the
//! reading's `seq` when it has one (0..=i64::MAX), otherwise `-1 - timestamp`.
//! The unique index on `(device_id, dedup_key)` makes "stored once" a property
//! of the database, whatever the order or concurrency of requests.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: devices and events.
    "CREATE TABLE devices (
        device_id     TEXT PRIMARY KEY,
        public_key    TEXT NOT NULL,
        owner         TEXT,
        registered_at INTEGER NOT NULL,
        revoked_at    INTEGER,
        accepted      INTEGER NOT NULL DEFAULT 0,
        duplicate     INTEGER NOT NULL DEFAULT 0,
        rejected      INTEGER NOT NULL DEFAULT 0,
        last_seen     INTEGER
    ) STRICT;
    CREATE TABLE events (
        id             INTEGER PRIMARY KEY,
        device_id      TEXT NOT NULL,
        seq            INTEGER,
        timestamp      INTEGER NOT NULL,
        dedup_key      INTEGER NOT NULL,
        sensor_reading REAL NOT NULL,
        data           TEXT NOT NULL,
        signature      BLOB NOT NULL,
        received_at    INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX events_dedup ON events(device_id, dedup_key);
    CREATE INDEX events_device_time ON events(device_id, timestamp, id);",
    // 2: applets, their strategies and project environments.
    "CREATE TABLE applets (
        project    TEXT NOT NULL,
        name       TEXT NOT NULL,
        hash       TEXT NOT NULL,
        wasm       BLOB NOT NULL,
        event_type TEXT NOT NULL,
        handler    TEXT NOT NULL,
        limits     TEXT NOT NULL,
        position   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project, name)
    ) STRICT;
    CREATE TABLE project_env (
        project TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (project, key)
    ) STRICT;
    CREATE TABLE publishers (
        project    TEXT NOT NULL,
        token_hash TEXT NOT NULL PRIMARY KEY,
        created_at INTEGER NOT NULL
    ) STRICT;",
    // 3: the rewards ledger.
    "CREATE TABLE ledger_entries (
        seq         INTEGER PRIMARY KEY,
        epoch       INTEGER NOT NULL,
        address     TEXT NOT NULL,
        amount      TEXT NOT NULL,
        event_id    INTEGER NOT NULL,
        applet      TEXT NOT NULL,
        applet_hash TEXT NOT NULL,
        idx         INTEGER NOT NULL,
        prev        BLOB NOT NULL,
        hash        BLOB NOT NULL,
        timestamp   INTEGER NOT NULL,
        UNIQUE (event_id, applet, idx)
    ) STRICT;
    CREATE INDEX ledger_address ON ledger_entries(address);
    CREATE TABLE seals (
        epoch      INTEGER PRIMARY KEY,
        upto_seq   INTEGER NOT NULL,
        head       BLOB NOT NULL,
        root       BLOB NOT NULL,
        signature  BLOB NOT NULL,
        public_key TEXT NOT NULL,
        sealed_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;",
    // 4: gates: applets that must run before any applet that mints.
    "ALTER TABLE applets ADD COLUMN gate INTEGER NOT NULL DEFAULT 0;",
    // 5: conflicts: a second, different reading for a slot a device already filled.
    "ALTER TABLE devices ADD COLUMN conflict INTEGER NOT NULL DEFAULT 0;",
    // 6: the epoch length and cap in force when each epoch was sealed.
    "ALTER TABLE seals ADD COLUMN epoch_s INTEGER;
     ALTER TABLE seals ADD COLUMN cap TEXT;",
    // 7: the ledger's derived rows, so nothing about it is kept in memory:
    // balances and per-epoch totals (updated in the transaction that writes
    // the entries), each seal's leaves (proofs are served from them), and
    // indexes for a device's last hour and an epoch's entries. Filled from
    // the entries at the first start after this migration (rewards::check).
    "CREATE TABLE ledger_balances (
        address TEXT PRIMARY KEY,
        balance TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE ledger_totals (
        epoch   INTEGER NOT NULL,
        address TEXT NOT NULL,
        total   TEXT NOT NULL,
        PRIMARY KEY (epoch, address)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE seal_leaves (
        epoch       INTEGER NOT NULL,
        address     TEXT NOT NULL,
        epoch_total TEXT NOT NULL,
        balance     TEXT NOT NULL,
        PRIMARY KEY (epoch, address)
    ) STRICT, WITHOUT ROWID;
    DROP INDEX ledger_address;
    CREATE INDEX ledger_address_time ON ledger_entries(address, timestamp);
    CREATE INDEX ledger_epoch ON ledger_entries(epoch, seq);",
    // 8: device-to-owner bindings (crate::onboarding): append-only, one
    // hash chain per device; every accepted nonce stays, so none binds twice.
    "CREATE TABLE bindings (
        device_id       TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        owner           TEXT,
        effective_epoch INTEGER NOT NULL,
        nonce           TEXT NOT NULL UNIQUE,
        hash            TEXT NOT NULL,
        record          TEXT NOT NULL,
        PRIMARY KEY (device_id, seq)
    ) STRICT;",
    // 9: a device's rewards per epoch (the dashboard's device page) without
    // scanning every device's totals.
    "CREATE INDEX ledger_totals_address ON ledger_totals(address, epoch);",
    // 10: devices self-service claims registered, and when: under
    // `onboarding.policy = "open"` at most `open_new_devices_per_hour` of them
    // in any hour (crate::onboarding::store).
    "CREATE TABLE self_registered (
        device_id TEXT PRIMARY KEY,
        at        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX self_registered_at ON self_registered(at);",
];

/// The page size of a new database (the store, a project's). Each event
/// lands in B-trees keyed by device or address (the store's two event
/// indexes, the ledger's, a project's balances, paid times and applet rows):
/// with 10,000 devices nearly every event dirties pages of its own in each,
/// and every dirty page is written twice, to the WAL and by the checkpoint.
/// At SQLite's 4 KiB the sustained run wrote 40 KB per event (280 MB/s,
/// `/proc/PID/io`); at 1 KiB half that, and the one read the benchmark
/// times (the fleet page) took as long as before. A database made before
/// keeps its size: SQLite changes it only on a `VACUUM` outside WAL mode.
pub const PAGE_SIZE: i64 = 1024;

/// Settings every connection gets: WAL so readers never block the writer,
/// `synchronous = FULL` so a commit is on disk when it returns, and
/// [`PAGE_SIZE`] when it creates the file.
pub fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    wait_for_locks(conn)?;
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Waits up to about 10 s for another connection's lock, polling every
/// 100 us at first and every millisecond after 10 ms. SQLite's own busy
/// timeout sleeps 1, 2, 5, ... up to 100 ms between tries: the ingest writer
/// and the ledger, which take turns on the store's write lock many times a
/// second, spent most of the wait asleep after the lock was free (the
/// sustained ingest profile: both threads idle while the ledger fell behind).
pub fn wait_for_locks(conn: &mut Connection) -> rusqlite::Result<()> {
    fn busy(tries: i32) -> bool {
        let fast = 100;
        if tries < fast {
            std::thread::sleep(std::time::Duration::from_micros(100));
            true
        } else if tries < fast + 10_000 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            true
        } else {
            false
        }
    }
    conn.busy_handler(Some(busy))
}

/// Runs the migrations this database has not had yet.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The `dedup_key` of a reading (see the module docs).
pub fn dedup_key(seq: Option<u64>, timestamp: u64) -> i64 {
    match seq {
        Some(s) => s as i64,
        None => -1 - timestamp as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        for _ in 0..2 {
            let mut c = Connection::open(&path).unwrap();
            configure(&mut c).unwrap();
            migrate(&mut c).unwrap();
            let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
            assert_eq!(v as usize, MIGRATIONS.len());
        }
    }

    #[test]
    fn seq_and_timestamp_keys_never_collide() {
        assert_eq!(dedup_key(Some(0), 5), 0);
        assert_eq!(dedup_key(None, 0), -1);
        assert!(dedup_key(None, i64::MAX as u64) < 0);
        assert_ne!(dedup_key(Some(7), 7), dedup_key(None, 7));
    }
}
