//! Retention on PostgreSQL: the same rules as on SQLite (module docs of
//! [`super`]), with the store's own notion of "processed": an event no
//! project still has pending work for. Taken credits need no pass (the
//! ledger deletes them as it takes them), and ids come from a sequence that
//! never goes back, so the newest event need not be kept.
//!
//! Every processor runs the pass; one at a time does the work (a try-lock:
//! the others skip that round), in batches of [`super::BATCH`] rows, each its
//! own short transaction.

use crate::applets::lease::PgWork;
use crate::applets::projects::Projects;
use crate::applets::tables::pg_schema;
use crate::store::sql::{PgSql, Sql, Val};

use super::Removed;

/// Taken by the processor doing a retention pass.
const RETENTION_LOCK: i64 = 0x5761_7474_5374_0005;

/// One pass at `now` (Unix seconds); `None` when another processor is
/// doing it.
pub fn run_once(
    work: &PgWork,
    projects: &Projects,
    default_project: &str,
    retention_days: u64,
    epoch_s: u64,
    now: u64,
) -> anyhow::Result<Option<Removed>> {
    let c = PgSql::get(&work.pool, &work.rt)?;
    let got = c
        .row("SELECT pg_try_advisory_lock(?1)", &[Val::Int(RETENTION_LOCK)])?
        .is_some_and(|r| r[0] == Val::Int(1));
    if !got {
        return Ok(None);
    }
    let result = pass(&c, projects, default_project, retention_days, epoch_s, now);
    c.exec("SELECT pg_advisory_unlock(?1)", &[Val::Int(RETENTION_LOCK)])?;
    let mut removed = result?;
    removed.cache_files = super::remove_stale_cache(&projects.runtime_cache_dir(), projects, now)?;
    Ok(Some(removed))
}

fn pass(
    c: &dyn Sql,
    projects: &Projects,
    default_project: &str,
    retention_days: u64,
    epoch_s: u64,
    now: u64,
) -> anyhow::Result<Removed> {
    let mut removed = Removed::default();
    if retention_days == 0 {
        return Ok(removed);
    }
    let cutoff = now.saturating_sub(retention_days * 86_400) as i64;
    if let Some(sealed) = crate::rewards::last_sealed(c)? {
        let sealed_until = (sealed as i64 + 1) * epoch_s as i64;
        removed.events = batched(
            c,
            "DELETE FROM public.events WHERE id IN (
                 SELECT e.id FROM public.events e
                 WHERE e.received_at < ?1 AND e.timestamp < ?2
                   AND NOT EXISTS (SELECT 1 FROM public.applet_pending p WHERE p.event_id = e.id)
                 ORDER BY e.id LIMIT ?3)
             RETURNING id",
            &[Val::Int(cutoff), Val::Int(sealed_until)],
            Some("events_removed_upto"),
        )?;
    }
    let upto = crate::rewards::meta(c, "events_removed_upto")?.unwrap_or(0);
    let s = pg_schema(default_project);
    if projects.get(default_project).is_some() {
        removed.seen = batched(
            c,
            &format!(
                "DELETE FROM {s}._ws_seen WHERE event_id IN (
                     SELECT event_id FROM {s}._ws_seen WHERE event_id <= ?1 LIMIT ?2)
                 RETURNING event_id"
            ),
            &[Val::Int(upto)],
            None,
        )?;
        batched(
            c,
            &format!(
                "DELETE FROM {s}._ws_calls WHERE (event_id, applet, idx) IN (
                     SELECT event_id, applet, idx FROM {s}._ws_calls WHERE event_id <= ?1 LIMIT ?2)
                 RETURNING event_id"
            ),
            &[Val::Int(upto)],
            None,
        )?;
    }
    for name in projects.names() {
        let s = pg_schema(&name);
        if !schema_exists(c, &name)? {
            continue;
        }
        removed.failures += batched(
            c,
            &format!(
                "DELETE FROM {s}._ws_failures WHERE id IN (
                     SELECT id FROM {s}._ws_failures WHERE at < ?1 LIMIT ?2)
                 RETURNING id"
            ),
            &[Val::Int(cutoff)],
            None,
        )?;
        removed.txs += batched(
            c,
            &format!(
                "DELETE FROM {s}._ws_txs WHERE id IN (
                     SELECT id FROM {s}._ws_txs WHERE {} LIMIT ?2)
                 RETURNING id",
                super::TXS_DONE_BEFORE
            ),
            &[Val::Int(cutoff)],
            None,
        )?;
    }
    Ok(removed)
}

fn schema_exists(c: &dyn Sql, project: &str) -> anyhow::Result<bool> {
    Ok(c.row(
        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?1",
        &[format!("ws_project_{project}").into()],
    )?
    .is_some())
}

