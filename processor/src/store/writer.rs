//! SQLite's writer: one thread applies each group (see [`super::ops`]) in
//! one transaction, on the store's writing connection, which it gets with
//! its turn ([`super::turns`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::ops::{
    Answer, Committed, Counts, FailReply, NewDevice, Op, RegisterOutcome, Writer, answer, events_in, failed,
    gather,
};
use super::schema::dedup_key;
use crate::metrics::Metrics;

/// A group this slow is logged at debug level, with where its time went.
const SLOW_GROUP: std::time::Duration = std::time::Duration::from_millis(20);

/// Starts SQLite's writer thread on the connection `turns` lend.
pub(super) fn start(
    max_commit_events: usize,
    metrics: Arc<Metrics>,
    checkpointer: super::checkpoint::Checkpointer,
    turns: Arc<super::turns::Turns>,
) -> (Writer, std::thread::JoinHandle<()>) {
    let (writer, rx) = Writer::channel();
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            run(rx, max_commit_events, metrics, &turns);
            // The checkpoint thread stops with the writer.
            drop(checkpointer);
        })
        .expect("spawn the store writer");
    (writer, handle)
}

fn run(mut rx: mpsc::Receiver<Op>, max_events: usize, metrics: Arc<Metrics>, turns: &super::turns::Turns) {
    while let Some(first) = rx.blocking_recv() {
        // A turn at the write lock, after the ledger's page ahead of it if
        // any ([`super::turns`]), ended before the answers go out.
        let asked = Instant::now();
        let turn = turns.take(super::turns::TurnOf::Ingest);
        if asked.elapsed() >= SLOW_GROUP {
            tracing::debug!(
                turn_ms = asked.elapsed().as_secs_f64() * 1e3,
                "a group waited for its turn"
            );
        }
        // The group is gathered once the turn has begun, not before: what
        // arrived while the writer waited behind a ledger page joins this
        // group rather than waiting for the next page and the next group
        // (the open-loop run's slowest requests were those: two pages and
        // two groups, 25 to 35 ms at half load).
        let ops = gather(first, &mut rx, max_events);
        let events = events_in(&ops);
        // Pings are answered after this group, whatever its outcome.
        let (pings, ops): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| matches!(o, Op::Ping(_)));
        let mut conn = turn
            .conn()
            .expect("the store's turns hold its writing connection");
        let outcome = apply(&mut conn, ops).map_err(|(e, replies)| (e.to_string(), replies));
        drop(conn);
        drop(turn);
        // The commit's time counts the wait for the turn, as it did when
        // the group was gathered first.
        answer(outcome, pings, events, asked, &metrics);
    }
    tracing::info!("store writer stopped");
}

