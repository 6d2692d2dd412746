//! The ledger's rows in the store, page by page: a [`Book`] loaded with what
//! one page of credits reads, the entries it makes written back with the
//! balances and epoch totals they change, and a seal written with its leaves.
//! Each runs inside the caller's transaction, so entries, balances, totals and
//! the credits cursor (or a seal and its leaves) commit together or not at all:
//! the derived rows can never disagree with the entries a reader sees.
//!
//! The statements are the same on SQLite and PostgreSQL ([`Sql`]). Amounts are
//! u128 token units, stored as decimal `TEXT` (both engines' integers stop at
//! 2^63); sums are made here, in Rust, never in SQL.

use wattstream_rewards::{Book, Credit, Entry, Leaf, Seal, Tree, leaves};

use super::stored::{address_amounts, address_text, amount_of, seal_of};
use crate::store::sql::{Sql, SqlError, Val};

type Result<T> = std::result::Result<T, SqlError>;

/// A `ledger_meta` value.
pub fn meta(conn: &dyn Sql, key: &str) -> Result<Option<i64>> {
    conn.row("SELECT value FROM ledger_meta WHERE key = ?1", &[key.into()])?
        .map(|r| r[0].int(0))
        .transpose()
}

/// Sets a `ledger_meta` value.
pub fn set_meta(conn: &dyn Sql, key: &str, value: i64) -> Result<()> {
    conn.exec(
        "INSERT INTO ledger_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        &[key.into(), Val::Int(value)],
    )?;
    Ok(())
}

/// `(seq, hash)` of the newest entry; `(0, zeros)` when there is none.
pub fn head(conn: &dyn Sql) -> Result<(u64, [u8; 32])> {
    Ok(
        match conn.row(
            "SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1",
            &[],
        )? {
            Some(r) => (r[0].count(0)?, r[1].bytes(1)?),
            None => (0, [0; 32]),
        },
    )
}

/// The newest sealed epoch.
pub fn last_sealed(conn: &dyn Sql) -> Result<Option<u64>> {
    match conn.row("SELECT MAX(epoch) FROM seals", &[])? {
        Some(r) if r[0] != Val::Null => Ok(Some(r[0].count(0)?)),
        _ => Ok(None),
    }
}

/// A book holding what `credits` read.
pub fn load(conn: &dyn Sql, epoch_s: u64, cap: u128, credits: &[Credit]) -> Result<Book> {
    let mut book = Book::new(epoch_s, cap);
    book.head = head(conn)?;
    book.last_sealed = last_sealed(conn)?;
    let needs = book.needs(credits);
    for (epoch, a) in needs.pairs {
        let t = amount_of(
            conn,
            "SELECT total FROM ledger_totals WHERE epoch = ?1 AND address = ?2",
            &[Val::Int(epoch as i64), address_text(&a).into()],
        )?;
        book.totals.insert((epoch, a), t);
    }
    for a in needs.addresses {
        let b = amount_of(
            conn,
            "SELECT balance FROM ledger_balances WHERE address = ?1",
            &[address_text(&a).into()],
        )?;
        book.balances.insert(a, b);
    }
    for key in needs.keys {
        let present = conn.row(
            "SELECT 1 FROM ledger_entries WHERE event_id = ?1 AND applet = ?2 AND idx = ?3",
            &[Val::Int(key.0), key.1.as_str().into(), Val::Int(key.2 as i64)],
        )?;
        if present.is_some() {
            book.present.insert(key);
        }
    }
    Ok(book)
}

/// Writes `entries` (with the timestamps of the events that earned them) and
/// the totals and balances of `book` they changed.
pub fn write(conn: &dyn Sql, book: &Book, entries: &[(Entry, u64)]) -> Result<()> {
    let mut newest = meta(conn, "newest_ts")?.unwrap_or(0);
    for (e, t) in entries {
        conn.exec(
            "INSERT INTO ledger_entries (seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            &[
                Val::Int(e.seq as i64),
                Val::Int(e.epoch as i64),
                address_text(&e.address).into(),
                e.amount.to_string().into(),
                Val::Int(e.event_id),
                e.applet.as_str().into(),
                e.applet_hash.as_str().into(),
                Val::Int(e.idx as i64),
                e.prev[..].into(),
                e.hash[..].into(),
                Val::Int(*t as i64),
            ],
        )?;
        newest = newest.max(*t as i64);
    }
    if entries.is_empty() {
        return Ok(());
    }
    set_meta(conn, "newest_ts", newest)?;
    for ((epoch, a), t) in book.totals.iter().filter(|(_, t)| **t > 0) {
        put_total(conn, *epoch, a, *t)?;
    }
    for (a, b) in book.balances.iter().filter(|(_, b)| **b > 0) {
        put_balance(conn, a, *b)?;
    }
    Ok(())
}

