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
use wattstream_rewards::{Ledger, Seal, verify_ledger};
use wattstream_sdk::wire::{LedgerHead, ProofView, RewardsView, SealView};
use wattstream_sdk::{DeviceId, DeviceKey, load_key, save_key};

use crate::applets::db::ProjectDb;
use crate::applets::slot::DbSlot;
use crate::config::RewardsConfig;

mod replay;
mod stored;

pub use replay::{ReplayReport, replay};
pub use stored::{device_entries, load, newest_timestamp, read_credits};

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

struct State {
    ledger: Ledger,
    /// The newest event timestamp in the ledger: "the last hour" of the rate.
    newest: u64,
}

/// The ledger service.
pub struct Rewards {
    state: Mutex<State>,
    key: DeviceKey,
    db_path: PathBuf,
    config: RewardsConfig,
    /// One connection for the rewards queries (a meter polls every minute):
    /// opened once, not per request.
    reader: Mutex<Connection>,
}

pub(crate) fn conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

/// What `rewards verify` found.
pub struct Verified {
    pub entries: usize,
    pub seals: usize,
}

/// Recomputes the stored chain and every seal: seals must be signed by
/// `pinned` when given (a key the verifier got from somewhere it trusts, such
/// as a meter's config), else by the processor key stored beside the data
/// (which whoever changed the data could have replaced too). `Ok(Err(..))`
/// names the first entry or epoch that does not hold.
pub fn verify_stored(
    data_dir: &Path,
    config: &RewardsConfig,
    pinned: Option<&wattstream_sdk::PublicKey>,
) -> anyhow::Result<Result<Verified, wattstream_rewards::Tamper>> {
    let path = crate::store::db_path(data_dir);
    anyhow::ensure!(path.exists(), "no processor store at {}", path.display());
    let c = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (entries, seals) = load(&c)?;
    let stored;
    let key = match pinned {
        Some(k) => k,
        None => {
            stored = load_key(&key_path(data_dir))?;
            stored.public_key()
        }
    };
    Ok(
        verify_ledger(&entries, &seals, config.cap_units(), Some(key)).map(|()| Verified {
            entries: entries.len(),
            seals: seals.len(),
        }),
    )
}

impl Rewards {
    /// Loads and verifies the stored ledger; refuses to start on a tampered one.
    pub fn open(data_dir: &Path, db_path: &Path, config: RewardsConfig) -> anyhow::Result<Self> {
        let key = processor_key(data_dir)?;
        let state = Self::load_state(db_path, &config)?;
        verify_ledger(
            &state.ledger.entries,
            &state.ledger.seals,
            config.cap_units(),
            Some(key.public_key()),
        )
        .map_err(|t| {
            anyhow::anyhow!(
                "the stored rewards ledger does not verify ({t}); run `wattstream rewards verify`"
            )
        })?;
        Ok(Rewards {
            state: Mutex::new(state),
            key,
            db_path: db_path.to_path_buf(),
            config,
            reader: Mutex::new(conn(db_path)?),
        })
    }

    fn load_state(db_path: &Path, config: &RewardsConfig) -> anyhow::Result<State> {
        let c = conn(db_path)?;
        let (entries, seals) = load(&c)?;
        Ok(State {
            ledger: Ledger::resume(config.epoch_s, config.cap_units(), entries, seals),
            newest: newest_timestamp(&c)?,
        })
    }

    /// After a failed write, memory goes back to what the store holds, so
    /// nothing that was not committed is ever served or chained onto.
    fn resync(&self, state: &mut State) {
        match Self::load_state(&self.db_path, &self.config) {
            Ok(fresh) => *state = fresh,
            Err(e) => tracing::error!(error = %e, "cannot reload the ledger after a failed write"),
        }
    }

    pub fn public_key(&self) -> String {
        self.key.public_key().to_hex()
    }

