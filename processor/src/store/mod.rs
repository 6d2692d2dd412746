//! The durable store: SQLite in WAL mode in the data directory. One writer thread
//! owns the only writing connection and commits whatever requests are waiting in
//! one transaction (group commit: concurrent requests share one fsync); queries
//! use a small pool of read connections.

mod reads;
mod schema;
mod writer;

use std::path::Path;
use std::sync::Arc;

pub use reads::{DeviceRow, EventRow, Reads};
pub use schema::{dedup_key, migrate};
pub use writer::{Committed, NewDevice, NewEvent, RegisterOutcome, Writer};

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
}

/// The database file inside a data directory.
pub fn db_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("wattstream.db")
}

/// Opens only the read side of an existing store (offline tools).
pub fn open_reads(data_dir: &Path) -> Result<Reads, StoreError> {
    Reads::open(&db_path(data_dir), 2)
}

/// Opens (creating and migrating as needed) the store in `data_dir`.
pub fn open(
    data_dir: &Path,
    config: &StoreConfig,
    metrics: Arc<Metrics>,
) -> Result<(Writer, Reads, std::thread::JoinHandle<()>), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = db_path(data_dir);
    let mut conn = rusqlite::Connection::open(&path)?;
    schema::configure(&conn)?;
    schema::migrate(&mut conn)?;
    let reads = Reads::open(&path, config.read_connections)?;
    let (writer, handle) = Writer::start(conn, config.max_commit_events, metrics);
    Ok((writer, reads, handle))
}
