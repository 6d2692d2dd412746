//! The PostgreSQL schema and its migrations. `wattstream_schema.version`
//! records how many migrations a database has had; a start runs the missing
//! ones in one transaction under an advisory lock, so several processes
//! starting at once migrate it once. The tables mirror SQLite's (see
//! `store/schema.rs`), with PostgreSQL's types.

use deadpool_postgres::Object;

use crate::store::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: devices and events.
    "CREATE TABLE devices (
        device_id     TEXT PRIMARY KEY,
        public_key    TEXT NOT NULL,
        owner         TEXT,
        registered_at BIGINT NOT NULL,
        revoked_at    BIGINT,
        accepted      BIGINT NOT NULL DEFAULT 0,
        duplicate     BIGINT NOT NULL DEFAULT 0,
        rejected      BIGINT NOT NULL DEFAULT 0,
        last_seen     BIGINT,
        conflict      BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE events (
        id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        device_id      TEXT NOT NULL,
        seq            BIGINT,
        timestamp      BIGINT NOT NULL,
        dedup_key      BIGINT NOT NULL,
        sensor_reading DOUBLE PRECISION NOT NULL,
        data           TEXT NOT NULL,
        signature      BYTEA NOT NULL,
        received_at    BIGINT NOT NULL,
        UNIQUE (device_id, dedup_key)
    );
    CREATE INDEX events_device_time ON events (device_id, timestamp, id);",
    // 2: the rewards ledger (as SQLite's schema 3, 6 and 7), and the applet
    // work of each project: events still to run through its chain, and the
    // credits its applets made, waiting for the ledger (`rewards::queue`).
    // Addresses compare byte-wise (`COLLATE "C"`), as in SQLite.
    r#"CREATE TABLE ledger_entries (
        seq         BIGINT PRIMARY KEY,
        epoch       BIGINT NOT NULL,
        address     TEXT COLLATE "C" NOT NULL,
        amount      TEXT NOT NULL,
        event_id    BIGINT NOT NULL,
        applet      TEXT NOT NULL,
        applet_hash TEXT NOT NULL,
        idx         BIGINT NOT NULL,
        prev        BYTEA NOT NULL,
        hash        BYTEA NOT NULL,
        timestamp   BIGINT NOT NULL,
        UNIQUE (event_id, applet, idx)
    );
    CREATE INDEX ledger_address_time ON ledger_entries (address, timestamp);
    CREATE INDEX ledger_epoch ON ledger_entries (epoch, seq);
    CREATE TABLE seals (
        epoch      BIGINT PRIMARY KEY,
        upto_seq   BIGINT NOT NULL,
        head       BYTEA NOT NULL,
        root       BYTEA NOT NULL,
        signature  BYTEA NOT NULL,
        public_key TEXT NOT NULL,
        sealed_at  BIGINT NOT NULL,
        epoch_s    BIGINT,
        cap        TEXT
    );
    CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    CREATE TABLE ledger_key (
        id         INT PRIMARY KEY CHECK (id = 1),
        public_key TEXT NOT NULL
    );
    CREATE TABLE ledger_balances (
        address TEXT COLLATE "C" PRIMARY KEY,
        balance TEXT NOT NULL
    );
    CREATE TABLE ledger_totals (
        epoch   BIGINT NOT NULL,
        address TEXT COLLATE "C" NOT NULL,
        total   TEXT NOT NULL,
        PRIMARY KEY (epoch, address)
    );
    CREATE TABLE seal_leaves (
        epoch       BIGINT NOT NULL,
        address     TEXT COLLATE "C" NOT NULL,
        epoch_total TEXT NOT NULL,
        balance     TEXT NOT NULL,
        PRIMARY KEY (epoch, address)
    );
    CREATE TABLE applet_pending (
        project   TEXT NOT NULL,
        event_id  BIGINT NOT NULL,
        device_id TEXT NOT NULL,
        PRIMARY KEY (project, event_id)
    );
    CREATE TABLE applet_credits (
        project     TEXT NOT NULL,
        event_id    BIGINT NOT NULL,
        position    BIGINT NOT NULL,
        idx         BIGINT NOT NULL,
        applet      TEXT NOT NULL,
        applet_hash TEXT NOT NULL,
        address     TEXT COLLATE "C" NOT NULL,
        amount      TEXT NOT NULL,
        timestamp   BIGINT NOT NULL,
        PRIMARY KEY (project, event_id, position, idx)
    );"#,
    // 3: project definitions (as SQLite's schema 2 and 4), shared by every
    // processor on the database.
    "CREATE TABLE applets (
        project    TEXT NOT NULL,
        name       TEXT NOT NULL,
        hash       TEXT NOT NULL,
        wasm       BYTEA NOT NULL,
        event_type TEXT NOT NULL,
        handler    TEXT NOT NULL,
        limits     TEXT NOT NULL,
        position   BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        gate       BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (project, name)
    );
    CREATE TABLE project_env (
        project TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (project, key)
    );
    CREATE TABLE publishers (
        project    TEXT NOT NULL,
        token_hash TEXT NOT NULL PRIMARY KEY,
        created_at BIGINT NOT NULL
    );",
    // 4: what every processor on the database must share, by fingerprint
    // (the read-token secret itself stays in each data directory).
    "CREATE TABLE shared_secrets (
        name        TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL
    );",
    // 5: device-to-owner bindings (as SQLite's schema 8).
    "CREATE TABLE bindings (
        device_id       TEXT NOT NULL,
        seq             BIGINT NOT NULL,
        kind            TEXT NOT NULL,
        owner           TEXT,
        effective_epoch BIGINT NOT NULL,
        nonce           TEXT NOT NULL UNIQUE,
        hash            TEXT NOT NULL,
        record          TEXT NOT NULL,
        PRIMARY KEY (device_id, seq)
    );",
    // A device's rewards per epoch (the dashboard's device page) without
    // scanning every device's totals.
    "CREATE INDEX ledger_totals_address ON ledger_totals (address, epoch);",
    // Devices self-service claims registered, and when (as SQLite's schema 10).
    "CREATE TABLE self_registered (
        device_id TEXT PRIMARY KEY,
        at        BIGINT NOT NULL
    );
    CREATE INDEX self_registered_at ON self_registered (at);",
];

/// Lock id for migrations (any constant shared by every process).
const MIGRATION_LOCK: i64 = 0x5761_7474_5374_0001;

/// Runs the migrations this database has not had yet.
pub async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS wattstream_schema (version INT NOT NULL)")
        .await?;
    let done: Option<i32> = tx
        .query_opt("SELECT version FROM wattstream_schema", &[])
        .await?
        .map(|r| r.get(0));
    if done.is_none() {
        tx.execute("INSERT INTO wattstream_schema (version) VALUES (0)", &[])
            .await?;
    }
    let done = done.unwrap_or(0).max(0) as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql).await?;
        tx.execute("UPDATE wattstream_schema SET version = $1", &[&((i + 1) as i32)])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
