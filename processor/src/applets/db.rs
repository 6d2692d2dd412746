//! A project's database: one SQLite file (or an in-memory one for the local
//! runner) holding the applets' own SQL tables and the project's key-value store
//! (`_ws_kv`). Applet SQL runs under an authorizer that refuses any table whose
//! name starts with `_ws_`, `ATTACH`, `DETACH` and `PRAGMA`, and under a time
//! limit; so an applet reaches its own project's data and nothing else.

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

    fn values(&self) -> Result<Vec<Value>, DbError> {
        self.params
            .iter()
            .map(|p| {
                let (kind, v) = p
                    .iter()
                    .next()
                    .ok_or_else(|| DbError::Request("empty parameter".into()))?;
                let bad = || DbError::Request(format!("parameter {kind}: {v}"));
                Ok(match kind.as_str() {
                    "int32" | "int64" => Value::Integer(v.as_i64().ok_or_else(bad)?),
                    "float32" | "float64" => Value::Real(v.as_f64().ok_or_else(bad)?),
                    "string" | "time" => Value::Text(v.as_str().ok_or_else(bad)?.to_string()),
                    "bool" => Value::Integer(v.as_bool().ok_or_else(bad)? as i64),
                    "bytes" => Value::Blob(
                        base64::engine::general_purpose::STANDARD
                            .decode(v.as_str().ok_or_else(bad)?)
                            .map_err(|_| bad())?,
                    ),
                    _ => return Err(bad()),
                })
            })
            .collect()
    }
}

fn internal(name: &str) -> bool {
    name.len() >= 4 && name[..4].eq_ignore_ascii_case("_ws_")
}

/// The authorizer for applet statements.
fn applet_authorizer(ctx: AuthContext<'_>) -> Authorization {
    use AuthAction::*;
    let table = match ctx.action {
        Pragma { .. } | Attach { .. } | Detach { .. } | CreateVtable { .. } | DropVtable { .. } => {
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
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "FULL")?;
                c
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _ws_kv (key BLOB PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), last_event_id INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_credits (
                 event_id INTEGER NOT NULL, applet TEXT NOT NULL, idx INTEGER NOT NULL,
                 applet_hash TEXT NOT NULL, address TEXT NOT NULL, amount TEXT NOT NULL, timestamp INTEGER NOT NULL,
                 PRIMARY KEY (event_id, applet, idx));
             CREATE INDEX IF NOT EXISTS _ws_credits_address ON _ws_credits(address);
             CREATE TABLE IF NOT EXISTS _ws_logs (
                 id INTEGER PRIMARY KEY, event_id INTEGER, applet TEXT NOT NULL, level TEXT NOT NULL,
                 message TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS _ws_failures (
                 event_id INTEGER NOT NULL, applet TEXT NOT NULL, code INTEGER, error TEXT, at INTEGER NOT NULL);",
        )?;
        Ok(ProjectDb {
            conn,
            statement_limit,
        })
    }

    /// The connection, for the processor's own bookkeeping tables.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Opens a savepoint for one applet call (a transaction when none is open).
    pub fn savepoint(&self) -> Result<(), DbError> {
        self.conn.execute_batch("SAVEPOINT applet_call")?;
        Ok(())
    }

    /// Keeps the call's writes.
    pub fn release(&self) -> Result<(), DbError> {
        self.conn.execute_batch("RELEASE applet_call")?;
        Ok(())
    }

    /// Drops the call's writes.
    pub fn rollback_call(&self) {
        let _ = self
            .conn
            .execute_batch("ROLLBACK TO applet_call; RELEASE applet_call");
    }

    /// The ledger balance of `address` (`0x…`) from this project's credits.
    pub fn balance(&self, address: &str) -> Result<u128, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT amount FROM _ws_credits WHERE address = ?1")?;
        let amounts = stmt.query_map([address.to_ascii_lowercase()], |r| r.get::<_, String>(0))?;
        let mut total = 0u128;
        for a in amounts {
            total = total.saturating_add(a?.parse().unwrap_or(0));
        }
        Ok(total)
    }

    pub fn kv_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM _ws_kv WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn kv_set(&self, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        self.conn
            .prepare_cached("INSERT INTO _ws_kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
            .execute([key, value])?;
        Ok(())
    }

    /// Runs applet SQL under the authorizer and the time limit.
    fn guarded<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
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
        self.guarded(|c| Ok(c.execute(&req.statement, params_from_iter(values))?))
    }

    /// Runs a query; returns a JSON array of row objects.
    pub fn query(&mut self, req: &SqlRequest) -> Result<Vec<u8>, DbError> {
        let values = req.values()?;
        self.guarded(|c| {
            let mut stmt = c.prepare(&req.statement)?;
            let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
            let mut rows = stmt.query(params_from_iter(values))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
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
                    obj.insert(name.clone(), v);
                }
                out.push(serde_json::Value::Object(obj));
            }
            Ok(serde_json::to_vec(&out).expect("rows serialise"))
        })
    }
}

#[cfg(test)]
mod tests {
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
    fn a_runaway_query_is_interrupted() {
        let mut db = ProjectDb::open(None, Duration::from_millis(50)).unwrap();
        let q = req(
            r#"{"statement":"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"}"#,
        );
        let err = db.query(&q).unwrap_err().to_string();
        assert!(err.contains("interrupt"), "{err}");
    }
}
