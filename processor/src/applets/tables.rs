//! The host's own tables in a project database (`_ws_*`): the key-value
//! store, balances, paid time, what each event's applets saw, logs,
//! failures and the transactions outbox (`chain::outbox`). The statements are the same on SQLite (a project file) and on
//! PostgreSQL (the project's schema, [`pg_schema`]), so the chain runs the
//! same way on both; the engine-specific parts are the credits (a cursor-read
//! table on SQLite, the ledger's queue on PostgreSQL) and applet SQL.

use crate::store::sql::{Engine, Sql, SqlError, Val};

type Result<T> = std::result::Result<T, SqlError>;

pub fn kv_get(c: &dyn Sql, key: &[u8]) -> Result<Option<Vec<u8>>> {
    match c.row("SELECT value FROM _ws_kv WHERE key = ?1", &[key.into()])? {
        Some(r) => match &r[0] {
            Val::Blob(v) => Ok(Some(v.clone())),
            other => Err(SqlError::Malformed {
                col: 0,
                what: "blob",
                value: format!("{other:?}"),
            }),
        },
        None => Ok(None),
    }
}

pub fn kv_set(c: &dyn Sql, key: &[u8], value: &[u8]) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        &[key.into(), value.into()],
    )?;
    Ok(())
}

/// The balance of `address` (`0x…`) from this project's credits: one row,
/// kept as credits are written.
pub fn balance(c: &dyn Sql, address: &str) -> Result<u128> {
    Ok(c.row(
        "SELECT amount FROM _ws_balances WHERE address = ?1",
        &[address.to_ascii_lowercase().into()],
    )?
    .and_then(|r| r[0].amount(0).ok())
    .unwrap_or(0))
}

/// Adds a credit's amount to `address`'s balance.
pub fn add_to_balance(c: &dyn Sql, address: &str, amount: u128) -> Result<()> {
    let now = balance(c, address)?;
    c.exec(
        "INSERT INTO _ws_balances (address, amount) VALUES (?1, ?2)
         ON CONFLICT(address) DO UPDATE SET amount = excluded.amount",
        &[
            address.to_ascii_lowercase().into(),
            now.saturating_add(amount).to_string().into(),
        ],
    )?;
    Ok(())
}

/// The device's latest paid timestamp (`wattstream_rewards::paid`).
pub fn last_paid(c: &dyn Sql, device_id: &str) -> Result<Option<i64>> {
    c.row(
        "SELECT last_paid FROM _ws_paid WHERE device_id = ?1",
        &[device_id.into()],
    )?
    .map(|r| r[0].int(0))
    .transpose()
}

pub fn set_last_paid(c: &dyn Sql, device_id: &str, at: i64) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_paid (device_id, last_paid) VALUES (?1, ?2)
         ON CONFLICT(device_id) DO UPDATE SET last_paid = excluded.last_paid",
        &[device_id.into(), Val::Int(at)],
    )?;
    Ok(())
}

/// What an event's applets saw (JSON), if it was kept.
pub fn seen(c: &dyn Sql, event_id: i64) -> Result<Option<String>> {
    c.row(
        "SELECT seen FROM _ws_seen WHERE event_id = ?1",
        &[Val::Int(event_id)],
    )?
    .map(|r| r[0].text(0).map(str::to_string))
    .transpose()
}

pub fn keep_seen(c: &dyn Sql, event_id: i64, seen: &str) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_seen (event_id, seen) VALUES (?1, ?2)
         ON CONFLICT(event_id) DO UPDATE SET seen = excluded.seen",
        &[Val::Int(event_id), seen.into()],
    )?;
    Ok(())
}

pub fn log(c: &dyn Sql, event_id: i64, applet: &str, level: &str, message: &str, at: i64) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_logs (event_id, applet, level, message, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            Val::Int(event_id),
            applet.into(),
            level.into(),
            message.into(),
            Val::Int(at),
        ],
    )?;
    Ok(())
}

pub fn failure(
    c: &dyn Sql,
    event_id: i64,
    applet: &str,
    code: Option<i32>,
    error: Option<&str>,
    at: i64,
) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_failures (event_id, applet, code, error, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            Val::Int(event_id),
            applet.into(),
            code.map(i64::from).into(),
            error.into(),
            Val::Int(at),
        ],
    )?;
    Ok(())
}

