//! PostgreSQL's writer: a task that applies each group (see
//! [`crate::store::ops`]) in one transaction, the group's events in one
//! batched statement. Lock order and retries: see the module docs of
//! [`super`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_postgres::Transaction;

use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::ops::{
    Answer, Committed, Counts, FailReply, NewDevice, NewEvent, Op, RegisterOutcome, Reply, Writer, answer,
    events_in, fail_reply, gather,
};
use crate::store::schema::dedup_key;

/// Times a group is tried when PostgreSQL aborts it ([`retryable`]).
const ATTEMPTS: usize = 3;

/// `work_for`: the project whose applets run each new event; the event's
/// `applet_pending` row is written with it (`applets::lease`).
pub(super) fn start(
    pool: Pool,
    max_events: usize,
    metrics: Arc<Metrics>,
    work_for: Option<String>,
) -> (Writer, tokio::task::JoinHandle<()>) {
    let (writer, rx) = Writer::channel();
    let target = Target { pool, work_for };
    (writer, tokio::spawn(run(target, rx, max_events, metrics)))
}

/// Where groups are written.
struct Target {
    pool: Pool,
    work_for: Option<String>,
}

async fn run(pool: Target, mut rx: mpsc::Receiver<Op>, max_events: usize, metrics: Arc<Metrics>) {
    while let Some(first) = rx.recv().await {
        let ops = gather(first, &mut rx, max_events);
        let started = Instant::now();
        let events = events_in(&ops);
        let (pings, ops): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| matches!(o, Op::Ping(_)));
        let outcome = apply(&pool, ops, &metrics).await;
        answer(outcome, pings, events, started, &metrics);
    }
    tracing::info!("store writer stopped");
}

/// What a group asks for, taken apart from its reply channels so that it can
/// be tried again.
#[derive(Default)]
struct Group {
    events: Vec<Vec<NewEvent>>,
    registers: Vec<NewDevice>,
    revokes: Vec<(String, i64)>,
    rejected: Vec<String>,
}

/// A request waiting for the group's outcome.
enum Pending {
    Events(Reply<Vec<Committed>>),
    Register(Reply<RegisterOutcome>),
    Revoke(Reply<bool>),
}

async fn apply(
    pool: &Target,
    ops: Vec<Op>,
    metrics: &Metrics,
) -> Result<Vec<Answer>, (String, Vec<FailReply>)> {
    let mut group = Group::default();
    let mut pending = Vec::new();
    for op in ops {
        match op {
            Op::Events(e, r) => {
                group.events.push(e);
                pending.push(Pending::Events(r));
            }
            Op::Register(d, r) => {
                group.registers.push(d);
                pending.push(Pending::Register(r));
            }
            Op::Revoke(id, at, r) => {
                group.revokes.push((id, at));
                pending.push(Pending::Revoke(r));
            }
            Op::Rejected(id) => group.rejected.push(id),
            Op::Ping(_) => {}
        }
    }
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        match try_group(pool, &group).await {
            Err(StoreError::Postgres(e)) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::warn!(error = %e, attempt, "group commit aborted by PostgreSQL; trying again");
                metrics.record_commit_retry();
            }
            other => break other,
        }
    };
    let (events, registers, revokes) = match outcome {
        Ok(o) => o,
        Err(e) => {
            let fails = pending
                .into_iter()
                .map(|p| match p {
                    Pending::Events(r) => fail_reply(r),
                    Pending::Register(r) => fail_reply(r),
                    Pending::Revoke(r) => fail_reply(r),
                })
                .collect();
            return Err((e.to_string(), fails));
        }
    };
    let (mut events, mut registers, mut revokes) =
        (events.into_iter(), registers.into_iter(), revokes.into_iter());
    let answers = pending
        .into_iter()
        .filter_map(|p| {
            Some(match p {
                Pending::Events(r) => Answer::Events(r, events.next()?),
                Pending::Register(r) => Answer::Register(r, registers.next()?),
                Pending::Revoke(r) => Answer::Revoke(r, revokes.next()?),
            })
        })
        .collect();
    Ok(answers)
}

/// A deadlock or serialization failure (nothing committed), or a lost
/// connection (the server restarted or ended the session; if the commit had
/// reached it, trying again stores nothing twice: the unique key answers
/// `duplicate`). The pool hands out a live connection next time.
fn retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let admin_shutdown = [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
    ];
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || admin_shutdown.contains(c)
        })
}

