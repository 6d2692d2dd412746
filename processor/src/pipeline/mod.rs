//! The ingest pipeline, one stage per module, in the order an envelope meets them:
//!
//! 1. [`body`]: size (enforced while reading the request), nesting depth, batch
//!    split.
//! 2. [`admit`]: parse, registration, timestamp bounds, signature (fast path).
//! 3. commit: the store's group-commit writer stores each admitted event once
//!    (duplicates by device and seq, or timestamp) and answers only after the
//!    transaction is durable.
//! 4. applets: the applet worker (`applets::worker`) runs the default project's
//!    applets over each newly stored event, after the acknowledgement; the ingest
//!    path only wakes it. Running them after the commit means a duplicate never
//!    reaches an applet and a crash never loses an applet run (the worker keeps
//!    its own cursor).
//!
//! The answer keeps the request's order: one result per envelope.

pub mod admit;
pub mod body;

use std::sync::Arc;

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{Committed, StoreError, Writer};
use admit::Rejection;
use body::{Body, BodyError};

/// The verdict on one envelope (the wire type the meter parses).
pub use wattstream_sdk::wire::{EventResult as ItemResult, EventStatus};

fn rejected(r: Rejection) -> ItemResult {
    ItemResult {
        index: None,
        status: EventStatus::Rejected,
        reason: Some(r.reason.to_string()),
        detail: Some(r.detail),
        device_id: r.device_id,
        event_id: None,
    }
}

/// What a request body came to.
#[derive(Debug)]
pub enum Ingested {
    Single(ItemResult),
    Batch(Vec<ItemResult>),
}

/// Why a request as a whole failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
}

/// The ingest pipeline and what it needs.
pub struct Pipeline {
    pub registry: Arc<Registry>,
    pub writer: Writer,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Woken after a commit that stored new events (stage 3 runs on it).
    pub applets: Option<crate::applets::worker::Waker>,
    /// Told of every reading stored (the dashboard's live stream).
    pub live: Option<crate::live::Live>,
}

pub use wattstream_sdk::time::unix_now;

/// Batches at least this large are verified on every core.
const PARALLEL_MIN: usize = 16;