/// Runs every op in one transaction. On failure nothing is committed, and the
/// caller gets every reply channel back to answer with the error.
#[allow(clippy::type_complexity)]
fn apply(conn: &mut Connection, ops: Vec<Op>) -> Result<Vec<Answer>, (rusqlite::Error, Vec<FailReply>)> {
    let mut answers = Vec::with_capacity(ops.len());
    let started = Instant::now();
    let (mut locked, mut written) = (started, started);
    let result = (|| -> rusqlite::Result<()> {
        // IMMEDIATE: the write lock first. A deferred transaction reads
        // (the dedup lookup) before it writes, and when another connection
        // (the ledger, retention) committed in between, SQLite refuses the
        // upgrade with SQLITE_BUSY at once, busy handler or not: the whole
        // group failed with 503 (seen registering 100,000 devices in bench).
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        locked = Instant::now();
        let mut counts: HashMap<String, Counts> = HashMap::new();
        {
            let mut stored_data =
                tx.prepare_cached("SELECT data FROM events WHERE device_id = ?1 AND dedup_key = ?2")?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                 (device_id, seq, timestamp, dedup_key, sensor_reading, data, signature, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for op in ops {
                match op {
                    Op::Events(events, reply) => {
                        let mut out = Vec::with_capacity(events.len());
                        for e in &events {
                            let changed = insert.execute(params![
                                e.device_id,
                                e.seq.map(|s| s as i64),
                                e.timestamp as i64,
                                dedup_key(e.seq, e.timestamp),
                                e.sensor_reading,
                                e.data,
                                &e.signature[..],
                                e.received_at,
                            ])?;
                            let c = counts.entry(e.device_id.clone()).or_default();
                            c.last_seen = c.last_seen.max(e.received_at);
                            if changed == 1 {
                                c.accepted += 1;
                                out.push(Committed::Accepted(tx.last_insert_rowid()));
                                continue;
                            }
                            // The slot is taken: the same bytes, or other ones?
                            let stored: String = stored_data
                                .query_row(params![e.device_id, dedup_key(e.seq, e.timestamp)], |r| {
                                    r.get(0)
                                })?;
                            if stored == e.data {
                                c.duplicate += 1;
                                out.push(Committed::Duplicate);
                            } else {
                                c.conflict += 1;
                                out.push(Committed::Conflict);
                            }
                        }
                        answers.push(Answer::Events(reply, out));
                    }
                    Op::Register(d, reply) => {
                        let outcome = register(&tx, &d)?;
                        answers.push(Answer::Register(reply, outcome));
                    }
                    Op::Revoke(id, at, reply) => {
                        let n = tx.execute(
                            "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE device_id = ?1",
                            params![id, at],
                        )?;
                        answers.push(Answer::Revoke(reply, n == 1));
                    }
                    Op::Rejected(id) => counts.entry(id).or_default().rejected += 1,
                    Op::Ping(_) => {}
                }
            }
            let mut update = tx.prepare_cached(
                "UPDATE devices SET accepted = accepted + ?2, duplicate = duplicate + ?3,
                 rejected = rejected + ?4, conflict = conflict + ?6,
                 last_seen = CASE WHEN ?5 > 0 THEN MAX(COALESCE(last_seen, 0), ?5) ELSE last_seen END
                 WHERE device_id = ?1",
            )?;
            for (id, c) in &counts {
                update.execute(params![
                    id,
                    c.accepted,
                    c.duplicate,
                    c.rejected,
                    c.last_seen,
                    c.conflict
                ])?;
            }
        }
        written = Instant::now();
        tx.commit()
    })();
    // Where a slow group's time went (`RUST_LOG=wattstream_processor::store=debug`):
    // waiting for the write lock (the ledger, retention), its statements, or
    // the commit's WAL write and fsync.
    if started.elapsed() >= SLOW_GROUP {
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
        tracing::debug!(
            lock_ms = ms(started, locked),
            write_ms = ms(locked, written),
            commit_ms = ms(written, Instant::now()),
            "a slow group"
        );
    }
    match result {
        Ok(()) => Ok(answers),
        Err(e) => Err((e, failed(answers))),
    }
}

fn register(tx: &rusqlite::Transaction<'_>, d: &NewDevice) -> rusqlite::Result<RegisterOutcome> {
    let existing: Option<Option<i64>> = tx
        .query_row(
            "SELECT revoked_at FROM devices WHERE device_id = ?1",
            params![d.device_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match existing {
        None => {
            tx.execute(
                "INSERT INTO devices (device_id, public_key, owner, registered_at) VALUES (?1, ?2, ?3, ?4)",
                params![d.device_id, d.public_key, d.owner, d.at],
            )?;
            RegisterOutcome::Created
        }
        Some(Some(_)) => RegisterOutcome::Revoked,
        Some(None) => {
            if d.owner.is_some() {
                tx.execute(
                    "UPDATE devices SET owner = ?2 WHERE device_id = ?1",
                    params![d.device_id, d.owner],
                )?;
            }
            RegisterOutcome::AlreadyRegistered
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{NewDevice, NewEvent, turns::TurnOf};
    use crate::config::StoreConfig;
    use crate::metrics::Metrics;

    const DEVICE: &str = "0xfeed";

    fn reading(seq: u64) -> NewEvent {
        let timestamp = 1_795_515_000 + seq;
        NewEvent {
            device_id: DEVICE.into(),
            seq: Some(seq),
            timestamp,
            sensor_reading: 12.5,
            data: format!(r#"{{"seq":{seq},"sensor_reading":12.5,"timestamp":{timestamp}}}"#),
            signature: [7; 64],
            received_at: timestamp as i64,
        }
    }

    /// Group commits so far, and the events they held
    /// (`wattstream_commit_batch_events`' count and sum).
    fn commits(metrics: &Metrics) -> (u64, u64) {
        let text = metrics.render();
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} in /metrics")) as u64
        };
        (
            value("wattstream_commit_batch_events_count"),
            value("wattstream_commit_batch_events_sum"),
        )
    }

    /// Puts a request in the writer's queue: its future, polled once (the
    /// queue has room, so the op is sent and it waits for the answer).
    async fn queued<F: std::future::Future>(mut request: std::pin::Pin<&mut F>) {
        tokio::select! {
            biased;
            _ = &mut request => panic!("answered while another writer holds the lock"),
            () = std::future::ready(()) => {}
        }
    }

    #[tokio::test]
    async fn what_arrives_while_the_writer_waits_for_its_turn_joins_the_group_that_waits() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (writer, _reads, _thread, others) =
            super::super::open(dir.path(), &StoreConfig::default(), metrics.clone()).unwrap();
        writer
            .register(NewDevice {
                device_id: DEVICE.into(),
                public_key: "04ab".into(),
                owner: None,
                at: 1_795_515_000,
            })
            .await
            .unwrap();
        let before = commits(&metrics);

        // A ledger page holds the write lock; one request reaches the
        // writer, which takes a ticket and waits behind the page.
        let page = others.turns.take(TurnOf::Ledger);
        let first = tokio::spawn({
            let w = writer.clone();
            async move { w.insert_events(vec![reading(1)]).await }
        });
        while others.turns.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        // Two more arrive while it waits.
        let mut second = std::pin::pin!(writer.insert_events(vec![reading(2)]));
        let mut third = std::pin::pin!(writer.insert_events(vec![reading(3), reading(4)]));
        queued(second.as_mut()).await;
        queued(third.as_mut()).await;
        drop(page);

        let (first, second, third) = (
            first.await.unwrap().unwrap(),
            second.await.unwrap(),
            third.await.unwrap(),
        );
        assert_eq!(first.len() + second.len() + third.len(), 4);
        // One group once the turn came, not the first alone and then the
        // others behind the next page.
        let after = commits(&metrics);
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (1, 4),
            "(group commits, events in them) for the three requests"
        );
        assert_eq!(others.turns.waiting(), 0);
    }
}