type Outcome = (Vec<Vec<Committed>>, Vec<RegisterOutcome>, Vec<bool>);

async fn try_group(target: &Target, group: &Group) -> Result<Outcome, StoreError> {
    let mut client = target.pool.get().await?;
    let tx = client.transaction().await?;
    // Shared with every other writer; the ledger takes it alone for an instant
    // to learn which event ids are final (`rewards::queue::settled`).
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&crate::rewards::queue::INGEST_LOCK],
    )
    .await?;
    let mut registered = Vec::with_capacity(group.registers.len());
    for d in &group.registers {
        registered.push(register(&tx, d).await?);
    }
    let mut revoked = Vec::with_capacity(group.revokes.len());
    for (id, at) in &group.revokes {
        let n = tx
            .execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1",
                &[id, at],
            )
            .await?;
        if n == 1 {
            notify(&tx, id).await?;
        }
        revoked.push(n == 1);
    }
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for id in &group.rejected {
        counts.entry(id.clone()).or_default().rejected += 1;
    }
    let committed = insert_events(&tx, &group.events, &mut counts, target.work_for.as_deref()).await?;
    update_counts(&tx, &counts).await?;
    tx.commit().await?;
    Ok((committed, registered, revoked))
}

/// Inserts every event of the group in one statement (the first of each
/// `(device_id, dedup_key)`, in key order) and says what became of each.
async fn insert_events(
    tx: &Transaction<'_>,
    batches: &[Vec<NewEvent>],
    counts: &mut BTreeMap<String, Counts>,
    work_for: Option<&str>,
) -> Result<Vec<Vec<Committed>>, StoreError> {
    let mut firsts: BTreeMap<(&str, i64), &NewEvent> = BTreeMap::new();
    for e in batches.iter().flatten() {
        firsts
            .entry((e.device_id.as_str(), dedup_key(e.seq, e.timestamp)))
            .or_insert(e);
    }
    if firsts.is_empty() {
        return Ok(batches.iter().map(|_| Vec::new()).collect());
    }
    let (mut ids, mut seqs, mut times, mut keys, mut readings, mut datas, mut sigs, mut received) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for ((device, key), e) in &firsts {
        ids.push(*device);
        seqs.push(e.seq.map(|s| s as i64));
        times.push(e.timestamp as i64);
        keys.push(*key);
        readings.push(e.sensor_reading);
        datas.push(e.data.as_str());
        sigs.push(&e.signature[..]);
        received.push(e.received_at);
    }
    let inserted: HashMap<(String, i64), i64> = tx
        .query(
            "INSERT INTO events (device_id, seq, timestamp, dedup_key, sensor_reading, data, signature, received_at)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::float8[], $6::text[], $7::bytea[], $8::int8[])
             ON CONFLICT (device_id, dedup_key) DO NOTHING
             RETURNING device_id, dedup_key, id",
            &[&ids, &seqs, &times, &keys, &readings, &datas, &sigs, &received],
        )
        .await?
        .into_iter()
        .map(|r| ((r.get::<_, String>(0), r.get::<_, i64>(1)), r.get::<_, i64>(2)))
        .collect();
    // Each new event waits for the project's applets, from the moment it commits.
    if let Some(project) = work_for
        && !inserted.is_empty()
    {
        let (events, devices): (Vec<i64>, Vec<&str>) =
            inserted.iter().map(|((d, _), id)| (*id, d.as_str())).unzip();
        tx.execute(
            "INSERT INTO applet_pending (project, event_id, device_id)
             SELECT $1, * FROM unnest($2::int8[], $3::text[])",
            &[&project, &events, &devices],
        )
        .await?;
    }
    // The slots already taken (before this group, or by another process): the
    // same bytes, or other ones?
    let (taken_ids, taken_keys): (Vec<&str>, Vec<i64>) = firsts
        .keys()
        .filter(|(d, k)| !inserted.contains_key(&(d.to_string(), *k)))
        .map(|(d, k)| (*d, *k))
        .unzip();
    let mut stored: HashMap<(String, i64), String> = HashMap::new();
    if !taken_ids.is_empty() {
        for r in tx
            .query(
                "SELECT e.device_id, e.dedup_key, e.data FROM events e
                 JOIN unnest($1::text[], $2::int8[]) AS t(device_id, dedup_key)
                   ON e.device_id = t.device_id AND e.dedup_key = t.dedup_key",
                &[&taken_ids, &taken_keys],
            )
            .await?
        {
            stored.insert((r.get(0), r.get(1)), r.get(2));
        }
    }
    let mut first_seen: std::collections::HashSet<(String, i64)> = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut answers = Vec::with_capacity(batch.len());
        for e in batch {
            let key = (e.device_id.clone(), dedup_key(e.seq, e.timestamp));
            let c = counts.entry(e.device_id.clone()).or_default();
            c.last_seen = c.last_seen.max(e.received_at);
            let first = first_seen.insert(key.clone());
            match inserted.get(&key) {
                Some(id) if first => {
                    c.accepted += 1;
                    answers.push(Committed::Accepted(*id));
                    continue;
                }
                _ => {}
            }
            let same = match (inserted.contains_key(&key), stored.get(&key)) {
                // Stored by this group: compare with the event that was.
                (true, _) => firsts
                    .get(&(e.device_id.as_str(), key.1))
                    .is_some_and(|f| f.data == e.data),
                (false, Some(data)) => *data == e.data,
                (false, None) => false,
            };
            if same {
                c.duplicate += 1;
                answers.push(Committed::Duplicate);
            } else {
                c.conflict += 1;
                answers.push(Committed::Conflict);
            }
        }
        out.push(answers);
    }
    Ok(out)
}