impl Pipeline {
    /// Stage 2 for every item, in order. A large batch is split across the
    /// cores (signature checks are nearly all of the work), so one request's
    /// latency does not wait for one core to verify a hundred signatures.
    fn admit_all(&self, items: &[&[u8]], now: u64) -> Vec<Result<crate::store::NewEvent, Rejection>> {
        let one = |item: &&[u8]| {
            admit::admit(
                item,
                now,
                self.limits.max_future_s,
                self.limits.max_age_s,
                Some(&self.registry),
            )
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if items.len() < PARALLEL_MIN || cores < 2 || !multi_thread {
            return items.iter().map(one).collect();
        }
        let chunk = items.len().div_ceil(cores);
        tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                let mut parts = items.chunks(chunk);
                let first = parts.next().unwrap_or(&[]);
                // Named, so the CPU they take shows by name in `perf` and
                // `top -H` (not in `bench`'s by-thread table: they are gone
                // by its end); a thread that cannot be started leaves its
                // chunk to this one.
                let others: Vec<_> = parts
                    .map(|c| {
                        let started = std::thread::Builder::new()
                            .name("verifier".into())
                            .spawn_scoped(s, move || c.iter().map(one).collect::<Vec<_>>());
                        (c, started.ok())
                    })
                    .collect();
                let mut out: Vec<_> = first.iter().map(one).collect();
                for (c, h) in others {
                    match h {
                        Some(h) => out.extend(h.join().expect("verifier thread")),
                        None => out.extend(c.iter().map(one)),
                    }
                }
                out
            })
        })
    }

    /// Runs a whole request body through every stage.
    pub async fn ingest(&self, bytes: &[u8]) -> Result<Ingested, IngestError> {
        self.ingest_for(bytes, None).await
    }

    /// Like [`ingest`](Self::ingest), for a body that arrived on a device's
    /// own channel (its MQTT topic): an envelope signed by any other key is
    /// rejected with `topic_mismatch`, whether or not it would pass otherwise.
    pub async fn ingest_for(
        &self,
        bytes: &[u8],
        channel_device: Option<&str>,
    ) -> Result<Ingested, IngestError> {
        let body = body::split(bytes, self.limits.max_json_depth, self.limits.max_batch)?;
        let now = unix_now();
        let items: Vec<&[u8]> = match &body {
            Body::Single(b) => vec![*b],
            Body::Batch(items) => items.iter().map(|r| r.get().as_bytes()).collect(),
        };

        // Stage 2: admit every envelope.
        let mut results: Vec<Option<ItemResult>> = Vec::with_capacity(items.len());
        let mut admitted = Vec::with_capacity(items.len());
        let mut slots = Vec::with_capacity(items.len());
        for (i, verdict) in self.admit_all(&items, now).into_iter().enumerate() {
            let verdict = match channel_device {
                Some(expected) => admit::on_channel(verdict, expected),
                None => verdict,
            };
            match verdict {
                Ok(event) => {
                    slots.push(i);
                    admitted.push(event);
                    results.push(None);
                }
                Err(r) => {
                    self.metrics.record_event("rejected", r.reason);
                    if let (true, Some(id)) = (r.counts_against_device(), &r.device_id) {
                        self.writer.count_rejected(id.clone());
                    }
                    results.push(Some(rejected(r)));
                }
            }
        }

        // Stage 4: commit.
        // What the answer (the device) and the live stream (the reading) need
        // of each event once the store has it.
        let kept: Vec<(String, u64, f64)> = admitted
            .iter()
            .map(|e| (e.device_id.clone(), e.timestamp, e.sensor_reading))
            .collect();
        let committed = self.writer.insert_events(admitted).await?;
        // Stage 3: applets run over what was stored (once per event, never on a
        // duplicate), on the applet worker, which this wakes.
        if let Some(waker) = &self.applets
            && committed.iter().any(|c| matches!(c, Committed::Accepted(_)))
        {
            waker.wake();
        }
        for ((slot, outcome), (device_id, timestamp, w)) in slots.into_iter().zip(committed).zip(kept) {
            let (status, event_id) = match outcome {
                Committed::Accepted(id) => {
                    if let Some(live) = self.live.as_ref().filter(|l| l.watched()) {
                        live.publish(crate::live::LiveEvent::Reading {
                            device_id: device_id.clone(),
                            event_id: id,
                            timestamp,
                            w,
                        });
                    }
                    (EventStatus::Accepted, Some(id))
                }
                Committed::Duplicate => (EventStatus::Duplicate, None),
                Committed::Conflict => {
                    self.metrics.record_event("rejected", "conflict");
                    results[slot] = Some(ItemResult {
                        index: None,
                        status: EventStatus::Rejected,
                        reason: Some("conflict".into()),
                        detail: Some(
                            "this device already has a different reading with this seq (or timestamp): \
                             the first one stands"
                                .into(),
                        ),
                        device_id: Some(device_id),
                        event_id: None,
                    });
                    continue;
                }
            };
            self.metrics.record_event(status.as_str(), "");
            results[slot] = Some(ItemResult {
                index: None,
                status,
                reason: None,
                detail: None,
                device_id: Some(device_id),
                event_id,
            });
        }
        let mut results: Vec<ItemResult> = results
            .into_iter()
            .map(|r| r.expect("every slot is answered"))
            .collect();
        Ok(match body {
            Body::Single(_) => Ingested::Single(results.pop().expect("one result")),
            Body::Batch(_) => {
                for (i, r) in results.iter_mut().enumerate() {
                    r.index = Some(i);
                }
                Ingested::Batch(results)
            }
        })
    }
}
