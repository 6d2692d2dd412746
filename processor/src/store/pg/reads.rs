//! Queries on PostgreSQL, from the pool: the same answers as SQLite's
//! [`crate::store::SqliteReads`] (a device, its events by time, the registry).

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

use crate::store::{DeviceRow, EventRow, StoreError};

/// The read side.
#[derive(Clone)]
pub struct PgReads {
    pool: Pool,
}

const DEVICE_COLUMNS: &str = "device_id, public_key, owner, registered_at, revoked_at, accepted, duplicate, rejected, last_seen, conflict";
const EVENT_COLUMNS: &str = "id, seq, timestamp, sensor_reading, data, signature, received_at";

fn device_row(r: &Row) -> DeviceRow {
    DeviceRow {
        device_id: r.get(0),
        public_key: r.get(1),
        owner: r.get(2),
        registered_at: r.get(3),
        revoked_at: r.get(4),
        accepted: r.get(5),
        duplicate: r.get(6),
        rejected: r.get(7),
        last_seen: r.get(8),
        conflict: r.get(9),
    }
}

fn event_row(r: &Row) -> Result<EventRow, StoreError> {
    let data: String = r.get(4);
    let sig: Vec<u8> = r.get(5);
    Ok(EventRow {
        id: r.get(0),
        seq: r.get(1),
        timestamp: r.get(2),
        sensor_reading: r.get(3),
        data: serde_json::value::RawValue::from_string(data)
            .map_err(|e| StoreError::Task(format!("stored event data is not JSON: {e}")))?,
        signature: hex::encode(sig),
        received_at: r.get(6),
    })
}

/// Runs `$body` (which uses the connection `$c`) on a pooled connection; when
/// that connection turns out to be gone (a restarted server), drops it from
/// the pool and runs `$body` once more on a fresh one, so a restart costs no
/// query an error. (A macro: an async closure here would make the handlers'
/// futures lose `Send`.)
macro_rules! on_live_connection {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let $c = $pool.get().await?;
        match $body {
            Err(e) if super::connection_lost(&e) => {
                drop(Object::take($c));
                let $c = $pool.get().await?;
                $body?
            }
            other => other?,
        }
    }};
}

impl PgReads {
    pub(super) fn new(pool: Pool) -> Self {
        PgReads { pool }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_live_connection!(self.pool, |c| c.query_one("SELECT 1", &[]).await);
        Ok(())
    }

    /// Every registered device, revoked ones included.
    pub async fn all_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY registered_at, device_id");
        let rows = on_live_connection!(self.pool, |c| c.query(&sql, &[]).await);
        Ok(rows.iter().map(device_row).collect())
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1");
        let row = on_live_connection!(self.pool, |c| c.query_opt(&sql, &[&id]).await);
        Ok(row.as_ref().map(device_row))
    }

    /// The device's latest reading by timestamp.
    pub async fn last_event(&self, id: &str) -> Result<Option<EventRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE device_id = $1 ORDER BY timestamp DESC, id DESC LIMIT 1"
        );
        let row = on_live_connection!(self.pool, |c| c.query_opt(&sql, &[&id]).await);
        row.as_ref().map(event_row).transpose()
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
        let (after_ts, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE device_id = $1 AND timestamp >= $2 AND timestamp < $3
               AND (timestamp, id) > ($4, $5)
             ORDER BY timestamp, id LIMIT $6"
        );
        let limit = limit as i64;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&id, &from, &to, &after_ts, &after_id, &limit];
        let rows = on_live_connection!(self.pool, |c| c.query(&sql, &params).await);
        rows.iter().map(event_row).collect()
    }

    /// A device's power in buckets (`store::series`).
    pub async fn series(
        &self,
        id: &str,
        span: crate::store::series::Span,
    ) -> Result<Vec<crate::store::series::Bucket>, StoreError> {
        use crate::store::series;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&id, &span.from, &span.to, &span.bucket_s, &span.max_window_s];
        let rows = on_live_connection!(self.pool, |c| c.query(series::PG, &params).await);
        Ok(rows.iter().map(|r| series::pg_row(r, span)).collect())
    }
}