/// Runs `delete` (whose last parameter is the batch size, and which returns
/// the ids it removed) until a batch comes back short, each batch in its own
/// transaction; with `mark`, records the highest id removed in that
/// `ledger_meta` key in the same transaction.
fn batched(c: &dyn Sql, delete: &str, params: &[Val], mark: Option<&str>) -> anyhow::Result<u64> {
    let mut params = params.to_vec();
    params.push(Val::Int(super::BATCH));
    let mut total = 0;
    loop {
        c.batch("BEGIN")?;
        let step = (|| -> anyhow::Result<usize> {
            let ids = c.rows(delete, &params)?;
            if let (Some(key), Some(last)) = (mark, ids.iter().filter_map(|r| r[0].int(0).ok()).max()) {
                c.exec(
                    "INSERT INTO public.ledger_meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = GREATEST(public.ledger_meta.value, excluded.value)",
                    &[key.into(), Val::Int(last)],
                )?;
            }
            Ok(ids.len())
        })();
        c.batch(if step.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        let n = step?;
        total += n as u64;
        if n < super::BATCH as usize {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applets::definitions::Definitions;
    use crate::testdb;

    const NOW: u64 = 1_800_000_000;
    const DAYS: u64 = 90;
    const OLD: i64 = (NOW - DAYS * 86_400) as i64 - 1_000;
    const EPOCH_S: u64 = 3600;

    struct Store {
        rt: tokio::runtime::Runtime,
        work: PgWork,
        projects: Projects,
        _dir: tempfile::TempDir,
        _db: testdb::TestDb,
    }

    impl Store {
        fn sql(&self, sql: &str) {
            PgSql::get(&self.work.pool, self.rt.handle())
                .unwrap()
                .batch(sql)
                .unwrap();
        }

        fn count(&self, sql: &str) -> i64 {
            let c = PgSql::get(&self.work.pool, self.rt.handle()).unwrap();
            c.row(sql, &[]).unwrap().unwrap()[0].int(0).unwrap()
        }

        fn pass(&self, days: u64) -> Option<Removed> {
            run_once(&self.work, &self.projects, "default", days, EPOCH_S, NOW).unwrap()
        }
    }

    /// A default project and a seal of the epoch holding `OLD`.
    fn store() -> Store {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let db = rt.block_on(testdb::TestDb::create());
        let pool = rt.block_on(crate::store::pg::connect(&db.url, 4)).unwrap();
        let work = PgWork {
            pool,
            rt: rt.handle().clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        let projects = Projects::open_on(Definitions::Postgres(work.clone()), dir.path()).unwrap();
        let vars = [("k".to_string(), Some("v".to_string()))].into_iter().collect();
        projects.set_env("default", &vars).unwrap();
        crate::applets::lease::prepare(&work, "default").unwrap();
        let s = Store {
            rt,
            work,
            projects,
            _dir: dir,
            _db: db,
        };
        s.sql(&format!(
            "INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at)
             VALUES ({}, 0, '', '', '', '', 0)",
            OLD as u64 / EPOCH_S
        ));
        s
    }

    fn event(s: &Store, timestamp: i64, received_at: i64) {
        s.sql(&format!(
            "INSERT INTO events (device_id, timestamp, dedup_key, sensor_reading, data, signature, received_at)
             VALUES ('d', {timestamp}, (SELECT COALESCE(MAX(id), 0) + 1 FROM events), 1.0, '{{}}', '', {received_at});
             INSERT INTO \"ws_project_default\"._ws_seen (event_id, seen)
             SELECT MAX(id), '{{}}' FROM events;"
        ));
    }

    #[test]
    fn old_events_go_once_run_and_sealed_with_what_their_applets_saw() {
        let s = store();
        let unsealed = (OLD as u64 / EPOCH_S + 1) as i64 * EPOCH_S as i64;
        event(&s, OLD, OLD); // 1
        event(&s, OLD, OLD); // 2
        event(&s, unsealed, OLD); // 3: its epoch is not sealed
        event(&s, OLD, NOW as i64 - 10); // 4: received recently
        event(&s, OLD, OLD); // 5: its applets have not run
        s.sql("INSERT INTO applet_pending (project, event_id, device_id) VALUES ('default', 5, 'd')");
        s.sql(&format!(
            "INSERT INTO \"ws_project_default\"._ws_failures (event_id, applet, code, error, at)
             VALUES (1, 'a', 1, 'x', {OLD}), (2, 'a', 1, 'x', {NOW})"
        ));
        s.sql(&format!(
            "INSERT INTO \"ws_project_default\"._ws_txs
                 (event_id, applet, idx, chain_id, to_addr, value, data, state, attempts, next_at, at)
             VALUES (1, 'a', 0, 1, '0x', '0', '0x', 'reverted', 0, 0, {OLD}),
                    (1, 'a', 1, 1, '0x', '0', '0x', 'pending', 3, 0, {OLD}),
                    (2, 'a', 0, 1, '0x', '0', '0x', 'confirmed', 0, 0, {NOW})"
        ));
        assert_eq!(s.pass(0), Some(Removed::default()), "0 days keeps everything");
        let r = s.pass(DAYS).unwrap();
        assert_eq!((r.events, r.seen, r.failures, r.txs), (2, 2, 1, 1), "{r:?}");
        assert_eq!(s.count("SELECT COUNT(*) FROM events WHERE id IN (3, 4, 5)"), 3);
        assert_eq!(s.count("SELECT COUNT(*) FROM events"), 3);
        assert_eq!(
            s.count("SELECT value FROM ledger_meta WHERE key = 'events_removed_upto'"),
            2
        );
        // Its applets ran: it goes at the next pass.
        s.sql("DELETE FROM applet_pending");
        assert_eq!(s.pass(DAYS).unwrap().events, 1);
        assert_eq!(
            s.count("SELECT value FROM ledger_meta WHERE key = 'events_removed_upto'"),
            5
        );
    }

    #[test]
    fn one_processor_at_a_time_does_the_pass() {
        let s = store();
        event(&s, OLD, OLD);
        let other = PgSql::get(&s.work.pool, s.rt.handle()).unwrap();
        other
            .exec("SELECT pg_advisory_lock(?1)", &[Val::Int(RETENTION_LOCK)])
            .unwrap();
        assert_eq!(s.pass(DAYS), None, "another processor is doing it");
        assert_eq!(s.count("SELECT COUNT(*) FROM events"), 1);
        other
            .exec("SELECT pg_advisory_unlock(?1)", &[Val::Int(RETENTION_LOCK)])
            .unwrap();
        assert_eq!(s.pass(DAYS).unwrap().events, 1);
    }
}
