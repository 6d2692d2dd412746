//! A project's database: one SQLite file (or an in-memory one for the local
//! runner) holding the applets' own SQL tables and the project's key-value store
//! (`_ws_kv`), beside the worker's bookkeeping (`_ws_*`). Applet SQL runs under
//! an authorizer and limits, so that an applet reaches its own project's data
//! and cannot disturb the worker's transaction:
//! - no table whose name starts with `_ws_`, and no statement that names one
//!   (a `REFERENCES _ws_cursor` would otherwise tie the worker's updates to an
//!   applet table);
//! - no transaction control and no savepoints (the worker's batch is one
//!   transaction, each call a savepoint the host owns);
//! - no `ATTACH`, `DETACH`, `PRAGMA`, virtual tables, `dbstat`, and no writes
//!   to `sqlite_*`; foreign keys are off on project databases;
//! - a statement deadline, values of at most [`MAX_LENGTH`] bytes, queries of
//!   at most [`MAX_ROWS`] rows and [`MAX_RESULT_BYTES`] bytes of JSON.

use std::time::{Duration, Instant};

use base64::Engine as _;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::Deserialize;

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sql: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Sql(#[from] crate::store::sql::SqlError),
    #[error("bad SQL request: {0}")]
    Request(String),
}

/// `{"statement": "...", "params": [{"int64": 1}, ...]}` (DESIGN §4).
#[derive(Debug, Deserialize)]
pub struct SqlRequest {
    pub statement: String,
    #[serde(default)]
    pub params: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl SqlRequest {
    pub fn parse(bytes: &[u8]) -> Result<Self, DbError> {
        serde_json::from_slice(bytes).map_err(|e| DbError::Request(e.to_string()))
    }

    /// The parameters, typed (either engine binds or writes them from these).
    pub fn typed_params(&self) -> Result<Vec<Param>, DbError> {
        self.params
            .iter()
            .map(|p| {
                let (kind, v) = p
                    .iter()
                    .next()
                    .ok_or_else(|| DbError::Request("empty parameter".into()))?;
                let bad = || DbError::Request(format!("parameter {kind}: {v}"));
                Ok(match kind.as_str() {
                    "int32" | "int64" => Param::Int(v.as_i64().ok_or_else(bad)?),
                    "float32" | "float64" => Param::Real(v.as_f64().ok_or_else(bad)?),
                    "string" | "time" => Param::Text(v.as_str().ok_or_else(bad)?.to_string()),
                    "bool" => Param::Bool(v.as_bool().ok_or_else(bad)?),
                    "bytes" => Param::Bytes(
                        base64::engine::general_purpose::STANDARD
                            .decode(v.as_str().ok_or_else(bad)?)
                            .map_err(|_| bad())?,
                    ),
                    _ => return Err(bad()),
                })
            })
            .collect()
    }

    /// The parameters as SQLite values (a bool is 0 or 1).
    fn values(&self) -> Result<Vec<Value>, DbError> {
        Ok(self
            .typed_params()?
            .into_iter()
            .map(|p| match p {
                Param::Int(i) => Value::Integer(i),
                Param::Real(f) => Value::Real(f),
                Param::Text(t) => Value::Text(t),
                Param::Bool(b) => Value::Integer(b as i64),
                Param::Bytes(b) => Value::Blob(b),
            })
            .collect())
    }
}

/// One applet SQL parameter, by the type the request gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// Largest string or blob a project database holds (`SQLITE_LIMIT_LENGTH`).
pub const MAX_LENGTH: i32 = 2 << 20;
/// Longest applet statement (`SQLITE_LIMIT_SQL_LENGTH`).
pub const MAX_SQL_LENGTH: i32 = 100_000;
/// Most rows one applet query returns.
pub const MAX_ROWS: usize = 10_000;
/// Most bytes of JSON one applet query returns.
pub const MAX_RESULT_BYTES: usize = 1 << 20;

fn internal(name: &str) -> bool {
    name.len() >= 4 && name[..4].eq_ignore_ascii_case("_ws_")
}

/// Whether an applet statement names an internal table anywhere (in a
/// `REFERENCES` clause, a trigger body, a view), which the authorizer's
/// per-table checks do not all see.
fn names_internal(statement: &str) -> bool {
    statement.to_ascii_lowercase().contains("_ws_")
}

/// The authorizer for applet statements.
fn applet_authorizer(ctx: AuthContext<'_>) -> Authorization {
    use AuthAction::*;
    let table = match ctx.action {
        Pragma { .. }
        | Attach { .. }
        | Detach { .. }
        | CreateVtable { .. }
        | DropVtable { .. }
        | Transaction { .. }
        | Savepoint { .. } => {
            return Authorization::Deny;
        }
        // DDL writes the schema table itself (SQLite refuses direct writes to it);
        // the other sqlite_* tables (sequence, statistics) are SQLite's, not the applet's.
        Insert { table_name } | Delete { table_name } | Update { table_name, .. }
            if table_name.starts_with("sqlite_")
                && !matches!(
                    table_name,
                    "sqlite_master" | "sqlite_temp_master" | "sqlite_schema"
                ) =>
        {
            return Authorization::Deny;
        }
        Read { table_name, .. } if table_name == "dbstat" || table_name == "sqlite_dbpage" => {
            return Authorization::Deny;
        }
        CreateIndex { table_name, .. }
        | CreateTable { table_name }
        | CreateTempIndex { table_name, .. }
        | CreateTempTable { table_name }
        | CreateTempTrigger { table_name, .. }
        | CreateTrigger { table_name, .. }
        | Delete { table_name }
        | DropIndex { table_name, .. }
        | DropTable { table_name }
        | DropTempIndex { table_name, .. }
        | DropTempTable { table_name }
        | DropTempTrigger { table_name, .. }
        | DropTrigger { table_name, .. }
        | Insert { table_name }
        | Read { table_name, .. }
        | Update { table_name, .. }
        | AlterTable { table_name, .. }
        | Analyze { table_name } => table_name,
        _ => "",
    };
    if internal(table) {
        Authorization::Deny
    } else {
        Authorization::Allow
    }
}

/// Prepared statements kept per project connection (rusqlite keeps 16).
const STATEMENTS_CACHED: usize = 64;

/// A project database.
pub struct ProjectDb {
    conn: Connection,
    statement_limit: Duration,
}

impl ProjectDb {
    /// Opens (creating) the database at `path`, or an in-memory one for `None`.
    pub fn open(path: Option<&std::path::Path>, statement_limit: Duration) -> Result<Self, DbError> {
        let conn = match path {
            Some(p) => {
                let c = Connection::open(p)?;
                c.pragma_update(None, "page_size", crate::store::PAGE_SIZE)?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "FULL")?;
                // Each applet call is a savepoint, whose journal of the
                // original pages would otherwise be written to a temp file:
                // five writes per event in the sustained profile.
                c.pragma_update(None, "temp_store", "MEMORY")?;
                c
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        // The worker's statements and the host's `_ws_*` ones, all cached.
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        // Applet tables may declare REFERENCES: never enforced here, so no
        // applet row can make the worker's own writes fail.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, MAX_LENGTH)?;
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH)?;
        // `_ws_credits_address`, an index no query used (the ledger reads
        // credits by rowid, balances live in `_ws_balances`), cost a write in
        // a page of its own for every credit: dropped where an older database
        // has it.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _ws_kv (key BLOB PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), last_event_id INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_credits (
                 event_id INTEGER NOT NULL, applet TEXT NOT NULL, idx INTEGER NOT NULL,
                 applet_hash TEXT NOT NULL, address TEXT NOT NULL, amount TEXT NOT NULL, timestamp INTEGER NOT NULL,
                 PRIMARY KEY (event_id, applet, idx));
             DROP INDEX IF EXISTS _ws_credits_address;
             CREATE TABLE IF NOT EXISTS _ws_logs (
                 id INTEGER PRIMARY KEY, event_id INTEGER, applet TEXT NOT NULL, level TEXT NOT NULL,
                 message TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_paid (device_id TEXT PRIMARY KEY, last_paid INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_seen (event_id INTEGER PRIMARY KEY, seen TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_failures (
                 event_id INTEGER NOT NULL, applet TEXT NOT NULL, code INTEGER, error TEXT, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_balances (address TEXT PRIMARY KEY, amount TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS _ws_txs (
                 id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL, applet TEXT NOT NULL, idx INTEGER NOT NULL,
                 chain_id INTEGER NOT NULL, to_addr TEXT NOT NULL, value TEXT NOT NULL, data TEXT NOT NULL,
                 state TEXT NOT NULL, nonce INTEGER, hash TEXT, raw TEXT, block INTEGER,
                 attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, error TEXT, at INTEGER NOT NULL,
                 UNIQUE (event_id, applet, idx));
             CREATE INDEX IF NOT EXISTS _ws_txs_open ON _ws_txs(chain_id, state);
             CREATE TABLE IF NOT EXISTS _ws_calls (
                 event_id INTEGER NOT NULL, applet TEXT NOT NULL, idx INTEGER NOT NULL, answer TEXT,
                 PRIMARY KEY (event_id, applet, idx));",
        )?;
        let db = ProjectDb {
            conn,
            statement_limit,
        };
        db.fill_balances()?;
        Ok(db)
    }

    /// A database from before `_ws_balances` gets it from its credits, once.
    fn fill_balances(&self) -> Result<(), DbError> {
        let c = &self.conn;
        let filled = c
            .prepare("SELECT 1 FROM _ws_meta WHERE key = 'balances'")?
            .exists([])?;
        if filled {
            return Ok(());
        }
        c.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| -> Result<(), DbError> {
            let mut sums: std::collections::HashMap<String, u128> = std::collections::HashMap::new();
            let mut stmt = c.prepare("SELECT address, amount FROM _ws_credits")?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (a, n) = row?;
                let s = sums.entry(a).or_default();
                *s = s.saturating_add(n.parse().unwrap_or(0));
            }
            c.execute("DELETE FROM _ws_balances", [])?;
            for (a, n) in sums {
                c.execute(
                    "INSERT INTO _ws_balances (address, amount) VALUES (?1, ?2)",
                    rusqlite::params![a, n.to_string()],
                )?;
            }
            c.execute("INSERT INTO _ws_meta (key, value) VALUES ('balances', 1)", [])?;
            Ok(())
        })();
        c.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        result
    }

    /// Adds a credit's amount to `address`'s balance (the credit's row was
    /// just written, in the same transaction).
    pub fn add_to_balance(&self, address: &str, amount: u128) -> Result<(), DbError> {
        Ok(super::tables::add_to_balance(&self.conn, address, amount)?)
    }

    /// The last event this project's chain has run (`None`: it has no chain
    /// position yet).
    pub fn cursor(&self) -> rusqlite::Result<Option<i64>> {
        self.conn
            .prepare_cached("SELECT last_event_id FROM _ws_cursor WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()
    }

    /// The connection, for the processor's own bookkeeping tables.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Has the commits ask `cp`'s thread to checkpoint instead of doing it
    /// inline ([`crate::store::checkpoint`]).
    pub fn checkpoint_on(&mut self, cp: &crate::store::checkpoint::Checkpointer) -> rusqlite::Result<()> {
        cp.hook(&mut self.conn)
    }

    /// For tests that inject storage faults (hooks need `&mut`).
    #[cfg(test)]
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The ledger balance of `address` (`0x…`) from this project's credits.
    pub fn balance(&self, address: &str) -> Result<u128, DbError> {
        Ok(super::tables::balance(&self.conn, address)?)
    }

    pub fn kv_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(super::tables::kv_get(&self.conn, key)?)
    }

    pub fn kv_set(&self, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        Ok(super::tables::kv_set(&self.conn, key, value)?)
    }

    /// Runs applet SQL under the authorizer and the time limit.
    fn guarded<T>(
        &mut self,
        statement: &str,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if names_internal(statement) {
            return Err(DbError::Request("statements may not name _ws_ tables".into()));
        }
        let deadline = Instant::now() + self.statement_limit;
        self.conn.authorizer(Some(applet_authorizer))?;
        self.conn
            .progress_handler(1000, Some(move || Instant::now() > deadline))?;
        let result = f(&self.conn);
        self.conn.progress_handler(0, None::<fn() -> bool>)?;
        self.conn
            .authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
        result
    }

    /// Executes a statement; returns the rows changed.
    pub fn exec(&mut self, req: &SqlRequest) -> Result<usize, DbError> {
        let values = req.values()?;
        self.guarded(&req.statement, |c| {
            Ok(c.execute(&req.statement, params_from_iter(values))?)
        })
    }

    /// Runs a query; returns a JSON array of row objects.
    pub fn query(&mut self, req: &SqlRequest) -> Result<Vec<u8>, DbError> {
        let values = req.values()?;
        self.guarded(&req.statement, |c| {
            let mut stmt = c.prepare(&req.statement)?;
            let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
            let mut rows = stmt.query(params_from_iter(values))?;
            let (mut out, mut bytes) = (Vec::new(), 2usize);
            while let Some(row) = rows.next()? {
                if out.len() == MAX_ROWS {
                    return Err(DbError::Request(format!(
                        "the result has more than {MAX_ROWS} rows"
                    )));
                }
                let mut obj = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    let v = match row.get_ref(i)? {
                        ValueRef::Null => serde_json::Value::Null,
                        ValueRef::Integer(n) => n.into(),
                        ValueRef::Real(f) => {
                            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
                        }
                        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                        ValueRef::Blob(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
                    };
                    bytes += name.len() + 4 + v.to_string().len();
                    obj.insert(name.clone(), v);
                }
                if bytes > MAX_RESULT_BYTES {
                    return Err(DbError::Request(format!(
                        "the result is larger than {MAX_RESULT_BYTES} bytes"
                    )));
                }
                out.push(serde_json::Value::Object(obj));
            }
            Ok(serde_json::to_vec(&out).expect("rows serialise"))
        })
    }
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
