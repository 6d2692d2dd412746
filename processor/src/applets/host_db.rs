//! The project database an applet call runs against, on either engine: a
//! SQLite project file ([`ProjectDb`], the embedded store), or the project's
//! schema on PostgreSQL inside the leasing worker's transaction
//! ([`super::lease`]). Host calls and the chain's bookkeeping go through
//! [`super::tables`], the same statements on both.
//!
//! Applet SQL (`ws_get_sql_db`/`ws_set_sql_db`) runs under SQLite's
//! authorizer on a project file, and on PostgreSQL as the project's own role
//! in its own schema ([`super::pg_sql`]); after each statement the batch's
//! `search_path` is set again, so nothing the statement left on the session
//! changes what the host's statements mean.

use super::db::{DbError, ProjectDb, SqlRequest};
use super::tables;
use crate::store::sql::{PgSql, Sql};

pub enum HostDb {
    Sqlite(ProjectDb),
    Postgres { conn: PgSql, project: String },
}

impl HostDb {
    pub fn sql(&self) -> &dyn Sql {
        match self {
            HostDb::Sqlite(db) => db.conn(),
            HostDb::Postgres { conn, .. } => conn,
        }
    }

    /// The SQLite project database back (the SQLite worker lends it for a batch).
    pub fn into_sqlite(self) -> Option<ProjectDb> {
        match self {
            HostDb::Sqlite(db) => Some(db),
            HostDb::Postgres { .. } => None,
        }
    }

    pub fn kv_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(tables::kv_get(self.sql(), key)?)
    }

    pub fn kv_set(&self, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        Ok(tables::kv_set(self.sql(), key, value)?)
    }

    pub fn balance(&self, address: &str) -> Result<u128, DbError> {
        Ok(tables::balance(self.sql(), address)?)
    }

    pub fn savepoint(&self) -> Result<(), DbError> {
        Ok(tables::savepoint(self.sql())?)
    }

    pub fn release(&self) -> Result<(), DbError> {
        Ok(tables::release(self.sql())?)
    }

    pub fn rollback_call(&self) {
        tables::rollback_call(self.sql())
    }

    /// Runs an applet statement; `limit_ms` bounds it on PostgreSQL (a
    /// SQLite project file has its own deadline).
    pub fn exec(&mut self, req: &SqlRequest, limit_ms: u64) -> Result<usize, DbError> {
        match self {
            HostDb::Sqlite(db) => db.exec(req),
            HostDb::Postgres { conn, project } => {
                let out = super::pg_sql::exec(conn, project, req, limit_ms);
                host_path(conn, project)?;
                out
            }
        }
    }

    pub fn query(&mut self, req: &SqlRequest, limit_ms: u64) -> Result<Vec<u8>, DbError> {
        match self {
            HostDb::Sqlite(db) => db.query(req),
            HostDb::Postgres { conn, project } => {
                let out = super::pg_sql::query(conn, project, req, limit_ms);
                host_path(conn, project)?;
                out
            }
        }
    }

    /// Writes an applet's credit where the ledger takes it from; `position`
    /// is the applet's place in the chain, `idx` the credit's in the call.
    /// Returns false when it was already there (a re-run batch).
    pub fn credit(
        &self,
        event: (i64, i64),
        applet: (&str, &str, i64),
        idx: usize,
        address: &str,
        amount: u128,
    ) -> Result<bool, DbError> {
        let ((event_id, timestamp), (name, hash, position)) = (event, applet);
        let written = match self {
            HostDb::Sqlite(db) => {
                // Cached: prepared per credit, it was 4 % of the applet
                // worker's time (the sustained profile).
                db.conn()
                    .prepare_cached(
                        "INSERT OR IGNORE INTO _ws_credits (event_id, applet, idx, applet_hash, address, amount, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(rusqlite::params![
                        event_id,
                        name,
                        idx as i64,
                        hash,
                        address.to_ascii_lowercase(),
                        amount.to_string(),
                        timestamp
                    ])?
                    == 1
            }
            HostDb::Postgres { conn, project } => {
                let Ok(a) = crate::store::sql::Val::Text(address.to_ascii_lowercase()).address(0) else {
                    return Err(DbError::Request(format!("not an address: {address}")));
                };
                let c = wattstream_rewards::Credit {
                    event_id,
                    applet: name.into(),
                    applet_hash: hash.into(),
                    idx: idx as u32,
                    address: a,
                    amount,
                    timestamp: timestamp.max(0) as u64,
                };
                crate::rewards::queue::put(conn, project, position, &c)?
            }
        };
        if written {
            tables::add_to_balance(self.sql(), address, amount)?;
        }
        Ok(written)
    }
}

/// The `search_path` host statements run with in a batch: the project's
/// host tables, the shared tables, temporary tables last (never in front of
/// a host table).
pub fn host_path(c: &dyn Sql, project: &str) -> Result<(), crate::store::sql::SqlError> {
    c.batch(&format!(
        "SET LOCAL search_path TO {}, public, pg_temp",
        tables::pg_schema(project)
    ))
}
