//! The credits queue on PostgreSQL, and the order the ledger takes it in.
//!
//! With several processors, applets run events in whatever order the
//! processes lease them, and an ingest transaction holding a lower event id
//! can commit after one holding a higher id. The ledger's hash chain must not
//! depend on that: `rewards replay` runs the stream in event-id order and must
//! arrive at the same seals. So the ledger takes credits in `(event id, the
//! applet's place in the chain, index)` order, and only below a **watermark**
//! under which nothing can still arrive:
//!
//! 1. [`settled`]: every ingest transaction holds [`INGEST_LOCK`] shared;
//!    taking it exclusively for an instant waits out the ones in flight, so
//!    the largest event id then is a bound every later event exceeds (ids
//!    come from one sequence, allocated inside those transactions).
//! 2. [`take`]: below that bound, the lowest event still pending for the
//!    project (its applets have not run) caps the page; applets write an
//!    event's credits in the transaction that removes its pending row.
//!
//! Credits taken are deleted in the ledger's transaction, which holds
//! [`super::LEDGER_LOCK`]: taken once, in one order, by one process at a time.

use wattstream_rewards::Credit;

use super::stored::credit;
use crate::store::sql::{Sql, SqlError, Tx, Val};

/// Held shared by every ingest transaction (`store::pg::writer`).
pub const INGEST_LOCK: i64 = 0x5761_7474_5374_0003;

/// The largest event id that is final: every event at or below it has
/// committed or never will.
pub fn settled(c: &dyn Sql) -> Result<i64, SqlError> {
    let tx = Tx::write(c, INGEST_LOCK)?;
    let max = tx
        .row("SELECT COALESCE(MAX(id), 0) FROM events", &[])?
        .map_or(Ok(0), |r| r[0].int(0))?;
    tx.commit()?;
    Ok(max)
}

/// Takes (reads and deletes, in the caller's ledger transaction) at most
/// `limit` credits of `project` in chain order, all for events below the
/// watermark: at most `settled` and below the lowest pending event. Returns
/// them and the watermark (the lowest event id not yet final or run).
pub fn take(tx: &dyn Sql, project: &str, settled: i64, limit: i64) -> Result<(Vec<Credit>, i64), SqlError> {
    let below = tx
        .row(
            "SELECT LEAST(CAST(?2 AS BIGINT) + 1, COALESCE(MIN(event_id), CAST(?2 AS BIGINT) + 1))
             FROM applet_pending WHERE project = ?1",
            &[project.into(), Val::Int(settled)],
        )?
        .map_or(Ok(settled + 1), |r| r[0].int(0))?;
    let rows = tx.rows(
        "SELECT event_id, applet, applet_hash, idx, address, amount, timestamp, position
         FROM applet_credits WHERE project = ?1 AND event_id < ?2
         ORDER BY event_id, position, idx LIMIT ?3",
        &[project.into(), Val::Int(below), Val::Int(limit)],
    )?;
    let Some(last) = rows.last() else {
        return Ok((Vec::new(), below));
    };
    // Nothing below the watermark can be added meanwhile, so the range read
    // is exactly what is deleted.
    tx.exec(
        "DELETE FROM applet_credits
         WHERE project = ?1 AND (event_id, position, idx) <= (?2, ?3, ?4)",
        &[project.into(), last[0].clone(), last[7].clone(), last[3].clone()],
    )?;
    let credits = rows.iter().map(|r| credit(&r[..7])).collect::<Result<_, _>>()?;
    Ok((credits, below))
}

/// Adds a credit to `project`'s queue (the applet worker, in the transaction
/// that finishes the event; and tests). `position` is the applet's place in
/// the project's chain. False when it was there already.
pub fn put(tx: &dyn Sql, project: &str, position: i64, c: &Credit) -> Result<bool, SqlError> {
    let n = tx.exec(
        "INSERT INTO applet_credits (project, event_id, position, idx, applet, applet_hash, address, amount, timestamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        &[
            project.into(),
            Val::Int(c.event_id),
            Val::Int(position),
            Val::Int(c.idx as i64),
            c.applet.as_str().into(),
            c.applet_hash.as_str().into(),
            super::stored::address_text(&c.address).into(),
            c.amount.to_string().into(),
            Val::Int(c.timestamp as i64),
        ],
    )?;
    Ok(n == 1)
}
