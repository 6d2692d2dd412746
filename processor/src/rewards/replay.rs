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

/// What `rewards replay` found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub events: usize,
    pub entries: usize,
    /// `(epoch, matches)` for every stored seal.
    pub seals: Vec<(u64, bool)>,
    pub problems: Vec<String>,
}

/// Re-runs the stored events through the deployed applets (identified by module
/// hash) into a fresh project database and a fresh ledger, sealing where the
/// stored ledger sealed, and compares every seal.
pub fn replay(data_dir: &Path, config: &crate::config::Config) -> anyhow::Result<ReplayReport> {
    use crate::applets::event::{Chain, run_event_sqlite};
    use crate::applets::projects::{Project, load_deployed, load_env};
    use crate::applets::runtime::Runtime;
    use crate::applets::worker::load_events;

    let db_path = crate::store::db_path(data_dir);
    let c = conn(&db_path)?;
    let seals = stored::seals_after(&c, None)?;
    let key = load_key(&key_path(data_dir))?;
    if let Some(upto) = super::meta(&c, "events_removed_upto")? {
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
    let applets = load_deployed(&runtime, &c, name)?;
    // Every stored entry was made by an applet version still deployed (one
    // pass over the entries, none held).
    let mut gone = None;
    stored::for_each_entry(&c, 0, |e, _| {
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
        env: load_env(&c, name)?,
        // Replay runs on its own in-memory database, not this slot's.
        db: std::sync::Arc::new(crate::applets::slot::DbSlot::open(
            None,
            Duration::from_millis(1000),
        )?),
    };
    // The live project database: where its stream started, and what each
    // event's applets saw when it ran.
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

    let reads = crate::store::open_reads(data_dir)?;
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
        now: 0,
        replay_of: live.as_ref().map(|c| c as &dyn crate::store::sql::Sql),
    };
    loop {
        let events = load_events(&reads, after)?;
        let Some(last) = events.last().map(|e| e.id) else {
            break;
        };
        for ev in &events {
            let (back, r) = run_event_sqlite(&chain, db, ev);
            db = back;
            r?;
            report.events += 1;
            let credits = read_credits(db.conn(), credits_seen, i64::MAX)?;
            for (rowid, credit) in credits {
                credits_seen = rowid;
                while let Some(s) = pending.next_if(|s| s.upto_seq == ledger.head().0) {
                    ledger.seal(s.epoch, &key);
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
        ledger.seal(s.epoch, &key);
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
