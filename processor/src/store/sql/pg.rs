//! The PostgreSQL side of [`super::Sql`]: a pooled connection used from a
//! blocking thread, and how [`Val`] crosses the wire (converted to the
//! statement's parameter types, read back from the column types).

use std::error::Error as StdError;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::{Engine, Sql, SqlError, Val};

/// The server's message and code, not only "db error".
pub(super) fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// A pooled PostgreSQL connection used from a blocking thread.
pub struct PgSql {
    /// Always `Some` until dropped.
    client: Option<deadpool_postgres::Object>,
    rt: tokio::runtime::Handle,
    /// Set while the session may hold what untrusted SQL left on it: such a
    /// connection is closed, not returned to the pool, if dropped before
    /// [`PgSql::clean`].
    tainted: std::cell::Cell<bool>,
}

impl Drop for PgSql {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && (self.tainted.get() || c.is_closed())
        {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

impl PgSql {
    /// Takes a connection from `pool`, waiting on `rt` (call from a blocking
    /// thread, never from an async task).
    pub fn get(pool: &deadpool_postgres::Pool, rt: &tokio::runtime::Handle) -> Result<Self, SqlError> {
        let client = rt
            .block_on(pool.get())
            .map_err(|e| SqlError::Pool(e.to_string()))?;
        Ok(PgSql {
            client: Some(client),
            rt: rt.clone(),
            tainted: std::cell::Cell::new(false),
        })
    }

    /// Drops the connection instead of returning it to the pool when the
    /// server has closed it (a restart), so the next caller gets a fresh one.
    /// (Dropping does that by itself; this says so where it matters.)
    pub fn discard_if_closed(self) {
        drop(self);
    }

    /// Marks the session as holding what untrusted SQL may have left on it.
    pub fn taint(&self) {
        self.tainted.set(true);
    }

    /// The session was reset (`RESET ALL`, temporary tables and advisory
    /// locks dropped): it may go back to the pool.
    pub fn clean(&self) {
        self.tainted.set(false);
    }

    fn client(&self) -> &deadpool_postgres::Object {
        self.client.as_ref().expect("a live connection until dropped")
    }
}

/// `?1` → `$1`: the ledger's statements are written in SQLite's spelling.
pub(super) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl Sql for PgSql {
    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, SqlError> {
        let sql = numbered(sql);
        self.rt.block_on(async {
            let stmt = self.client().prepare_cached(&sql).await?;
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            let rows = self.client().query(&stmt, &params).await?;
            let n = stmt.columns().len();
            rows.iter()
                .map(|r| (0..n).map(|i| r.try_get::<_, Val>(i)).collect())
                .collect::<Result<Vec<Vec<Val>>, _>>()
                .map_err(SqlError::from)
        })
    }

    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, SqlError> {
        let sql = numbered(sql);
        self.rt.block_on(async {
            let stmt = self.client().prepare_cached(&sql).await?;
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            Ok(self.client().execute(&stmt, &params).await?)
        })
    }

    fn batch(&self, sql: &str) -> Result<(), SqlError> {
        Ok(self.rt.block_on(self.client().batch_execute(sql))?)
    }

    fn engine(&self) -> Engine {
        Engine::Postgres
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Val {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Val::Real(v) => v.to_sql(ty, out),
            Val::Text(v) => v.as_str().to_sql(ty, out),
            Val::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Val {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Val::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Val::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Val::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Val::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Val::Blob(Vec::<u8>::from_sql(ty, raw)?),
            Type::VOID => Val::Null,
            _ if <&str as FromSql>::accepts(ty) => Val::Text(String::from_sql(ty, raw)?),
            _ => return Err(format!("a column of type {ty} has no engine-neutral value").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Val::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
