//! A device's power over time, downsampled in the store: fixed buckets
//! `[from + k·bucket_s, from + (k+1)·bucket_s)`, each with its readings'
//! count, minimum, maximum and mean power, and the energy they carry. A chart
//! of a week is 168 rows, not 120,960 readings. Empty buckets are absent.
//!
//! Energy is each reading's power times its window (5 s when it names none),
//! the window capped at `max_window_s`, as paid time caps it: a device that
//! claims a huge window draws no more on the chart than it is paid for.

use serde::Serialize;

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, Unix seconds.
    pub t: i64,
    pub n: i64,
    pub min_w: f64,
    pub max_w: f64,
    pub avg_w: f64,
    pub energy_wh: f64,
}

/// What a series asks for: `from <= timestamp < to`, in buckets of `bucket_s`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub from: i64,
    pub to: i64,
    pub bucket_s: i64,
    pub max_window_s: i64,
}

pub(super) fn sqlite(conn: &rusqlite::Connection, id: &str, s: Span) -> rusqlite::Result<Vec<Bucket>> {
    let mut stmt = conn.prepare_cached(
        "SELECT (timestamp - ?2) / ?4 AS b, COUNT(*), MIN(sensor_reading), MAX(sensor_reading),
                AVG(sensor_reading),
                SUM(sensor_reading * MIN(MAX(COALESCE(json_extract(data, '$.window_s'), 5), 0), ?5)) / 3600.0
         FROM events WHERE device_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
         GROUP BY b ORDER BY b",
    )?;
    stmt.query_map(
        rusqlite::params![id, s.from, s.to, s.bucket_s, s.max_window_s],
        |r| {
            Ok(Bucket {
                t: s.from + r.get::<_, i64>(0)? * s.bucket_s,
                n: r.get(1)?,
                min_w: r.get(2)?,
                max_w: r.get(3)?,
                avg_w: r.get(4)?,
                energy_wh: r.get(5)?,
            })
        },
    )?
    .collect()
}

pub(super) const PG: &str = "SELECT (timestamp - $2) / $4 AS b, COUNT(*), MIN(sensor_reading), MAX(sensor_reading),
        AVG(sensor_reading)::float8,
        (SUM(sensor_reading * LEAST(GREATEST(COALESCE((data::jsonb ->> 'window_s')::float8, 5), 0), ($5::bigint)::float8)) / 3600.0)::float8
 FROM events WHERE device_id = $1 AND timestamp >= $2 AND timestamp < $3
 GROUP BY b ORDER BY b";

pub(super) fn pg_row(r: &tokio_postgres::Row, s: Span) -> Bucket {
    Bucket {
        t: s.from + r.get::<_, i64>(0) * s.bucket_s,
        n: r.get(1),
        min_w: r.get(2),
        max_w: r.get(3),
        avg_w: r.get(4),
        energy_wh: r.get(5),
    }
}
