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
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use wattstream_rewards::{Seal, Tree, sign_seal};
use wattstream_sdk::wire::{LedgerHead, ProofView, RewardsView, SealView};
use wattstream_sdk::{DeviceId, DeviceKey, load_key, save_key};

use crate::applets::slot::DbSlot;
use crate::config::RewardsConfig;
use crate::store::sql::{Sql, Tx, Val};

mod accrual;
mod book;
mod check;
mod conns;
pub(crate) mod pace;
use accrual::THROUGH;
pub(crate) use pace::ACCRUE_PAGE;
pub mod queue;
mod replay;
pub(crate) mod stored;
pub mod views;

pub(crate) use conns::Conns;
pub(crate) use conns::{conn, writing_conn};

pub(crate) use book::{last_sealed, meta};
pub use check::Verified;
pub use replay::{ReplayReport, replay, replay_postgres};
pub use stored::{load, read_credits};

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

/// The lock every writer of the ledger takes, across processes on
/// PostgreSQL: accrual and sealing run one at a time, each on the rows the
/// previous one committed (a seal's leaves are the balances at its head).
pub(crate) const LEDGER_LOCK: i64 = 0x5761_7474_5374_0002;

/// The ledger service. Nothing about the ledger is kept in memory but the
/// newest seal's tree (one leaf per device, rebuilt from the store when a
/// newer seal appears): entries, balances, totals and seals are rows, so the
/// processor's memory does not grow with the number of events, and a second
/// reader of the same store (or a second processor on one PostgreSQL) sees
/// the same ledger.
pub struct Rewards {
    key: DeviceKey,
    config: RewardsConfig,
    conns: Conns,
    /// The newest seal and its tree, as last read from the store (or sealed).
    newest: Mutex<Option<Arc<(Seal, Tree)>>>,
    /// Held by the one query rebuilding `newest`.
    rebuilding: Mutex<()>,
    /// Credits in the next accrual page ([`pace::page_after`]).
    page: std::sync::atomic::AtomicI64,
}