    /// Moves every new credit from the project database into the ledger, a
    /// page of [`ACCRUE_PAGE`] at a time, each page (entries and the credits
    /// cursor) in one transaction: accrual keeps up with ingest instead of
    /// taking a fixed number of credits per tick. The project database is
    /// taken per page and released between pages, so a long backlog does not
    /// hold up the applet worker. Returns the entries added.
    pub fn accrue(&self, project: &DbSlot) -> anyhow::Result<usize> {
        let mut added = 0;
        loop {
            let (rows, n) = project.read(|db| self.accrue_page(db, ACCRUE_PAGE))??;
            added += n;
            if rows < ACCRUE_PAGE as usize {
                return Ok(added);
            }
        }
    }

    /// One page: (credits read, entries added). Fewer read than `page`
    /// means the ledger has caught up.
    fn accrue_page(&self, project: &ProjectDb, page: i64) -> anyhow::Result<(usize, usize)> {
        let mut c = conn(&self.db_path)?;
        let cursor: i64 = c
            .query_row(
                "SELECT value FROM ledger_meta WHERE key = 'credits_rowid'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let rows = read_credits(project, cursor, page)?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok((0, 0));
        };
        let mut state = self.state.lock().expect("rewards lock");
        let before = state.ledger.entries.len();
        let written = (|| -> rusqlite::Result<u64> {
            let tx = c.transaction()?;
            let mut newest = state.newest;
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
                    newest = newest.max(credit.timestamp);
                }
            }
            tx.execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('credits_rowid', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [last],
            )?;
            tx.commit()?;
            Ok(newest)
        })();
        match written {
            Ok(newest) => {
                state.newest = newest;
                Ok((rows.len(), state.ledger.entries.len() - before))
            }
            Err(e) => {
                self.resync(&mut state);
                Err(e.into())
            }
        }
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
            let stored = c.execute(
                "INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at, epoch_s, cap)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    seal.epoch as i64,
                    seal.upto_seq as i64,
                    &seal.head[..],
                    &seal.root[..],
                    &seal.signature[..],
                    seal.public_key,
                    now as i64,
                    seal.epoch_s.map(|e| e as i64),
                    seal.cap.map(|c| c.to_string())
                ],
            );
            if let Err(e) = stored {
                self.resync(&mut state);
                return Err(e.into());
            }
            tracing::info!(epoch, root = %hex::encode(seal.root), "sealed a rewards epoch");
        }
        Ok(due)
    }

    /// `GET /v1/devices/{id}/rewards`.
    pub fn answer(&self, id: &DeviceId) -> anyhow::Result<RewardsView> {
        let (balance, newest, latest_epoch, proof) = {
            let state = self.state.lock().expect("rewards lock");
            let l = &state.ledger;
            let (seal, proof) = match (l.seals.last(), l.latest_tree()) {
                (Some(seal), Some(tree)) => {
                    let proof = tree.proof(&id.0).map(|(leaf, steps)| ProofView {
                        address: id.address(),
                        epoch_total: leaf.epoch_total.to_string(),
                        balance: leaf.balance.to_string(),
                        steps,
                    });
                    (Some(seal.view()), proof)
                }
                _ => (None, None),
            };
            (l.balance(&id.0), state.newest, seal, proof)
        };
        let reader = self.reader.lock().expect("rewards reader lock");
        let last_hour: u128 = device_entries(&reader, &id.0)?
            .into_iter()
            .filter(|(_, t)| t + 3600 > newest)
            .map(|(e, _)| e.amount)
            .sum();
        Ok(RewardsView {
            device_id: id.to_string(),
            balance: balance as f64 / 1e18,
            balance_units: balance.to_string(),
            rate_per_h: last_hour as f64 / 1e18,
            latest_epoch,
            proof,
            epoch_s: self.config.epoch_s,
        })
    }

    /// `GET /v1/epochs/{n}`.
    pub fn seal_view(&self, epoch: u64) -> Option<SealView> {
        let state = self.state.lock().expect("rewards lock");
        state
            .ledger
            .seals
            .iter()
            .find(|s| s.epoch == epoch)
            .map(Seal::view)
    }

    /// `GET /v1/ledger/head`.
    pub fn head(&self) -> LedgerHead {
        let state = self.state.lock().expect("rewards lock");
        let (seq, hash) = state.ledger.head();
        LedgerHead {
            seq,
            hash: hex::encode(hash),
            last_sealed_epoch: state.ledger.last_sealed(),
            epoch_s: self.config.epoch_s,
            processor_public_key: self.public_key(),
        }
    }
}