fn put_total(conn: &dyn Sql, epoch: u64, a: &[u8; 20], total: u128) -> Result<()> {
    conn.exec(
        "INSERT INTO ledger_totals (epoch, address, total) VALUES (?1, ?2, ?3)
         ON CONFLICT(epoch, address) DO UPDATE SET total = excluded.total",
        &[
            Val::Int(epoch as i64),
            address_text(a).into(),
            total.to_string().into(),
        ],
    )?;
    Ok(())
}

fn put_balance(conn: &dyn Sql, a: &[u8; 20], balance: u128) -> Result<()> {
    conn.exec(
        "INSERT INTO ledger_balances (address, balance) VALUES (?1, ?2)
         ON CONFLICT(address) DO UPDATE SET balance = excluded.balance",
        &[address_text(a).into(), balance.to_string().into()],
    )?;
    Ok(())
}

/// The leaves a seal of `epoch` gets now: every balance, with its `epoch` total.
pub fn current_leaves(conn: &dyn Sql, epoch: u64) -> Result<Vec<Leaf>> {
    let balances: std::collections::HashMap<[u8; 20], u128> =
        address_amounts(conn, "SELECT address, balance FROM ledger_balances", &[])?
            .into_iter()
            .collect();
    let totals: std::collections::HashMap<[u8; 20], u128> = address_amounts(
        conn,
        "SELECT address, total FROM ledger_totals WHERE epoch = ?1",
        &[Val::Int(epoch as i64)],
    )?
    .into_iter()
    .collect();
    Ok(leaves(&balances, |a| totals.get(a).copied().unwrap_or(0)))
}

/// Epochs with entries after `last_sealed`, oldest first.
pub fn open_epochs(conn: &dyn Sql, last_sealed: Option<u64>) -> Result<Vec<u64>> {
    conn.rows(
        "SELECT DISTINCT epoch FROM ledger_totals WHERE epoch > ?1 ORDER BY epoch",
        &[Val::Int(last_sealed.map_or(-1, |e| e as i64))],
    )?
    .iter()
    .map(|r| r[0].count(0))
    .collect()
}

/// Writes a seal and its leaves.
pub fn write_seal(conn: &dyn Sql, seal: &Seal, tree: &Tree, sealed_at: u64) -> Result<()> {
    conn.exec(
        "INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at, epoch_s, cap)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            Val::Int(seal.epoch as i64),
            Val::Int(seal.upto_seq as i64),
            seal.head[..].into(),
            seal.root[..].into(),
            seal.signature[..].into(),
            seal.public_key.as_str().into(),
            Val::Int(sealed_at as i64),
            seal.epoch_s.map(|e| e as i64).into(),
            seal.cap.map(|c| c.to_string()).into(),
        ],
    )?;
    write_leaves(conn, seal.epoch, tree)
}

/// A seal's leaves.
pub fn write_leaves(conn: &dyn Sql, epoch: u64, tree: &Tree) -> Result<()> {
    for l in &tree.leaves {
        conn.exec(
            "INSERT INTO seal_leaves (epoch, address, epoch_total, balance) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(epoch, address) DO UPDATE SET epoch_total = excluded.epoch_total, balance = excluded.balance",
            &[
                Val::Int(epoch as i64),
                address_text(&l.address).into(),
                l.epoch_total.to_string().into(),
                l.balance.to_string().into(),
            ],
        )?;
    }
    Ok(())
}

/// The newest seal and the tree of its stored leaves, when they agree.
pub fn newest_tree(conn: &dyn Sql) -> anyhow::Result<Option<(Seal, Tree)>> {
    let Some(seal) = seal_of(conn, None)? else {
        return Ok(None);
    };
    let tree = Tree::build(super::stored::seal_leaves(conn, seal.epoch)?, seal.epoch);
    anyhow::ensure!(
        tree.root() == seal.root,
        "the stored leaves of epoch {} do not make its sealed root",
        seal.epoch
    );
    Ok(Some((seal, tree)))
}

/// The totals rows of a sealed epoch, from its leaves (a rebuild).
pub fn write_totals(conn: &dyn Sql, epoch: u64, tree: &Tree) -> Result<()> {
    for l in tree.leaves.iter().filter(|l| l.epoch_total > 0) {
        put_total(conn, epoch, &l.address, l.epoch_total)?;
    }
    Ok(())
}

/// Balances, open epochs' totals and the newest timestamp, from a walk over
/// every entry (a rebuild).
pub fn write_rebuilt(conn: &dyn Sql, done: &wattstream_rewards::Finished) -> Result<()> {
    for (a, b) in done.balances.iter().filter(|(_, b)| **b > 0) {
        put_balance(conn, a, *b)?;
    }
    for ((epoch, a), t) in done.totals.iter().filter(|(_, t)| **t > 0) {
        put_total(conn, *epoch, a, *t)?;
    }
    let newest = conn
        .row("SELECT MAX(timestamp) FROM ledger_entries", &[])?
        .map(|r| r[0].opt_int(0))
        .transpose()?
        .flatten();
    set_meta(conn, "newest_ts", newest.unwrap_or(0))
}
