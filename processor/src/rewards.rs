//! The processor's side of the rewards ledger (crate `wattstream-rewards`): it
//! moves the default project's applet credits into the hash-chained ledger in
//! the main store, seals each epoch that has entries once it is over (plus
//! `seal_after_s`) with the processor's own P-256 key, answers rewards queries
//! with Merkle proofs, and backs `wattstream rewards verify|replay|show`.
//!
//! The processor key is generated on first start and kept, mode 0600, in
//! `DATA_DIR/processor-key.pem`; meters pin its public key (`GET /v1/ledger/head`
//! shows it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use wattstream_rewards::{Credit, Entry, Ledger, Seal, verify_ledger};
use wattstream_sdk::proof::ProofView;
use wattstream_sdk::{DeviceId, DeviceKey, load_key, save_key};

use crate::applets::db::ProjectDb;
use crate::config::RewardsConfig;

/// The processor key's file in a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("processor-key.pem")
}

/// Loads the processor key, generating it (0600) on first start.
pub fn processor_key(data_dir: &Path) -> anyhow::Result<DeviceKey> {
    let path = key_path(data_dir);
    if path.exists() {
        return Ok(load_key(&path)?);
    }
    let key = DeviceKey::generate();
    save_key(&path, &key, false)?;
    tracing::info!(public_key = %key.public_key().to_hex(), "generated the processor key");
    Ok(key)
}

fn blob32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, "not 32 bytes".into())
    })
}

fn parse_address(s: &str) -> [u8; 20] {
    let mut a = [0u8; 20];
    let _ = hex::decode_to_slice(s.trim_start_matches("0x"), &mut a);
    a
}

