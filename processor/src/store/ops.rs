//! Group commit, whatever the engine: requests (events, registrations,
//! revocations, rejected-envelope counts, pings) arrive on one channel; the
//! engine's writer takes the first, then everything else already waiting (up
//! to a limit), applies them all in one transaction and answers each only
//! after that transaction has committed. Concurrent requests therefore share
//! one commit (one fsync), and nothing is acknowledged before it is durable.
//! A failed transaction answers every request in it with the error: none of
//! it was stored.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
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

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Op {
    Events(Vec<NewEvent>, Reply<Vec<Committed>>),
    Register(NewDevice, Reply<RegisterOutcome>),
    Revoke(String, i64, Reply<bool>),
    Rejected(String),
    /// Answered once every op queued before it has been committed or failed:
    /// the watchdog's proof that the writer makes progress.
    Ping(oneshot::Sender<()>),
}

impl Op {
    pub(super) fn weight(&self) -> usize {
        match self {
            Op::Events(e, _) => e.len().max(1),
            _ => 1,
        }
    }
}

/// A handle to the engine's writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// A writer handle and the receiving end its engine works from.
    pub(super) fn channel() -> (Writer, mpsc::Receiver<Op>) {
        let (tx, rx) = mpsc::channel(4096);
        (Writer { tx }, rx)
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

/// Counter changes for one device in one group.
#[derive(Default)]
pub(super) struct Counts {
    pub accepted: i64,
    pub duplicate: i64,
    pub rejected: i64,
    pub conflict: i64,
    pub last_seen: i64,
}

/// An answer that waits for the commit.
pub(super) enum Answer {
    Events(Reply<Vec<Committed>>, Vec<Committed>),
    Register(Reply<RegisterOutcome>, RegisterOutcome),
    Revoke(Reply<bool>, bool),
}

pub(super) type FailReply = Box<dyn FnOnce(String) + Send>;

pub(super) fn fail_reply<T: Send + 'static>(r: Reply<T>) -> FailReply {
    Box::new(move |msg| drop(r.send(Err(StoreError::Task(msg)))))
}

/// The next group: `first` and whatever is already waiting, up to `max_events`.
pub(super) fn gather(first: Op, rx: &mut mpsc::Receiver<Op>, max_events: usize) -> Vec<Op> {
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
    ops
}

/// Events in a group.
pub(super) fn events_in(ops: &[Op]) -> usize {
    ops.iter()
        .map(|o| match o {
            Op::Events(e, _) => e.len(),
            _ => 0,
        })
        .sum()
}

/// Answers a group once its transaction has ended: every request with its
/// answer, or every request with the error; pings in any case.
pub(super) fn answer(
    outcome: Result<Vec<Answer>, (String, Vec<FailReply>)>,
    pings: Vec<Op>,
    events: usize,
    started: Instant,
    metrics: &Arc<Metrics>,
) {
    match outcome {
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
                reply(e.clone());
            }
        }
    }
    for p in pings {
        if let Op::Ping(reply) = p {
            let _ = reply.send(());
        }
    }
}

/// Every answer's reply channel, to answer with an error instead.
pub(super) fn failed(answers: Vec<Answer>) -> Vec<FailReply> {
    answers
        .into_iter()
        .map(|a| match a {
            Answer::Events(r, _) => fail_reply(r),
            Answer::Register(r, _) => fail_reply(r),
            Answer::Revoke(r, _) => fail_reply(r),
        })
        .collect()
}
