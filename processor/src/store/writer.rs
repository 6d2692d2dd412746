//! The single writer. Requests arrive on a channel; the thread takes the first,
//! then everything else already waiting (up to a limit), runs them all in one
//! transaction and answers each only after that transaction has committed.
//! Concurrent requests therefore share one fsync, and nothing is acknowledged
//! before it is durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::schema::dedup_key;
use crate::metrics::Metrics;

/// A verified event ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub device_id: String,
    pub seq: Option<u64>,
    pub timestamp: u64,
    pub sensor_reading: f64,
    /// The exact signed `data` bytes.
    pub data: String,
    pub signature: [u8; 64],
    pub received_at: i64,
}

/// What became of one stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored now, with this event id.
    Accepted(i64),
    /// The store already had this reading: same device, same seq (or
    /// timestamp), same signed bytes.
    Duplicate,
    /// The store already had a *different* reading for this device and seq
    /// (or timestamp): the device signed two readings for one slot.
    Conflict,
}

/// A device to register.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: String,
    pub public_key: String,
    pub owner: Option<String>,
    pub at: i64,
}

/// What registering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    Created,
    AlreadyRegistered,
    Revoked,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Events(Vec<NewEvent>, Reply<Vec<Committed>>),
    Register(NewDevice, Reply<RegisterOutcome>),
    Revoke(String, i64, Reply<bool>),
    Rejected(String),
    /// Answered once every op queued before it has been committed or failed:
    /// the watchdog's proof that the writer makes progress.
    Ping(oneshot::Sender<()>),
}

impl Op {
    fn weight(&self) -> usize {
        match self {
            Op::Events(e, _) => e.len().max(1),
            _ => 1,
        }
    }
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        max_commit_events: usize,
        metrics: Arc<Metrics>,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, max_commit_events, metrics))
            .expect("spawn the store writer");
        (Writer { tx }, handle)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores events durably; one answer per event, in order.
    pub async fn insert_events(&self, events: Vec<NewEvent>) -> Result<Vec<Committed>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Op::Events(events, r)).await
    }

    /// Registers a device (idempotent for an active device).
    pub async fn register(&self, device: NewDevice) -> Result<RegisterOutcome, StoreError> {
        self.call(|r| Op::Register(device, r)).await
    }

    /// Revokes a device; `false` when there is no such device.
    pub async fn revoke(&self, device_id: String, at: i64) -> Result<bool, StoreError> {
        self.call(|r| Op::Revoke(device_id, at, r)).await
    }

    /// Resolves once the writer has worked through everything queued before
    /// it; `false` when the writer is gone.
    pub async fn ping(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Op::Ping(tx)).await.is_ok() && rx.await.is_ok()
    }

    /// Counts a rejected envelope against a registered device; not waited for.
    pub fn count_rejected(&self, device_id: String) {
        let _ = self.tx.try_send(Op::Rejected(device_id));
    }
}

#[derive(Default)]
struct Counts {
    accepted: i64,
    duplicate: i64,
    rejected: i64,
    conflict: i64,
    last_seen: i64,
}

enum Answer {
    Events(Reply<Vec<Committed>>, Vec<Committed>),
    Register(Reply<RegisterOutcome>, RegisterOutcome),
    Revoke(Reply<bool>, bool),
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Op>, max_events: usize, metrics: Arc<Metrics>) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        let mut weight = ops[0].weight();
        while weight < max_events {
            match rx.try_recv() {
                Ok(op) => {
                    weight += op.weight();
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let events: usize = ops
            .iter()
            .map(|o| match o {
                Op::Events(e, _) => e.len(),
                _ => 0,
            })
            .sum();
        // Pings are answered after this group, whatever its outcome.
        let (pings, ops): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| matches!(o, Op::Ping(_)));
        match apply(&mut conn, ops) {
            Ok(answers) => {
                metrics.record_commit(events, started.elapsed());
                for answer in answers {
                    match answer {
                        Answer::Events(r, v) => drop(r.send(Ok(v))),
                        Answer::Register(r, v) => drop(r.send(Ok(v))),
                        Answer::Revoke(r, v) => drop(r.send(Ok(v))),
                    }
                }
            }
            Err((e, replies)) => {
                tracing::error!(error = %e, "group commit failed; nothing in it was acknowledged");
                metrics.record_commit_failure();
                for reply in replies {
                    reply(e.to_string());
                }
            }
        }
        for p in pings {
            if let Op::Ping(reply) = p {
                let _ = reply.send(());
            }
        }
    }
    tracing::info!("store writer stopped");
}

type FailReply = Box<dyn FnOnce(String)>;

fn fail_reply<T: 'static>(r: Reply<T>) -> FailReply {
    Box::new(move |msg| drop(r.send(Err(StoreError::Task(msg)))))
}

/// Runs every op in one transaction. On failure nothing is committed, and the
/// caller gets every reply channel back to answer with the error.
#[allow(clippy::type_complexity)]
fn apply(conn: &mut Connection, ops: Vec<Op>) -> Result<Vec<Answer>, (rusqlite::Error, Vec<FailReply>)> {
    let mut answers = Vec::with_capacity(ops.len());
    let result = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
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
        tx.commit()
    })();
    match result {
        Ok(()) => Ok(answers),
        Err(e) => {
            let replies = answers
                .into_iter()
                .map(|a| match a {
                    Answer::Events(r, _) => fail_reply(r),
                    Answer::Register(r, _) => fail_reply(r),
                    Answer::Revoke(r, _) => fail_reply(r),
                })
                .collect();
            Err((e, replies))
        }
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
