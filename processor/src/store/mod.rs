//! The durable store, on one of two engines:
//!
//! - **SQLite** in WAL mode in the data directory, the embedded default: one
//!   writer thread owns the only writing connection; queries use a small pool
//!   of read-only connections.
//! - **PostgreSQL** ([`pg`]) for several processors on one database.
//!
//! Both commit whatever requests are waiting in one transaction (group commit,
//! [`ops`]: concurrent requests share one commit) and answer through the same
//! handles: [`Writer`] for changes, [`Reads`] for queries.

pub mod checkpoint;
mod ops;
pub mod pg;
mod reads;
mod schema;
pub mod series;
pub mod sql;
pub mod turns;
mod writer;

use std::path::Path;
use std::sync::Arc;

pub use ops::{Committed, NewDevice, NewEvent, RegisterOutcome, Writer};
pub use reads::{DeviceRow, EventRow, SqliteReads};
pub use schema::{PAGE_SIZE, dedup_key, migrate, wait_for_locks};

use crate::config::StoreConfig;
use crate::metrics::Metrics;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store is shutting down")]
    Closed,
    #[error("a query task failed: {0}")]
    Task(String),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    #[error("{0}")]
    Config(String),
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// The read side of either engine. Typed queries, so callers do not depend on
/// the engine; [`Reads::sqlite`] is for the parts that still run on SQLite
/// only (the applet worker and replay).
#[derive(Clone)]
pub enum Reads {
    Sqlite(SqliteReads),
    Postgres(pg::PgReads),
}

impl Reads {
    /// SQLite's pool, when this is SQLite.
    pub fn sqlite(&self) -> Option<&SqliteReads> {
        match self {
            Reads::Sqlite(r) => Some(r),
            Reads::Postgres(_) => None,
        }
    }

    /// Whether the store answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Reads::Sqlite(r) => r.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await,
            Reads::Postgres(r) => r.ping().await,
        }
    }

    /// Every registered device, revoked ones included.
    pub async fn all_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        match self {
            Reads::Sqlite(r) => r.with(SqliteReads::all_devices).await,
            Reads::Postgres(r) => r.all_devices().await,
        }
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        match self {
            Reads::Sqlite(r) => {
                let id = id.to_string();
                r.with(move |c| SqliteReads::device(c, &id)).await
            }
            Reads::Postgres(r) => r.device(id).await,
        }
    }

    /// The device's latest reading by timestamp.
    pub async fn last_event(&self, id: &str) -> Result<Option<EventRow>, StoreError> {
        match self {
            Reads::Sqlite(r) => {
                let id = id.to_string();
                r.with(move |c| SqliteReads::last_event(c, &id)).await
            }
            Reads::Postgres(r) => r.last_event(id).await,
        }
    }

    /// A page of a device's events with `from <= timestamp < to`, ordered by
    /// (timestamp, id), starting after the cursor `(timestamp, id)`.
    pub async fn events(
        &self,
        id: &str,
        from: i64,
        to: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        match self {
            Reads::Sqlite(r) => {
                let id = id.to_string();
                r.with(move |c| SqliteReads::events(c, &id, from, to, after, limit))
                    .await
            }
            Reads::Postgres(r) => r.events(id, from, to, after, limit).await,
        }
    }

    /// A device's power in buckets (`series`).
    pub async fn series(&self, id: &str, span: series::Span) -> Result<Vec<series::Bucket>, StoreError> {
        match self {
            Reads::Sqlite(r) => {
                let id = id.to_string();
                r.with(move |c| series::sqlite(c, &id, span)).await
            }
            Reads::Postgres(r) => r.series(id, span).await,
        }
    }
}

/// The database file inside a data directory.
pub fn db_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("wattstream.db")
}

/// Opens only the read side of an existing store (offline tools).
pub fn open_reads(data_dir: &Path) -> Result<SqliteReads, StoreError> {
    SqliteReads::open(&db_path(data_dir), 2)
}

/// What another writer of the store in this process (the ledger, retention)
/// shares with the ingest writer: its checkpoint thread, and its turns at the
/// write lock, which lend the store's writing connection
/// ([`turns::Turn::conn`]).
#[derive(Clone)]
pub struct OtherWriters {
    pub checkpoints: checkpoint::Hooks,
    pub turns: Arc<turns::Turns>,
}

/// Opens (creating and migrating as needed) the store in `data_dir`.
#[allow(clippy::type_complexity)]
pub fn open(
    data_dir: &Path,
    config: &StoreConfig,
    metrics: Arc<Metrics>,
) -> Result<(Writer, Reads, std::thread::JoinHandle<()>, OtherWriters), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = db_path(data_dir);
    let mut conn = rusqlite::Connection::open(&path)?;
    schema::configure(&mut conn)?;
    schema::migrate(&mut conn)?;
    // Checkpoints off the writer's path ([`checkpoint`]); a restart of the
    // WAL takes a turn with the writers.
    let turns = Arc::new(turns::Turns::new(metrics.clone()));
    let checkpointer = checkpoint::Checkpointer::start(
        &path,
        "store-checkpoint",
        Some(turns.clone()),
        (config.wal_restart_mib as i64) << 20,
    )?;
    checkpointer.hook(&mut conn)?;
    // The one connection every writer's turn writes on ([`turns`]).
    turns.share(conn)?;
    let others = OtherWriters {
        checkpoints: checkpointer.hooks(),
        turns,
    };
    let reads = SqliteReads::open(&path, config.read_connections)?;
    let (writer, handle) = writer::start(
        config.max_commit_events,
        metrics,
        checkpointer,
        others.turns.clone(),
    );
    Ok((writer, Reads::Sqlite(reads), handle, others))
}
