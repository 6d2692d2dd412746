//! One SQL surface over both engines, for code whose statements are the same on
//! SQLite and PostgreSQL (the rewards ledger, the applets' host tables, project
//! definitions): values of five kinds, rows as vectors of them, and
//! transactions that roll back when dropped. Those rules are then written once
//! and tested on both engines, instead of forked.
//!
//! Statements are written with SQLite's numbered parameters (`?1`); on
//! PostgreSQL they become `$1` and are prepared once per connection (the pool's
//! statement cache). Integers are `BIGINT` on PostgreSQL; a value is converted
//! to the column's type when the statement's parameter has a narrower one.
//!
//! PostgreSQL is reached from a blocking thread (`spawn_blocking` or an
//! offline command's thread) through the runtime's handle: the ledger's work is
//! synchronous, like SQLite's, and never runs on the async workers.

mod pg;

pub use pg::PgSql;

/// A value in or out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Self {
        Val::Blob(v.to_vec())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// Why a statement failed, or what a stored value is not.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", pg::pg_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// A stored value that is not what its column must hold: named, never
    /// read as a zero.
    #[error("stored {what} in column {col} is malformed: {value}")]
    Malformed {
        col: usize,
        what: &'static str,
        value: String,
    },
}

impl Val {
    fn malformed(&self, col: usize, what: &'static str) -> SqlError {
        SqlError::Malformed {
            col,
            what,
            value: format!("{self:?}"),
        }
    }

    /// An integer column (no NULL).
    pub fn int(&self, col: usize) -> Result<i64, SqlError> {
        match self {
            Val::Int(v) => Ok(*v),
            other => Err(other.malformed(col, "integer")),
        }
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, col: usize) -> Result<Option<i64>, SqlError> {
        match self {
            Val::Null => Ok(None),
            other => other.int(col).map(Some),
        }
    }

    /// A non-negative integer column.
    pub fn count(&self, col: usize) -> Result<u64, SqlError> {
        let v = self.int(col)?;
        u64::try_from(v).map_err(|_| self.malformed(col, "count (negative)"))
    }

    /// A text column.
    pub fn text(&self, col: usize) -> Result<&str, SqlError> {
        match self {
            Val::Text(v) => Ok(v),
            other => Err(other.malformed(col, "text")),
        }
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, col: usize) -> Result<Option<&str>, SqlError> {
        match self {
            Val::Null => Ok(None),
            other => other.text(col).map(Some),
        }
    }

    /// A blob of exactly `N` bytes.
    pub fn bytes<const N: usize>(&self, col: usize) -> Result<[u8; N], SqlError> {
        match self {
            Val::Blob(v) => v
                .as_slice()
                .try_into()
                .map_err(|_| self.malformed(col, "fixed-size blob")),
            other => Err(other.malformed(col, "blob")),
        }
    }

    /// An amount in token units, stored as decimal text (it does not fit
    /// either engine's integers).
    pub fn amount(&self, col: usize) -> Result<u128, SqlError> {
        let s = self.text(col)?;
        s.parse().map_err(|_| self.malformed(col, "amount in units"))
    }

    /// A `0x`-prefixed 20-byte address, stored as text.
    pub fn address(&self, col: usize) -> Result<[u8; 20], SqlError> {
        let s = self.text(col)?;
        let mut a = [0u8; 20];
        s.strip_prefix("0x")
            .and_then(|h| hex::decode_to_slice(h, &mut a).ok())
            .ok_or_else(|| self.malformed(col, "address"))?;
        Ok(a)
    }
}

/// Which engine a connection is on, where a statement must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A connection on either engine.
pub trait Sql {
    /// Every row `sql` returns.
    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, SqlError>;
    /// Runs one statement; the rows it changed.
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, SqlError>;
    /// Runs statements without parameters (transaction control).
    fn batch(&self, sql: &str) -> Result<(), SqlError>;
    fn engine(&self) -> Engine;

