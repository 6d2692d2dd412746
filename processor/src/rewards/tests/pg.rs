//! What only PostgreSQL has to keep: several processors accruing one ledger,
//! and the chain's order fixed by event id however events and credits arrive.

use std::sync::atomic::{AtomicBool, Ordering};

use super::fixture::{Fixture, Kind, PROJECT, T0, credit};
use crate::rewards::{queue, stored};
use crate::store::sql::{PgSql, Sql, Tx, Val};

/// The event ids of the stored entries, in chain order.
fn chain_events(f: &Fixture) -> Vec<i64> {
    f.with(|c| stored::load(c).unwrap().0.iter().map(|e| e.event_id).collect())
}

#[test]
fn two_processors_accruing_at_once_make_one_chain_with_every_credit_once() {
    let f = Fixture::new(Kind::Postgres);
    let (a, b) = (f.open().unwrap(), f.open().unwrap());
    // More than two pages waiting when both start, and more coming.
    let waiting = 2 * crate::rewards::ACCRUE_PAGE / 3 + 100;
    f.add_credits(1, &[1, 2, 3], waiting, T0);
    let done = AtomicBool::new(false);
    let start = std::sync::Barrier::new(2);
    const BATCHES: i64 = 20;
    std::thread::scope(|s| {
        for r in [&a, &b] {
            let (f, done, start) = (&f, &done, &start);
            s.spawn(move || {
                start.wait();
                while !done.load(Ordering::Acquire) {
                    f.accrue(r).unwrap();
                }
            });
        }
        for batch in 0..BATCHES {
            let first = 3 * waiting + batch * 30 + 1;
            f.add_credits(first, &[1, 2, 3], 10, T0 + 5 * waiting + batch * 50);
        }
        done.store(true, Ordering::Release);
    });
    f.accrue(&a).unwrap();
    let events = chain_events(&f);
    assert_eq!(
        events.len() as i64,
        3 * waiting + BATCHES * 30,
        "every credit, once"
    );
    assert!(events.windows(2).all(|w| w[0] < w[1]), "in event order");
    assert_eq!(a.head().unwrap(), b.head().unwrap());
    assert!(f.verify().unwrap().is_ok());
}

#[test]
fn a_credit_waits_until_every_lower_event_has_run_through_the_applets() {
    let f = Fixture::new(Kind::Postgres);
    let rewards = f.open().unwrap();
    f.put(&[credit(1, 1, T0 as u64), credit(5, 1, T0 as u64 + 5)]);
    // Event 3 is still waiting for the project's applets.
    f.sql(&format!(
        "INSERT INTO applet_pending (project, event_id, device_id) VALUES ('{PROJECT}', 3, 'd')"
    ));
    assert_eq!(f.accrue(&rewards).unwrap(), 1);
    assert_eq!(chain_events(&f), [1]);
    assert_eq!(
        rewards.through_event().unwrap(),
        Some(2),
        "complete below the waiting event"
    );
    // Its applets ran: its credit and the end of its pending row commit together.
    f.with(|c| {
        c.batch("BEGIN").unwrap();
        queue::put(c, PROJECT, 0, &credit(3, 2, T0 as u64 + 3)).unwrap();
        c.exec("DELETE FROM applet_pending WHERE event_id = 3", &[])
            .unwrap();
        c.batch("COMMIT").unwrap();
    });
    assert_eq!(f.accrue(&rewards).unwrap(), 2);
    assert_eq!(chain_events(&f), [1, 3, 5]);
    assert_eq!(rewards.through_event().unwrap(), Some(5));
    assert!(f.verify().unwrap().is_ok());
}

/// The ledger's bound on final event ids waits for an ingest still in flight:
/// an event that commits late with a lower id is never passed over.
#[test]
fn an_ingest_in_flight_holds_the_watermark_until_it_commits() {
    let f = Fixture::new(Kind::Postgres);
    let pool = f.pool.as_ref().unwrap();
    let ingest = PgSql::get(pool, f.rt.handle()).unwrap();
    ingest.batch("BEGIN").unwrap();
    ingest
        .exec(
            "SELECT pg_advisory_xact_lock_shared(?1)",
            &[Val::Int(queue::INGEST_LOCK)],
        )
        .unwrap();
    let id = ingest
        .row(
            "INSERT INTO events (device_id, timestamp, dedup_key, sensor_reading, data, signature, received_at)
             VALUES ('d', 1, 1, 0, '{}', '', 0) RETURNING id",
            &[],
        )
        .unwrap()
        .unwrap()[0]
        .int(0)
        .unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| f.with(|c| queue::settled(c).unwrap()));
        queued_or_done(&f, &waiting);
        assert!(!waiting.is_finished(), "settled before the ingest committed");
        ingest.batch("COMMIT").unwrap();
        assert_eq!(waiting.join().unwrap(), id);
    });
}

/// Returns once another session waits for an advisory lock (seen in the
/// server's own lock table), or `thread` has finished.
fn queued_or_done<T>(f: &Fixture, thread: &std::thread::ScopedJoinHandle<'_, T>) {
    f.with(|c| {
        loop {
            let queued = c
                .row(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    &[],
                )
                .unwrap()
                .unwrap()[0]
                .int(0)
                .unwrap();
            if queued == 1 || thread.is_finished() {
                return;
            }
            std::thread::yield_now();
        }
    });
}

/// A seal's leaves are the balances at its head: it waits while another
/// processor's accrual holds the ledger, and seals what that one committed.
#[test]
fn a_seal_waits_for_another_processors_accrual_and_covers_what_it_wrote() {
    let f = Fixture::new(Kind::Postgres);
    let (sealer, accruer) = (f.open().unwrap(), f.open().unwrap());
    f.add_credits(1, &[1], 2, T0);
    let busy = PgSql::get(f.pool.as_ref().unwrap(), f.rt.handle()).unwrap();
    let held = Tx::write(&busy, crate::rewards::LEDGER_LOCK).unwrap();
    std::thread::scope(|s| {
        let sealing = s.spawn(|| sealer.seal_due(T0 as u64 + 3600).unwrap());
        queued_or_done(&f, &sealing);
        assert!(
            !sealing.is_finished(),
            "sealed while another processor held the ledger"
        );
        // The other processor's accrual, in the transaction holding the ledger.
        let settled = f.with(|c| queue::settled(c).unwrap());
        let page = accruer
            .accrue_in(&*held, PROJECT, settled, crate::rewards::ACCRUE_PAGE)
            .unwrap();
        assert_eq!((page.read, page.added), (2, 2));
        held.commit().unwrap();
        assert_eq!(sealing.join().unwrap().len(), 1);
    });
    let head = sealer.head().unwrap();
    let view = sealer.answer(&wattstream_sdk::DeviceId([1; 20])).unwrap();
    assert_eq!(view.latest_epoch.unwrap().upto_seq, head.seq);
    assert!(f.verify().unwrap().is_ok());
}
