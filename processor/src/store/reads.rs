//! Queries, on a small pool of read-only connections so that they never wait for
//! the writer (WAL readers see the last committed state).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use super::StoreError;

/// A registered device with its counters.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub public_key: String,
    pub owner: Option<String>,
    pub registered_at: i64,
    pub revoked_at: Option<i64>,
    pub accepted: i64,
    pub duplicate: i64,
    pub rejected: i64,
    pub last_seen: Option<i64>,
    /// Envelopes refused as `conflict` (another reading for a filled slot).
    pub conflict: i64,
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub seq: Option<i64>,
    pub timestamp: i64,
    pub sensor_reading: f64,
    /// The signed `data` object, byte for byte as the device sent it, so a
    /// client can check the signature again.
    pub data: Box<serde_json::value::RawValue>,
    pub signature: String,
    pub received_at: i64,
}

/// SQLite's read pool.
#[derive(Clone)]
pub struct SqliteReads {
    path: Arc<PathBuf>,
    pool: Arc<Mutex<Vec<Connection>>>,
}

const DEVICE_COLUMNS: &str = "device_id, public_key, owner, registered_at, revoked_at, accepted, duplicate, rejected, last_seen, conflict";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device_id: r.get(0)?,
        public_key: r.get(1)?,
        owner: r.get(2)?,
        registered_at: r.get(3)?,
        revoked_at: r.get(4)?,
        accepted: r.get(5)?,
        duplicate: r.get(6)?,
        rejected: r.get(7)?,
        last_seen: r.get(8)?,
        conflict: r.get(9)?,
    })
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let data: String = r.get(4)?;
    let sig: Vec<u8> = r.get(5)?;
    Ok(EventRow {
        id: r.get(0)?,
        seq: r.get(1)?,
        timestamp: r.get(2)?,
        sensor_reading: r.get(3)?,
        data: serde_json::value::RawValue::from_string(data).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        signature: hex::encode(sig),
        received_at: r.get(6)?,
    })
}

const EVENT_COLUMNS: &str = "id, seq, timestamp, sensor_reading, data, signature, received_at";

impl SqliteReads {
    pub(super) fn open(path: &Path, size: usize) -> Result<Self, StoreError> {
        let reads = SqliteReads {
            path: Arc::new(path.to_path_buf()),
            pool: Arc::new(Mutex::new(Vec::with_capacity(size))),
        };
        let conns = (0..size)
            .map(|_| reads.connect())
            .collect::<Result<Vec<_>, _>>()?;
        *reads.pool.lock().expect("pool lock") = conns;
        Ok(reads)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let mut conn = Connection::open_with_flags(
            self.path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        super::schema::wait_for_locks(&mut conn)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled connection, off the async runtime.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.with_blocking(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on a pooled connection, on this thread.
    pub fn with_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.lock().expect("pool lock").pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let result = f(&conn).map_err(StoreError::from);
        self.pool.lock().expect("pool lock").push(conn);
        result
    }

    /// Every registered device, revoked ones included.
    pub fn all_devices(conn: &Connection) -> rusqlite::Result<Vec<DeviceRow>> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY registered_at, device_id"
        ))?;
        stmt.query_map([], device_row)?.collect()
    }

    /// One device.
    pub fn device(conn: &Connection, id: &str) -> rusqlite::Result<Option<DeviceRow>> {
        conn.query_row(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"),
            params![id],
            device_row,
        )
        .optional()
    }

    /// The device's latest reading by timestamp.
    pub fn last_event(conn: &Connection, id: &str) -> rusqlite::Result<Option<EventRow>> {
        conn.query_row(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE device_id = ?1 ORDER BY timestamp DESC, id DESC LIMIT 1"
            ),
            params![id],
            event_row,
        )
        .optional()
    }

    /// A page of a device's events with `from <= timestamp < to`, ordered by
    /// (timestamp, id), starting after the cursor `(timestamp, id)`.
    pub fn events(
        conn: &Connection,
        id: &str,
        from: i64,
        to: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> rusqlite::Result<Vec<EventRow>> {
        let (after_ts, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE device_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
               AND (timestamp > ?4 OR (timestamp = ?4 AND id > ?5))
             ORDER BY timestamp, id LIMIT ?6"
        ))?;
        stmt.query_map(params![id, from, to, after_ts, after_id, limit as i64], event_row)?
            .collect()
    }

    /// How many events a device has stored.
    pub fn count_events(conn: &Connection, id: &str) -> rusqlite::Result<i64> {
        conn.query_row(
            "SELECT COUNT(*) FROM events WHERE device_id = ?1",
            params![id],
            |r| r.get(0),
        )
    }
}