/// A call's writes are one savepoint inside the batch's transaction.
/// (On SQLite as prepared statements: parsing them for every call was a
/// tenth of the applet worker's time.)
pub fn savepoint(c: &dyn Sql) -> Result<()> {
    match c.engine() {
        Engine::Sqlite => c.exec("SAVEPOINT applet_call", &[]).map(drop),
        Engine::Postgres => c.batch("SAVEPOINT applet_call"),
    }
}

pub fn release(c: &dyn Sql) -> Result<()> {
    match c.engine() {
        Engine::Sqlite => c.exec("RELEASE applet_call", &[]).map(drop),
        Engine::Postgres => c.batch("RELEASE applet_call"),
    }
}

pub fn rollback_call(c: &dyn Sql) {
    let _ = c.batch("ROLLBACK TO applet_call; RELEASE applet_call");
}

/// Keeps what a chain call answered (`None`: it failed) for `rewards replay`.
pub fn keep_call(c: &dyn Sql, event_id: i64, applet: &str, idx: usize, answer: Option<&[u8]>) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_calls (event_id, applet, idx, answer) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (event_id, applet, idx) DO NOTHING",
        &[
            Val::Int(event_id),
            applet.into(),
            Val::Int(idx as i64),
            answer.map(hex::encode).into(),
        ],
    )?;
    Ok(())
}

/// The answers `applet`'s chain calls got on `event_id`, in order.
pub fn calls(c: &dyn Sql, event_id: i64, applet: &str) -> Result<Vec<Option<Vec<u8>>>> {
    c.rows(
        "SELECT answer FROM _ws_calls WHERE event_id = ?1 AND applet = ?2 ORDER BY idx",
        &[Val::Int(event_id), applet.into()],
    )?
    .iter()
    .map(|r| {
        r[0].opt_text(0)?
            .map(|h| {
                hex::decode(h).map_err(|_| SqlError::Malformed {
                    col: 0,
                    what: "hex",
                    value: h.to_string(),
                })
            })
            .transpose()
    })
    .collect()
}

/// The schema holding a project's tables on PostgreSQL (quoted: project
/// names may hold `-`).
pub fn pg_schema(project: &str) -> String {
    format!("\"ws_project_{project}\"")
}

/// Creates a project's schema and tables on PostgreSQL when missing (the
/// same tables as a SQLite project file, but the credits: those go to the
/// ledger's queue, `rewards::queue`).
pub fn ensure_pg(c: &dyn Sql, project: &str) -> Result<()> {
    let s = pg_schema(project);
    c.batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}._ws_kv (key BYTEA PRIMARY KEY, value BYTEA NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}._ws_balances (address TEXT PRIMARY KEY, amount TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}._ws_paid (device_id TEXT PRIMARY KEY, last_paid BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}._ws_seen (event_id BIGINT PRIMARY KEY, seen TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}._ws_logs (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id BIGINT, applet TEXT NOT NULL,
             level TEXT NOT NULL, message TEXT NOT NULL, at BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}._ws_failures (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             event_id BIGINT NOT NULL, applet TEXT NOT NULL, code BIGINT, error TEXT, at BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}._ws_txs (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id BIGINT NOT NULL,
             applet TEXT NOT NULL, idx BIGINT NOT NULL,
             chain_id BIGINT NOT NULL, to_addr TEXT NOT NULL, value TEXT NOT NULL, data TEXT NOT NULL,
             state TEXT NOT NULL, nonce BIGINT, hash TEXT, raw TEXT, block BIGINT,
             attempts BIGINT NOT NULL, next_at BIGINT NOT NULL, error TEXT, at BIGINT NOT NULL,
             UNIQUE (event_id, applet, idx));
         CREATE INDEX IF NOT EXISTS _ws_txs_open ON {s}._ws_txs(chain_id, state);
         CREATE TABLE IF NOT EXISTS {s}._ws_calls (
             event_id BIGINT NOT NULL, applet TEXT NOT NULL, idx BIGINT NOT NULL, answer TEXT,
             PRIMARY KEY (event_id, applet, idx));"
    ))
}
