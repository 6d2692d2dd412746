//! `wattstream rewards replay`: re-runs the stored events through the deployed
//! applets into a fresh project database and a fresh ledger, sealing where the
//! stored ledger sealed, and compares every seal. A ledger the processor
//! computed honestly replays to the same roots.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use wattstream_rewards::Ledger;
use wattstream_sdk::load_key;

use super::{conn, key_path, read_credits, stored};
use crate::applets::db::ProjectDb;
use crate::store::sql::{PgSql, Sql, Tx};

/// What `rewards replay` found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub events: usize,
    pub entries: usize,
    /// `(epoch, matches)` for every stored seal.
    pub seals: Vec<(u64, bool)>,
    pub problems: Vec<String>,
}

/// Re-runs the stored events of a data directory's SQLite store.
pub fn replay(data_dir: &Path, config: &crate::config::Config) -> anyhow::Result<ReplayReport> {
    let c = conn(&crate::store::db_path(data_dir))?;
    let key = load_key(&key_path(data_dir))?;
    // The live project database: where its stream started, and what each
    // event's applets saw when it ran.
    let name = &config.applets.default_project;
    let live = Connection::open_with_flags(
        data_dir.join("projects").join(format!("{name}.db")),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok();
    let start: i64 = live
        .as_ref()
        .and_then(|p| {
            p.query_row(
                "SELECT value FROM _ws_meta WHERE key = 'start_event_id'",
                [],
                |r| r.get(0),
            )
            .ok()
        })
        .unwrap_or(0);
    let live = live.as_ref().map(|l| l as &dyn Sql);
    replay_on(
        &c,
        Live {
            db: live,
            start,
            only_seen: false,
        },
        &key,
        config,
    )
}

/// Re-runs the stored events on PostgreSQL. The processor key (to sign the
/// replayed seals the same way) is `key`.
pub fn replay_postgres(
    pool: &deadpool_postgres::Pool,
    rt: &tokio::runtime::Handle,
    key: &wattstream_sdk::DeviceKey,
    config: &crate::config::Config,
) -> anyhow::Result<ReplayReport> {
    use crate::applets::tables::pg_schema;
    let c = PgSql::get(pool, rt)?;
    let live = PgSql::get(pool, rt)?;
    let seen = Tx::read(&live)?;
    seen.batch(&format!(
        "SET LOCAL search_path TO {}, public",
        pg_schema(&config.applets.default_project)
    ))?;
    let store = Tx::read(&c)?;
    let live = Live {
        db: Some(&*seen),
        start: 0,
        // A project's stream starts where its chain did: events before it
        // were never run, and have no record of what their applets saw.
        only_seen: true,
    };
    replay_on(&*store, live, key, config)
}

/// The live project database, as replay reads it.
struct Live<'a> {
    /// What each event's applets saw when it ran (`_ws_seen`).
    db: Option<&'a dyn Sql>,
    /// Events after this id are the project's stream.
    start: i64,
    /// Replay only events with a `_ws_seen` row.
    only_seen: bool,
}

/// Re-runs the stored events through the deployed applets (identified by module
/// hash) into a fresh project database and a fresh ledger, sealing where the
/// stored ledger sealed, and compares every seal.
fn replay_on(
    c: &dyn Sql,
    live: Live<'_>,
    key: &wattstream_sdk::DeviceKey,
    config: &crate::config::Config,
) -> anyhow::Result<ReplayReport> {
    use crate::applets::event::{Chain, run_event_sqlite};
    use crate::applets::projects::{Project, load_deployed, load_env};
    use crate::applets::runtime::Runtime;
    use crate::applets::worker::load_events_sql;

    let seals = stored::seals_after(c, None)?;
    if let Some(upto) = super::meta(c, "events_removed_upto")? {
        let mut report = ReplayReport::default();
        report.problems.push(format!(
            "events up to id {upto} were removed by retention (store.retention_days): \
             replay needs the whole stream; `rewards verify` still checks every entry and seal"
        ));
        return Ok(report);
    }
    let runtime = Runtime::new(None)?;
    let name = &config.applets.default_project;
    let mut report = ReplayReport::default();
    let applets = load_deployed(&runtime, c, name)?;
    // Every stored entry was made by an applet version still deployed (one
    // pass over the entries, none held).
    let mut gone = None;
    stored::for_each_entry(c, 0, |e, _| {
        if gone.is_none()
            && !applets
                .iter()
                .any(|a| a.name == e.applet && a.hash == e.applet_hash)
        {
            gone = Some(format!(
                "entry {} was made by {} version {}, which is no longer deployed",
                e.seq, e.applet, e.applet_hash
            ));
        }
        Ok::<_, crate::store::sql::SqlError>(())
    })?;
    report.problems.extend(gone);
    let project = Project {
        name: name.clone(),
        applets,
        env: load_env(c, name)?,
        // Replay runs on its own in-memory database, not this slot's.
        db: std::sync::Arc::new(crate::applets::slot::DbSlot::open(
            None,
            Duration::from_millis(1000),
        )?),
    };
    let start = live.start;

    let metrics = crate::metrics::Metrics::default();
    let mut db = ProjectDb::open(None, Duration::from_millis(1000))?;
    let mut ledger = Ledger::without_entries(config.rewards.epoch_s, config.rewards.cap_units());
    let mut pending = seals.iter().peekable();
    let (mut after, mut credits_seen) = (start, 0i64);
    let chain = Chain {
        runtime: &runtime,
        project: &project,
        metrics: &metrics,
        token: project.token(),
        paid: config.limits.paid_time(),
        log_level: config.applets.log_level,
        now: 0,
        replay_of: live.db,
        warm: Default::default(),
    };
    loop {
        let events = load_events_sql(c, after)?;
        let Some(last) = events.last().map(|e| e.id) else {
            break;
        };
        for ev in &events {
            if live.only_seen
                && let Some(seen) = live.db
                && crate::applets::tables::seen(seen, ev.id)?.is_none()
            {
                continue;
            }
            let (back, r) = run_event_sqlite(&chain, db, ev);
            db = back;
            r?;
            report.events += 1;
            let credits = read_credits(db.conn(), credits_seen, i64::MAX)?;
            for (rowid, credit) in credits {
                credits_seen = rowid;
                while let Some(s) = pending.next_if(|s| s.upto_seq == ledger.head().0) {
                    ledger.seal(s.epoch, key);
                }
                ledger.credit(&credit);
            }
            // The fresh project database keys credits by (event, applet,
            // index): none can come twice, so the ledger need not remember
            // them, and the database need not keep them (balanceOf reads its
            // balance rows) nor the logs. The newest credit stays: without
            // AUTOINCREMENT an emptied table would reuse rowids below the cursor.
            ledger.forget_seen();
            db.conn()
                .execute("DELETE FROM _ws_credits WHERE rowid < ?1", [credits_seen])?;
            db.conn().execute("DELETE FROM _ws_logs", [])?;
        }
        after = last;
    }
    while let Some(s) = pending.next_if(|s| s.upto_seq == ledger.head().0) {
        ledger.seal(s.epoch, key);
    }
    report.entries = ledger.entered() as usize;
    for stored in &seals {
        let ok = ledger.seals.iter().any(|r| {
            r.epoch == stored.epoch
                && r.upto_seq == stored.upto_seq
                && r.head == stored.head
                && r.root == stored.root
        });
        report.seals.push((stored.epoch, ok));
    }
    Ok(report)
}
