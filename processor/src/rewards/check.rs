//! Checking the stored ledger against itself. Two depths:
//!
//! - **At every start** ([`at_start`]) only what was written since the
//!   checkpoint: the newest seal that was verified, or that this processor
//!   made itself. The walk starts from that seal's stored leaves (their tree
//!   must make its signed root), so a start costs the entries of about one
//!   epoch, not the whole history. The first start after the ledger's derived
//!   rows were added (schema 7) fills them by walking everything once.
//! - **`wattstream rewards verify`** ([`verify_all`]) walks every entry and seal
//!   from the start. It is the audit: a checkpoint row is in the same store as
//!   everything else and can be changed with it.
//!
//! Both end by holding the derived rows (balances, totals of open epochs, the
//! newest seal's leaves) to what the entries give: a balance a meter is shown
//! must be one the chain supports.

use std::collections::HashMap;

use wattstream_rewards::{Checkpoint, Finished, Tamper, Tree, Verifier};
use wattstream_sdk::PublicKey;

use super::book::{self, meta, set_meta};
use super::stored::{address_amounts, for_each_entry, seal_leaves, seal_of, seals_after};
use crate::store::sql::{Sql, SqlError, Tx, Val};

/// What a check walked.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub entries: u64,
    pub seals: usize,
}

type Checked = anyhow::Result<Result<Verified, Tamper>>;