/// Every stored entry (with its event timestamp) and seal, in order.
pub fn load(conn: &Connection) -> rusqlite::Result<(Vec<Entry>, Vec<u64>, Vec<Seal>)> {
    let mut stmt = conn.prepare(
        "SELECT seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp
         FROM ledger_entries ORDER BY seq",
    )?;
    let mut stamps = Vec::new();
    let entries = stmt
        .query_map([], |r| {
            Ok((
                Entry {
                    seq: r.get::<_, i64>(0)? as u64,
                    epoch: r.get::<_, i64>(1)? as u64,
                    address: parse_address(&r.get::<_, String>(2)?),
                    amount: r.get::<_, String>(3)?.parse().unwrap_or(u128::MAX),
                    event_id: r.get(4)?,
                    applet: r.get(5)?,
                    applet_hash: r.get(6)?,
                    idx: r.get::<_, i64>(7)? as u32,
                    prev: blob32(r.get(8)?)?,
                    hash: blob32(r.get(9)?)?,
                },
                r.get::<_, i64>(10)? as u64,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(e, t)| {
            stamps.push(t);
            e
        })
        .collect();
    let mut stmt =
        conn.prepare("SELECT epoch, upto_seq, head, root, signature, public_key FROM seals ORDER BY epoch")?;
    let seals = stmt
        .query_map([], |r| {
            let sig: Vec<u8> = r.get(4)?;
            Ok(Seal {
                epoch: r.get::<_, i64>(0)? as u64,
                upto_seq: r.get::<_, i64>(1)? as u64,
                head: blob32(r.get(2)?)?,
                root: blob32(r.get(3)?)?,
                signature: sig.try_into().unwrap_or([0; 64]),
                public_key: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((entries, stamps, seals))
}

/// Credits in a project database after `rowid`, oldest first, at most `limit`.
fn read_credits(db: &ProjectDb, after: i64, limit: i64) -> rusqlite::Result<Vec<(i64, Credit)>> {
    let mut stmt = db.conn().prepare_cached(
        "SELECT rowid, event_id, applet, applet_hash, idx, address, amount, timestamp FROM _ws_credits
         WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    stmt.query_map([after, limit], |r| {
        Ok((
            r.get(0)?,
            Credit {
                event_id: r.get(1)?,
                applet: r.get(2)?,
                applet_hash: r.get(3)?,
                idx: r.get::<_, i64>(4)? as u32,
                address: parse_address(&r.get::<_, String>(5)?),
                amount: r.get::<_, String>(6)?.parse().unwrap_or(0),
                timestamp: r.get::<_, i64>(7)? as u64,
            },
        ))
    })?
    .collect()
}

struct State {
    ledger: Ledger,
    stamps: Vec<u64>,
}

/// The ledger service.
pub struct Rewards {
    state: Mutex<State>,
    key: DeviceKey,
    db_path: PathBuf,
    config: RewardsConfig,
}

fn conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

impl Rewards {
    /// Loads and verifies the stored ledger; refuses to start on a tampered one.
    pub fn open(data_dir: &Path, db_path: &Path, config: RewardsConfig) -> anyhow::Result<Self> {
        let key = processor_key(data_dir)?;
        let (entries, stamps, seals) = load(&conn(db_path)?)?;
        verify_ledger(&entries, &seals, config.cap_units(), Some(key.public_key())).map_err(|t| {
            anyhow::anyhow!(
                "the stored rewards ledger does not verify ({t}); run `wattstream rewards verify`"
            )
        })?;
        Ok(Rewards {
            state: Mutex::new(State {
                ledger: Ledger::resume(config.epoch_s, config.cap_units(), entries, seals),
                stamps,
            }),
            key,
            db_path: db_path.to_path_buf(),
            config,
        })
    }

    pub fn public_key(&self) -> String {
        self.key.public_key().to_hex()
    }

    /// Moves new credits from the project database into the ledger.
    pub fn accrue(&self, project: &ProjectDb) -> anyhow::Result<usize> {
        let mut c = conn(&self.db_path)?;
        let cursor: i64 = c
            .query_row(
                "SELECT value FROM ledger_meta WHERE key = 'credits_rowid'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let rows = read_credits(project, cursor, 5000)?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(0);
        };
        let mut state = self.state.lock().expect("rewards lock");
        let before = state.ledger.entries.len();
        let tx = c.transaction()?;
        for (_, credit) in &rows {
            if let Some(e) = state.ledger.credit(credit).cloned() {
                tx.execute(
                    "INSERT INTO ledger_entries (seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        e.seq as i64,
                        e.epoch as i64,
                        format!("0x{}", hex::encode(e.address)),
                        e.amount.to_string(),
                        e.event_id,
                        e.applet,
                        e.applet_hash,
                        e.idx as i64,
                        &e.prev[..],
                        &e.hash[..],
                        credit.timestamp as i64
                    ],
                )?;
                state.stamps.push(credit.timestamp);
            }
        }
        tx.execute(
            "INSERT INTO ledger_meta (key, value) VALUES ('credits_rowid', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [last],
        )?;
        if let Err(e) = tx.commit() {
            // Keep memory and store in step: reload what the store has.
            let (entries, stamps, seals) = load(&conn(&self.db_path)?)?;
            state.ledger = Ledger::resume(self.config.epoch_s, self.config.cap_units(), entries, seals);
            state.stamps = stamps;
            return Err(e.into());
        }
        Ok(state.ledger.entries.len() - before)
    }

    /// Seals every epoch with entries that ended at least `seal_after_s` before `now`.
    pub fn seal_due(&self, now: u64) -> anyhow::Result<Vec<u64>> {
        let mut state = self.state.lock().expect("rewards lock");
        let open_from = state.ledger.last_sealed().map_or(0, |s| s + 1);
        let mut epochs: Vec<u64> = state
            .ledger
            .entries
            .iter()
            .map(|e| e.epoch)
            .filter(|e| *e >= open_from)
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        let due: Vec<u64> = epochs
            .into_iter()
            .filter(|e| (e + 1) * self.config.epoch_s + self.config.seal_after_s <= now)
            .collect();
        let c = conn(&self.db_path)?;
        for epoch in &due {
            let seal = state.ledger.seal(*epoch, &self.key).clone();
            c.execute(
                "INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    seal.epoch as i64,
                    seal.upto_seq as i64,
                    &seal.head[..],
                    &seal.root[..],
                    &seal.signature[..],
                    seal.public_key,
                    now as i64
                ],
            )?;
            tracing::info!(epoch, root = %hex::encode(seal.root), "sealed a rewards epoch");
        }
        Ok(due)
    }

    /// `GET /v1/devices/{id}/rewards`.
    pub fn answer(&self, id: &DeviceId) -> Value {
        let state = self.state.lock().expect("rewards lock");
        let l = &state.ledger;
        let balance = l.balance(&id.0);
        let newest = state.stamps.iter().copied().max().unwrap_or(0);
        let last_hour: u128 = l
            .entries
            .iter()
            .zip(&state.stamps)
            .filter(|(e, t)| e.address == id.0 && **t + 3600 > newest)
            .map(|(e, _)| e.amount)
            .sum();
        let (seal, proof) = match l.seals.last() {
            Some(seal) => {
                let proof = l.tree(seal).proof(&id.0).map(|(leaf, steps)| ProofView {
                    address: id.address(),
                    epoch_total: leaf.epoch_total.to_string(),
                    balance: leaf.balance.to_string(),
                    steps,
                });
                (Some(seal.view()), proof)
            }
            None => (None, None),
        };
        json!({
            "device_id": id.to_string(),
            "balance": balance as f64 / 1e18,
            "balance_units": balance.to_string(),
            "rate_per_h": last_hour as f64 / 1e18,
            "latest_epoch": seal,
            "proof": proof,
        })
    }

    /// `GET /v1/epochs/{n}`.
    pub fn seal_view(&self, epoch: u64) -> Option<Value> {
        let state = self.state.lock().expect("rewards lock");
        state
            .ledger
            .seals
            .iter()
            .find(|s| s.epoch == epoch)
            .map(|s| json!(s.view()))
    }

    /// `GET /v1/ledger/head`.
    pub fn head(&self) -> Value {
        let state = self.state.lock().expect("rewards lock");
        let (seq, hash) = state.ledger.head();
        json!({
            "seq": seq,
            "hash": hex::encode(hash),
            "last_sealed_epoch": state.ledger.last_sealed(),
            "epoch_s": self.config.epoch_s,
            "processor_public_key": self.public_key(),
        })
    }
}

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
    use crate::applets::projects::{Project, load_deployed, load_env};
    use crate::applets::runtime::Runtime;
    use crate::applets::worker::{load_events, run_event};

    let db_path = crate::store::db_path(data_dir);
    let c = conn(&db_path)?;
    let (entries, _, seals) = load(&c)?;
    let key = load_key(&key_path(data_dir))?;
    let runtime = Runtime::new(None)?;
    let name = &config.applets.default_project;
    let mut report = ReplayReport::default();
    let applets = load_deployed(&runtime, &c, name)?;
    for e in &entries {
        if !applets
            .iter()
            .any(|a| a.name == e.applet && a.hash == e.applet_hash)
        {
            report.problems.push(format!(
                "entry {} was made by {} version {}, which is no longer deployed",
                e.seq, e.applet, e.applet_hash
            ));
            break;
        }
    }
    let project = Project {
        name: name.clone(),
        applets,
        env: load_env(&c, name)?,
        db: Mutex::new(None),
    };
    let token = project.token();
    let start: i64 = Connection::open_with_flags(
        data_dir.join("projects").join(format!("{name}.db")),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|p| {
        p.query_row(
            "SELECT value FROM _ws_meta WHERE key = 'start_event_id'",
            [],
            |r| r.get(0),
        )
    })
    .unwrap_or(0);

    let reads = crate::store::open_reads(data_dir)?;
    let metrics = crate::metrics::Metrics::default();
    let mut db = ProjectDb::open(None, Duration::from_millis(1000))?;
    let mut ledger = Ledger::new(config.rewards.epoch_s, config.rewards.cap_units());
    let mut pending = seals.iter().peekable();
    let (mut after, mut credits_seen) = (start, 0i64);
    loop {
        let events = load_events(&reads, after)?;
        let Some(last) = events.last().map(|e| e.id) else {
            break;
        };
        for ev in &events {
            let (back, r) = run_event(&runtime, &project, db, &metrics, ev, 0, &token);
            db = back;
            r?;
            report.events += 1;
            let credits = read_credits(&db, credits_seen, i64::MAX)?;
            for (rowid, credit) in credits {
                credits_seen = rowid;
                while let Some(s) = pending.next_if(|s| s.upto_seq == ledger.head().0) {
                    ledger.seal(s.epoch, &key);
                }
                ledger.credit(&credit);
            }
        }
        after = last;
    }
    while let Some(s) = pending.next_if(|s| s.upto_seq == ledger.head().0) {
        ledger.seal(s.epoch, &key);
    }
    report.entries = ledger.entries.len();
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