    /// The first row, if any.
    fn row(&self, sql: &str, params: &[Val]) -> Result<Option<Vec<Val>>, SqlError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

impl Sql for rusqlite::Connection {
    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, SqlError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Val::Null,
                    rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                    rusqlite::types::ValueRef::Real(v) => Val::Real(v),
                    rusqlite::types::ValueRef::Text(v) => Val::Text(String::from_utf8_lossy(v).into_owned()),
                    rusqlite::types::ValueRef::Blob(v) => Val::Blob(v.to_vec()),
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, SqlError> {
        let n = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    fn batch(&self, sql: &str) -> Result<(), SqlError> {
        Ok(self.execute_batch(sql)?)
    }

    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(v) => ValueRef::Integer(*v),
            Val::Real(v) => ValueRef::Real(*v),
            Val::Text(v) => ValueRef::Text(v.as_bytes()),
            Val::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// An open transaction; dropped without [`Tx::commit`], it rolls back.
pub struct Tx<'a> {
    conn: &'a dyn Sql,
    open: bool,
}

impl<'a> Tx<'a> {
    /// A transaction that writes. On SQLite it takes the write lock at once;
    /// on PostgreSQL it also takes the advisory lock `lock` for the rest of the
    /// transaction, so writers of the same rows (the ledger's one accruer and
    /// sealer) take turns across processes and each sees the last one's rows.
    pub fn write(conn: &'a dyn Sql, lock: i64) -> Result<Self, SqlError> {
        match conn.engine() {
            Engine::Sqlite => conn.batch("BEGIN IMMEDIATE")?,
            Engine::Postgres => {
                conn.batch("BEGIN")?;
                let tx = Tx { conn, open: true };
                tx.conn
                    .exec("SELECT pg_advisory_xact_lock(?1)", &[Val::Int(lock)])?;
                return Ok(tx);
            }
        }
        Ok(Tx { conn, open: true })
    }

    /// The transaction the caller has just begun (rolled back if dropped).
    pub fn adopt(conn: &'a dyn Sql) -> Self {
        Tx { conn, open: true }
    }

    /// A transaction that only reads, from one snapshot.
    pub fn read(conn: &'a dyn Sql) -> Result<Self, SqlError> {
        conn.batch(match conn.engine() {
            Engine::Sqlite => "BEGIN",
            Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        })?;
        Ok(Tx { conn, open: true })
    }

    pub fn commit(mut self) -> Result<(), SqlError> {
        self.open = false;
        self.conn.batch("COMMIT")
    }
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = dyn Sql + 'a;
    fn deref(&self) -> &Self::Target {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_postgres_ones() {
        assert_eq!(
            pg::numbered("SELECT a FROM t WHERE b = ?1 AND c > ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c > $12 AND d = '?'"
        );
    }

    #[test]
    fn stored_values_that_are_not_what_the_column_holds_are_errors() {
        assert_eq!(
            Val::Text(format!("0x{}", "ab".repeat(20))).address(0).unwrap(),
            [0xab; 20]
        );
        for bad in [
            Val::Text("0xnothex".into()),
            Val::Text("ab".repeat(20)),
            Val::Int(1),
        ] {
            assert!(matches!(bad.address(3), Err(SqlError::Malformed { col: 3, .. })));
        }
        assert_eq!(
            Val::Text("340282366920938463463374607431768211455".into())
                .amount(0)
                .unwrap(),
            u128::MAX
        );
        for bad in [Val::Text("-1".into()), Val::Text("lots".into()), Val::Null] {
            assert!(bad.amount(0).is_err(), "{bad:?}");
        }
        assert!(Val::Int(-1).count(0).is_err());
        assert!(Val::Blob(vec![0; 31]).bytes::<32>(0).is_err());
    }

    #[test]
    fn a_dropped_transaction_rolls_back_and_a_committed_one_stays() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.batch("CREATE TABLE t (v INTEGER)").unwrap();
        {
            let tx = Tx::write(&c, 1).unwrap();
            tx.exec("INSERT INTO t VALUES (?1)", &[Val::Int(1)]).unwrap();
        }
        let tx = Tx::write(&c, 1).unwrap();
        tx.exec("INSERT INTO t VALUES (?1)", &[Val::Int(2)]).unwrap();
        tx.commit().unwrap();
        assert_eq!(c.rows("SELECT v FROM t", &[]).unwrap(), vec![vec![Val::Int(2)]]);
    }
}