/// A walk over the stored entries after `after_seq`: store errors and tamper
/// kept apart.
fn walk(
    conn: &dyn Sql,
    after_seq: u64,
    v: &mut Verifier<'_>,
    mut each: impl FnMut(&mut Verifier<'_>) -> Result<(), SqlError>,
) -> anyhow::Result<Option<Tamper>> {
    enum Stop {
        Db(SqlError),
        Tamper(Tamper),
    }
    impl From<SqlError> for Stop {
        fn from(e: SqlError) -> Self {
            Stop::Db(e)
        }
    }
    match for_each_entry(conn, after_seq, |e, _| {
        v.push(&e).map_err(Stop::Tamper)?;
        each(v).map_err(Stop::Db)
    }) {
        Ok(()) => Ok(None),
        Err(Stop::Tamper(t)) => Ok(Some(t)),
        Err(Stop::Db(e)) => Err(e.into()),
    }
}

/// Every entry and seal from the start, then the derived rows, all in one read
/// transaction: a processor writing meanwhile cannot make the balances read
/// last disagree with the entries read first.
pub fn verify_all(conn: &dyn Sql, cap: u128, key: &PublicKey) -> Checked {
    let snapshot = Tx::read(conn)?;
    let conn: &dyn Sql = &*snapshot;
    let mut v = Verifier::new(seals_after(conn, None)?, cap, Some(key));
    if let Some(t) = walk(conn, 0, &mut v, |_| Ok(()))? {
        return Ok(Err(t));
    }
    finish(conn, v)
}

/// The start-up check (module docs).
pub fn at_start(conn: &dyn Sql, cap: u128, key: &PublicKey) -> Checked {
    if meta(conn, "book")?.is_none() {
        return rebuild(conn, cap, key);
    }
    let Some(epoch) = meta(conn, "verified_epoch")? else {
        let checked = verify_all(conn, cap, key)?;
        return mark(conn, checked);
    };
    let Some(seal) = seal_of(conn, Some(epoch as u64))? else {
        return Ok(Err(Tamper::Seal {
            epoch: epoch as u64,
            reason: "the checkpoint's seal is missing".into(),
        }));
    };
    let leaves = seal_leaves(conn, seal.epoch)?;
    if Tree::build(leaves.clone(), seal.epoch).root() != seal.root || !seal.signature_ok() {
        return Ok(Err(Tamper::Seal {
            epoch: seal.epoch,
            reason: "the checkpoint's stored leaves do not make its signed root".into(),
        }));
    }
    if PublicKey::from_hex(&seal.public_key).ok().as_ref() != Some(key) {
        return Ok(Err(Tamper::Seal {
            epoch: seal.epoch,
            reason: "signed by another key than the processor's".into(),
        }));
    }
    let open_totals = address_amounts_by_epoch(conn, seal.epoch, seal.upto_seq)?;
    let from = Checkpoint {
        epoch: seal.epoch,
        seq: seal.upto_seq,
        hash: seal.head,
        balances: leaves.iter().map(|l| (l.address, l.balance)).collect(),
        open_totals,
    };
    let mut v = Verifier::resume(
        from,
        Some(seal.epoch),
        seals_after(conn, Some(seal.epoch))?,
        cap,
        Some(key),
    );
    if let Some(t) = walk(conn, seal.upto_seq, &mut v, |_| Ok(()))? {
        return Ok(Err(t));
    }
    let checked = finish(conn, v)?;
    mark(conn, checked)
}

/// Totals, at entry `upto_seq`, of the epochs after `epoch`.
fn address_amounts_by_epoch(
    conn: &dyn Sql,
    epoch: u64,
    upto_seq: u64,
) -> Result<HashMap<(u64, [u8; 20]), u128>, SqlError> {
    let mut totals = HashMap::new();
    let rows = conn.rows(
        "SELECT epoch, address, amount FROM ledger_entries WHERE epoch > ?1 AND seq <= ?2",
        &[Val::Int(epoch as i64), Val::Int(upto_seq as i64)],
    )?;
    for r in rows {
        let (Ok(e), Ok(a), Ok(n)) = (r[0].count(0), r[1].address(1), r[2].amount(2)) else {
            continue; // the walk names malformed rows; a total is not the place
        };
        *totals.entry((e, a)).or_default() += n;
    }
    Ok(totals)
}

/// After a check that held, its newest seal is the next start's checkpoint.
fn mark(conn: &dyn Sql, checked: Result<Verified, Tamper>) -> Checked {
    if checked.is_ok()
        && let Some(last) = book::last_sealed(conn)?
    {
        set_meta(conn, "verified_epoch", last as i64)?;
    }
    Ok(checked)
}

/// Holds the derived rows to the walk's result.
fn finish(conn: &dyn Sql, v: Verifier<'_>) -> Checked {
    let done = match v.finish() {
        Ok(d) => d,
        Err(t) => return Ok(Err(t)),
    };
    if let Some(t) = derived_mismatch(conn, &done)? {
        return Ok(Err(t));
    }
    Ok(Ok(Verified {
        entries: done.entries,
        seals: done.seals,
    }))
}

fn derived_mismatch(conn: &dyn Sql, done: &Finished) -> anyhow::Result<Option<Tamper>> {
    let derived = |what: &str, reason: String| {
        Some(Tamper::Derived {
            what: what.to_string(),
            reason,
        })
    };
    let stored: HashMap<[u8; 20], u128> =
        address_amounts(conn, "SELECT address, balance FROM ledger_balances", &[])?
            .into_iter()
            .collect();
    if let Some((a, b)) = done.balances.iter().find(|(a, b)| stored.get(*a) != Some(*b)) {
        let kept = stored.get(a).map_or("none".into(), u128::to_string);
        return Ok(derived(
            "balance",
            format!("0x{}: entries give {b}, the store keeps {kept}", hex::encode(a)),
        ));
    }
    if stored.len() != done.balances.len() {
        return Ok(derived(
            "balance",
            "the store keeps balances for addresses without entries".into(),
        ));
    }
    let mut open: HashMap<(u64, [u8; 20]), u128> = HashMap::new();
    let rows = conn.rows(
        "SELECT epoch, address, total FROM ledger_totals WHERE epoch > ?1",
        &[Val::Int(done.last_sealed.map_or(-1, |e| e as i64))],
    )?;
    for r in rows {
        let (Ok(e), Ok(a), Ok(t)) = (r[0].count(0), r[1].address(1), r[2].amount(2)) else {
            return Ok(derived("epoch total", format!("malformed row {r:?}")));
        };
        open.insert((e, a), t);
    }
    let given: HashMap<(u64, [u8; 20]), u128> = done
        .totals
        .iter()
        .filter(|(_, t)| **t > 0)
        .map(|(k, t)| (*k, *t))
        .collect();
    if open != given {
        return Ok(derived(
            "epoch total",
            "the open epochs' totals differ from the entries".into(),
        ));
    }
    if let Err(e) = book::newest_tree(conn) {
        return Ok(derived("seal leaves", e.to_string()));
    }
    Ok(None)
}

/// Fills the derived rows from the entries (first start after schema 7), in
/// one transaction that is kept only when everything verified.
fn rebuild(conn: &dyn Sql, cap: u128, key: &PublicKey) -> Checked {
    let tx = Tx::write(conn, super::LEDGER_LOCK)?;
    if meta(&*tx, "book")?.is_some() {
        drop(tx); // another process filled them meanwhile
        return at_start(conn, cap, key);
    }
    for table in ["ledger_balances", "ledger_totals", "seal_leaves"] {
        tx.exec(&format!("DELETE FROM {table}"), &[])?;
    }
    let tx_sql: &dyn Sql = &*tx;
    let mut v = Verifier::new(seals_after(tx_sql, None)?, cap, Some(key)).keep_trees();
    let keep = |tx: &dyn Sql, trees: Vec<(wattstream_rewards::Seal, Tree)>| -> Result<(), SqlError> {
        for (seal, tree) in trees {
            book::write_leaves(tx, seal.epoch, &tree)?;
            book::write_totals(tx, seal.epoch, &tree)?;
        }
        Ok(())
    };
    if let Some(t) = walk(tx_sql, 0, &mut v, |v| keep(tx_sql, v.take_trees()))? {
        return Ok(Err(t));
    }
    let done = match v.finish() {
        Ok(d) => d,
        Err(t) => return Ok(Err(t)),
    };
    keep(tx_sql, done.trees.clone())?;
    book::write_rebuilt(tx_sql, &done)?;
    set_meta(tx_sql, "book", 1)?;
    let checked = Ok(Verified {
        entries: done.entries,
        seals: done.seals,
    });
    let checked = mark(tx_sql, checked)?;
    tx.commit()?;
    Ok(checked)
}