/// Adds the group's counter changes, locking the devices' rows in id order.
async fn update_counts(tx: &Transaction<'_>, counts: &BTreeMap<String, Counts>) -> Result<(), StoreError> {
    if counts.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = counts.keys().map(String::as_str).collect();
    tx.execute(
        "SELECT 1 FROM devices WHERE device_id = ANY($1) ORDER BY device_id FOR UPDATE",
        &[&ids],
    )
    .await?;
    let pick = |f: fn(&Counts) -> i64| counts.values().map(f).collect::<Vec<i64>>();
    let (a, d, r, s, c) = (
        pick(|c| c.accepted),
        pick(|c| c.duplicate),
        pick(|c| c.rejected),
        pick(|c| c.last_seen),
        pick(|c| c.conflict),
    );
    tx.execute(
        "UPDATE devices AS d SET accepted = d.accepted + u.a, duplicate = d.duplicate + u.d,
             rejected = d.rejected + u.r, conflict = d.conflict + u.c,
             last_seen = CASE WHEN u.s > 0 THEN GREATEST(COALESCE(d.last_seen, 0), u.s) ELSE d.last_seen END
         FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) AS u(id, a, d, r, s, c)
         WHERE d.device_id = u.id",
        &[&ids, &a, &d, &r, &s, &c],
    )
    .await?;
    Ok(())
}

async fn register(tx: &Transaction<'_>, d: &NewDevice) -> Result<RegisterOutcome, StoreError> {
    let created = tx
        .execute(
            "INSERT INTO devices (device_id, public_key, owner, registered_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (device_id) DO NOTHING",
            &[&d.device_id, &d.public_key, &d.owner, &d.at],
        )
        .await?;
    if created == 1 {
        notify(tx, &d.device_id).await?;
        return Ok(RegisterOutcome::Created);
    }
    let revoked: Option<i64> = tx
        .query_one(
            "SELECT revoked_at FROM devices WHERE device_id = $1 FOR UPDATE",
            &[&d.device_id],
        )
        .await?
        .get(0);
    if revoked.is_some() {
        return Ok(RegisterOutcome::Revoked);
    }
    if d.owner.is_some() {
        tx.execute(
            "UPDATE devices SET owner = $2 WHERE device_id = $1",
            &[&d.device_id, &d.owner],
        )
        .await?;
        notify(tx, &d.device_id).await?;
    }
    Ok(RegisterOutcome::AlreadyRegistered)
}

/// Tells every listening processor, at commit, that `device`'s row changed.
async fn notify(tx: &Transaction<'_>, device: &str) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&super::notify::CHANNEL, &device])
        .await?;
    Ok(())
}