/// Where accrual takes credits from.
pub enum Credits<'a> {
    /// A project database on SQLite (the embedded engine), read past the
    /// cursor `ledger_meta.credits_rowid`: one writer appends in event order.
    Project(&'a DbSlot),
    /// The PostgreSQL credits queue of the named project ([`queue`]).
    Queue(&'a str),
}

/// Recomputes the stored chain and every seal from the start (streaming: the
/// entries are never all in memory), then the balances and totals kept beside
/// them. Seals must be signed by `pinned` when given (a key the verifier got
/// from somewhere it trusts, such as a meter's config), else by the processor
/// key stored beside the data (which whoever changed the data could have
/// replaced too). `Ok(Err(..))` names the first thing that does not hold.
pub fn verify_stored(
    data_dir: &Path,
    config: &RewardsConfig,
    pinned: Option<&wattstream_sdk::PublicKey>,
) -> anyhow::Result<Result<Verified, wattstream_rewards::Tamper>> {
    let path = crate::store::db_path(data_dir);
    anyhow::ensure!(path.exists(), "no processor store at {}", path.display());
    let c = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    verify_on(&c, data_dir, config, pinned)
}

/// [`verify_stored`] on a connection to either engine; the key file (when no
/// key is pinned) is looked up in `data_dir`.
pub fn verify_on(
    c: &dyn Sql,
    data_dir: &Path,
    config: &RewardsConfig,
    pinned: Option<&wattstream_sdk::PublicKey>,
) -> anyhow::Result<Result<Verified, wattstream_rewards::Tamper>> {
    let stored;
    let key = match pinned {
        Some(k) => k,
        None => {
            stored = load_key(&key_path(data_dir))?;
            stored.public_key()
        }
    };
    anyhow::ensure!(
        book::meta(c, "book")?.is_some(),
        "this store's ledger rows have not been filled yet: start `wattstream serve` on it once"
    );
    check::verify_all(c, config.cap_units(), key)
}

/// On PostgreSQL every processor may seal, so all must hold one key (meters
/// pin it): the first to start records its public key, the others must
/// match it.
fn same_key_as_the_others(c: &dyn Sql, key: &DeviceKey) -> anyhow::Result<()> {
    let mine = key.public_key().to_hex();
    c.exec(
        "INSERT INTO ledger_key (id, public_key) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
        &[mine.as_str().into()],
    )?;
    let theirs = c
        .row("SELECT public_key FROM ledger_key WHERE id = 1", &[])?
        .map(|r| r[0].text(0).map(str::to_string))
        .transpose()?
        .unwrap_or_default();
    anyhow::ensure!(
        theirs == mine,
        "this store's ledger is sealed with processor key {theirs}, not this processor's ({mine}): \
         copy processor-key.pem from a processor already on this store into the data directory"
    );
    Ok(())
}

/// A device's entries (with their events' timestamps), oldest first.
pub fn device_entries(
    c: &dyn Sql,
    id: &DeviceId,
) -> Result<Vec<(wattstream_rewards::Entry, u64)>, crate::store::sql::SqlError> {
    stored::device_entries(c, &id.0)
}

impl Rewards {
    /// Checks what was written since the last checkpoint (filling the derived
    /// rows on the first start after an upgrade); refuses to start on a
    /// ledger that does not hold.
    pub fn open(
        data_dir: &Path,
        db_path: &Path,
        config: RewardsConfig,
        store: Option<&crate::store::OtherWriters>,
    ) -> anyhow::Result<Self> {
        Self::start(data_dir, Conns::sqlite(db_path, store)?, config)
    }

    /// The ledger on PostgreSQL (call from a blocking thread: the checks run
    /// on `rt`). Every processor on one database must hold the same processor
    /// key: each may seal, and the start check refuses seals by another key.
    pub fn open_postgres(
        data_dir: &Path,
        pool: deadpool_postgres::Pool,
        rt: tokio::runtime::Handle,
        config: RewardsConfig,
    ) -> anyhow::Result<Self> {
        Self::start(data_dir, Conns::postgres(pool, rt), config)
    }

    fn start(data_dir: &Path, conns: Conns, config: RewardsConfig) -> anyhow::Result<Self> {
        let key = processor_key(data_dir)?;
        if matches!(conns, Conns::Postgres { .. }) {
            conns.book(|c| same_key_as_the_others(c, &key))?;
        }
        let started = std::time::Instant::now();
        let checked = conns
            .book(|c| check::at_start(c, config.cap_units(), key.public_key()))?
            .map_err(|t| {
                anyhow::anyhow!(
                    "the stored rewards ledger does not verify ({t}); run `wattstream rewards verify`"
                )
            })?;
        tracing::info!(
            entries = checked.entries,
            seals = checked.seals,
            ms = started.elapsed().as_millis() as u64,
            "checked the rewards ledger since its checkpoint"
        );
        Ok(Rewards {
            key,
            config,
            conns,
            newest: Mutex::new(None),
            rebuilding: Mutex::new(()),
            page: std::sync::atomic::AtomicI64::new(ACCRUE_PAGE),
        })
    }

    pub fn public_key(&self) -> String {
        self.key.public_key().to_hex()
    }

    /// Seals every epoch with entries that ended at least `seal_after_s` before
    /// `now`, each with its leaves in one transaction; the newest seal made
    /// becomes the next start's checkpoint.
    pub fn seal_due(&self, now: u64) -> anyhow::Result<Vec<u64>> {
        self.conns.book(|c| self.seal_due_on(c, now))
    }

    fn seal_due_on(&self, c: &dyn Sql, now: u64) -> anyhow::Result<Vec<u64>> {
        let mut sealed = Vec::new();
        loop {
            let tx = Tx::write(c, LEDGER_LOCK)?;
            let last = book::last_sealed(&*tx)?;
            let Some(epoch) = book::open_epochs(&*tx, last)?
                .into_iter()
                .next()
                .filter(|e| (e + 1) * self.config.epoch_s + self.config.seal_after_s <= now)
            else {
                return Ok(sealed);
            };
            let tree = Tree::build(book::current_leaves(&*tx, epoch)?, epoch);
            let head = book::head(&*tx)?;
            let (epoch_s, cap) = (self.config.epoch_s, self.config.cap_units());
            let seal = sign_seal(epoch, head, &tree, epoch_s, cap, &self.key, last);
            book::write_seal(&*tx, &seal, &tree, now)?;
            book::set_meta(&*tx, "verified_epoch", epoch as i64)?;
            tx.commit()?;
            *self.newest.lock().expect("newest seal lock") = Some(Arc::new((seal.clone(), tree)));
            tracing::info!(epoch, root = %hex::encode(seal.root), "sealed a rewards epoch");
            sealed.push(epoch);
        }
    }

    /// The newest seal and its tree, rebuilt from the stored leaves only when
    /// a newer seal has appeared. One query rebuilds it (10,000 leaves take
    /// tens of milliseconds); queries meanwhile serve the previous seal's
    /// proof, which still verifies, instead of queueing behind the rebuild.
    fn newest_tree(&self, c: &dyn Sql) -> anyhow::Result<Option<Arc<(Seal, Tree)>>> {
        let newest = book::last_sealed(c)?;
        let cached = self.newest.lock().expect("newest seal lock").clone();
        if cached.as_ref().map(|s| s.0.epoch) == newest {
            return Ok(cached);
        }
        let building = match (self.rebuilding.try_lock(), &cached) {
            (Ok(guard), _) => guard,
            (Err(_), Some(_)) => return Ok(cached),
            (Err(_), None) => self.rebuilding.lock().expect("rebuild lock"),
        };
        let fresh = book::newest_tree(c)?.map(Arc::new);
        *self.newest.lock().expect("newest seal lock") = fresh.clone();
        drop(building);
        Ok(fresh)
    }

    /// `GET /v1/devices/{id}/rewards`: a balance row, the device's entries of
    /// the last hour (an index range), and its proof from the newest seal's
    /// tree (O(log n)).
    pub fn answer(&self, id: &DeviceId) -> anyhow::Result<RewardsView> {
        let address = stored::address_text(&id.0);
        let (balance, last_hour, sealed) = self.conns.read(|c| -> anyhow::Result<_> {
            let tx = Tx::read(c)?; // one snapshot for every read below
            let balance = stored::amount_of(
                &*tx,
                "SELECT balance FROM ledger_balances WHERE address = ?1",
                &[address.as_str().into()],
            )?;
            let newest = book::meta(&*tx, "newest_ts")?.unwrap_or(0);
            let last_hour: u128 = stored::address_amounts(
                &*tx,
                "SELECT address, amount FROM ledger_entries WHERE address = ?1 AND timestamp > ?2",
                &[address.as_str().into(), Val::Int(newest - 3600)],
            )?
            .iter()
            .map(|(_, a)| a)
            .sum();
            Ok((balance, last_hour, self.newest_tree(&*tx)?))
        })?;
        let (latest_epoch, proof) = match sealed.as_deref() {
            Some((seal, tree)) => (Some(seal.view()), proof_view(tree, id)),
            None => (None, None),
        };
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
    pub fn seal_view(&self, epoch: u64) -> anyhow::Result<Option<SealView>> {
        let seal = self.conns.read(|c| stored::seal_of(c, Some(epoch)))?;
        Ok(seal.as_ref().map(Seal::view))
    }

    /// `GET /v1/epochs/{n}/proofs/{device}`: the seal of `epoch` and the
    /// device's leaf and path in it (`None` when the epoch is not sealed or
    /// the device has no leaf in it): what a claim on chain carries.
    pub fn proof_in(&self, epoch: u64, id: &DeviceId) -> anyhow::Result<Option<(SealView, ProofView)>> {
        let found = self.conns.read(|c| -> anyhow::Result<_> {
            let tx = Tx::read(c)?;
            let Some(seal) = stored::seal_of(&*tx, Some(epoch))? else {
                return Ok(None);
            };
            let leaves = stored::seal_leaves(&*tx, epoch)?;
            Ok(Some((seal, Tree::build(leaves, epoch))))
        })?;
        Ok(found.and_then(|(seal, tree)| proof_view(&tree, id).map(|proof| (seal.view(), proof))))
    }

    /// `GET /v1/ledger/head`.
    pub fn head(&self) -> anyhow::Result<LedgerHead> {
        let ((seq, hash), last_sealed, through_event) = self.conns.read(|c| -> anyhow::Result<_> {
            let tx = Tx::read(c)?;
            Ok((
                book::head(&*tx)?,
                book::last_sealed(&*tx)?,
                book::meta(&*tx, THROUGH)?,
            ))
        })?;
        Ok(LedgerHead {
            seq,
            hash: hex::encode(hash),
            last_sealed_epoch: last_sealed,
            epoch_s: self.config.epoch_s,
            processor_public_key: self.public_key(),
            through_event,
        })
    }
}

/// `id`'s leaf and Merkle path in `tree`, as the API answers it.
fn proof_view(tree: &Tree, id: &DeviceId) -> Option<ProofView> {
    tree.proof(&id.0).map(|(leaf, steps)| ProofView {
        address: id.address(),
        epoch_total: leaf.epoch_total.to_string(),
        balance: leaf.balance.to_string(),
        steps,
    })
}

#[cfg(test)]
mod tests;
