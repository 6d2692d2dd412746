//! The PostgreSQL engine, for users who outgrow one machine: any number of
//! processors on one database. It answers the same requests as SQLite through
//! the same handles ([`super::Writer`], [`super::Reads`]).
//!
//! What differs and why:
//! - **Group commit** is one transaction per group with one batched
//!   statement for its events (`INSERT … SELECT FROM unnest(…) ON CONFLICT DO
//!   NOTHING RETURNING`), so a group of 1,000 events is a handful of round
//!   trips, not 1,000.
//! - **Dedupe is the unique key**, never memory: two processes storing the same
//!   reading at once meet at `UNIQUE (device_id, dedup_key)`; one inserts, the
//!   other sees the row and answers `duplicate` (or `conflict`).
//! - **Lock order**: rows are inserted sorted by `(device_id, dedup_key)` and
//!   device counters are locked sorted by `device_id`, so two processes never
//!   wait on each other in a cycle; a deadlock or serialization failure that
//!   happens anyway is retried (the transaction did not commit).
//! - **Migrations** run at start under an advisory lock, so processes starting
//!   together do not race.
//! - **Registry changes** reach the other processes by `NOTIFY` ([`notify`]).

pub mod notify;
mod reads;
mod schema;
mod writer;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use reads::PgReads;

use super::{StoreError, Writer};
use crate::metrics::Metrics;

/// Whether `e` means the connection is gone (the server restarted, or ended
/// the session): nothing more can happen on it, and a fresh one may succeed.
pub(super) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.is_closed()
        || e.code().is_some_and(|c| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(c)
        })
}

/// Whether `url` is a PostgreSQL URL this store can use.
pub fn check_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Config(
            "store URL: expected postgres://USER@HOST:PORT/DB".into(),
        ));
    }
    url.parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Config(format!("store URL: {e}")))
}

/// A pool on `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`), migrated.
pub async fn connect(url: &str, size: usize) -> Result<Pool, StoreError> {
    let pool = pool(url, size)?;
    let mut client = pool.get().await?;
    schema::migrate(&mut client).await?;
    Ok(pool)
}

/// A pool on `url` as it is, not migrated (offline tools that only read). No
/// connection is made until one is asked for.
pub fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    let config = check_url(url)?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// Opens the store at `url`: the writer task and the read side. New events
/// wait for the applets of `work_for` (`applets::lease`).
pub async fn open(
    url: &str,
    config: &crate::config::StoreConfig,
    metrics: Arc<Metrics>,
    work_for: Option<String>,
) -> Result<(Writer, PgReads, tokio::task::JoinHandle<()>), StoreError> {
    let pool = connect(url, config.read_connections + 1).await?;
    let (writer, handle) = writer::start(pool.clone(), config.max_commit_events, metrics, work_for);
    Ok((writer, PgReads::new(pool), handle))
}