/// Credits moved into the ledger per transaction.
const ACCRUE_PAGE: i64 = 5000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_accrual_takes_every_waiting_credit_however_many_pages() {
        let n = 2 * ACCRUE_PAGE + 1;
        let (_dir, _db, project, rewards) = setup(n);
        assert_eq!(rewards.accrue(&project).unwrap(), n as usize);
        assert_eq!(rewards.accrue(&project).unwrap(), 0, "nothing twice");
        assert_eq!(rewards.head().seq, n as u64);
    }

    /// A store, a project database with `n` credits for one device, and the service.
    fn setup(n: i64) -> (tempfile::TempDir, PathBuf, DbSlot, Rewards) {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("store.db");
        crate::store::migrate(&mut Connection::open(&db_path).unwrap()).unwrap();
        let project = DbSlot::open(None, Duration::from_millis(100)).unwrap();
        project
            .read(|db| {
                for i in 0..n {
                    db.conn()
                        .execute(
                            "INSERT INTO _ws_credits (event_id, applet, idx, applet_hash, address, amount, timestamp)
                             VALUES (?1, 'tiered', 0, 'h', ?2, '1000', ?3)",
                            params![i + 1, format!("0x{}", "ab".repeat(20)), 1_795_515_000 + i * 5],
                        )
                        .unwrap();
                }
            })
            .unwrap();
        let config = RewardsConfig {
            epoch_s: 20,
            ..RewardsConfig::default()
        };
        let rewards = Rewards::open(dir.path(), &db_path, config).unwrap();
        (dir, db_path, project, rewards)
    }

    fn fail_inserts(db: &Path, table: &str, on: bool) {
        let c = Connection::open(db).unwrap();
        let sql = if on {
            format!(
                "CREATE TRIGGER fail BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        } else {
            "DROP TRIGGER fail".to_string()
        };
        c.execute_batch(&sql).unwrap();
    }

    #[test]
    fn a_failed_accrual_leaves_nothing_behind_and_the_next_one_chains_on_the_store() {
        let (dir, db, project, rewards) = setup(3);
        fail_inserts(&db, "ledger_entries", true);
        assert!(rewards.accrue(&project).is_err());
        assert_eq!(rewards.head().seq, 0, "memory kept nothing the store refused");
        fail_inserts(&db, "ledger_entries", false);
        assert_eq!(rewards.accrue(&project).unwrap(), 3);
        assert_eq!(rewards.head().seq, 3);
        drop(rewards);
        // The next start verifies the stored chain (a gap would refuse it).
        let again = Rewards::open(
            dir.path(),
            &db,
            RewardsConfig {
                epoch_s: 20,
                ..RewardsConfig::default()
            },
        );
        assert_eq!(again.unwrap().head().seq, 3);
    }

    #[test]
    fn a_seal_that_was_not_stored_is_never_served() {
        let (_dir, db, project, rewards) = setup(2);
        rewards.accrue(&project).unwrap();
        fail_inserts(&db, "seals", true);
        let later = 1_795_515_000 + 3600;
        assert!(rewards.seal_due(later).is_err());
        assert_eq!(rewards.head().last_sealed_epoch, None);
        let id = DeviceId([0xab; 20]);
        assert!(rewards.answer(&id).unwrap().latest_epoch.is_none());
        fail_inserts(&db, "seals", false);
        assert_eq!(rewards.seal_due(later).unwrap().len(), 1);
        let view = rewards.answer(&id).unwrap();
        assert!(view.latest_epoch.is_some() && view.proof.is_some());
        assert_eq!(view.balance_units(), Some(2000));
    }
}
