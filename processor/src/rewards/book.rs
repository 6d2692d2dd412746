//! The ledger's rows in the SQLite store, page by page: a [`Book`] loaded with
//! what one page of credits reads, the entries it makes written back with the
//! balances and epoch totals they change, and a seal written with its leaves.
//! Each runs inside the caller's transaction, so entries, balances, totals and
//! the credits cursor (or a seal and its leaves) commit together or not at all:
//! the derived rows can never disagree with the entries a reader sees.
//!
//! Amounts are u128 token units, stored as decimal `TEXT` (SQLite integers stop
//! at 2^63); sums are made here, in Rust, never in SQL.

use rusqlite::{Connection, params};
use wattstream_rewards::{Book, Credit, Entry, Leaf, Seal, Tree, leaves};

use super::stored::{address_amounts, address_text, amount_of, seal_of};

/// A `ledger_meta` value.
pub fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT value FROM ledger_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// Sets a `ledger_meta` value.
pub fn set_meta(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ledger_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// `(seq, hash)` of the newest entry; `(0, zeros)` when there is none.
pub fn head(conn: &Connection) -> rusqlite::Result<(u64, [u8; 32])> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((seq, hash)) => (seq as u64, hash.try_into().unwrap_or([0; 32])),
        None => (0, [0; 32]),
    })
}

/// The newest sealed epoch.
pub fn last_sealed(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    let e: Option<i64> = conn
        .prepare_cached("SELECT MAX(epoch) FROM seals")?
        .query_row([], |r| r.get(0))?;
    Ok(e.map(|e| e as u64))
}

/// A book holding what `credits` read.
pub fn load(conn: &Connection, epoch_s: u64, cap: u128, credits: &[Credit]) -> rusqlite::Result<Book> {
    let mut book = Book::new(epoch_s, cap);
    book.head = head(conn)?;
    book.last_sealed = last_sealed(conn)?;
    let needs = book.needs(credits);
    for (epoch, a) in needs.pairs {
        let t = amount_of(
            conn,
            "SELECT total FROM ledger_totals WHERE epoch = ?1 AND address = ?2",
            params![epoch as i64, address_text(&a)],
        )?;
        book.totals.insert((epoch, a), t);
    }
    for a in needs.addresses {
        let b = amount_of(
            conn,
            "SELECT balance FROM ledger_balances WHERE address = ?1",
            [address_text(&a)],
        )?;
        book.balances.insert(a, b);
    }
    let mut present =
        conn.prepare_cached("SELECT 1 FROM ledger_entries WHERE event_id = ?1 AND applet = ?2 AND idx = ?3")?;
    for key in needs.keys {
        if present.exists(params![key.0, key.1, key.2])? {
            book.present.insert(key);
        }
    }
    Ok(book)
}

/// Writes `entries` (with the timestamps of the events that earned them) and
/// the totals and balances of `book` they changed.
pub fn write(conn: &Connection, book: &Book, entries: &[(Entry, u64)]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO ledger_entries (seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut newest = meta(conn, "newest_ts")?.unwrap_or(0);
    for (e, t) in entries {
        insert.execute(params![
            e.seq as i64,
            e.epoch as i64,
            address_text(&e.address),
            e.amount.to_string(),
            e.event_id,
            e.applet,
            e.applet_hash,
            e.idx as i64,
            &e.prev[..],
            &e.hash[..],
            *t as i64
        ])?;
        newest = newest.max(*t as i64);
    }
    if entries.is_empty() {
        return Ok(());
    }
    set_meta(conn, "newest_ts", newest)?;
    let mut total = conn.prepare_cached(
        "INSERT INTO ledger_totals (epoch, address, total) VALUES (?1, ?2, ?3)
         ON CONFLICT(epoch, address) DO UPDATE SET total = excluded.total",
    )?;
    for ((epoch, a), t) in book.totals.iter().filter(|(_, t)| **t > 0) {
        total.execute(params![*epoch as i64, address_text(a), t.to_string()])?;
    }
    let mut balance = conn.prepare_cached(
        "INSERT INTO ledger_balances (address, balance) VALUES (?1, ?2)
         ON CONFLICT(address) DO UPDATE SET balance = excluded.balance",
    )?;
    for (a, b) in book.balances.iter().filter(|(_, b)| **b > 0) {
        balance.execute(params![address_text(a), b.to_string()])?;
    }
    Ok(())
}

/// The leaves a seal of `epoch` gets now: every balance, with its `epoch` total.
pub fn current_leaves(conn: &Connection, epoch: u64) -> rusqlite::Result<Vec<Leaf>> {
    let balances: std::collections::HashMap<[u8; 20], u128> =
        address_amounts(conn, "SELECT address, balance FROM ledger_balances", [])?
            .into_iter()
            .collect();
    let totals: std::collections::HashMap<[u8; 20], u128> = address_amounts(
        conn,
        "SELECT address, total FROM ledger_totals WHERE epoch = ?1",
        [epoch as i64],
    )?
    .into_iter()
    .collect();
    Ok(leaves(&balances, |a| totals.get(a).copied().unwrap_or(0)))
}

/// Epochs with entries after `last_sealed`, oldest first.
pub fn open_epochs(conn: &Connection, last_sealed: Option<u64>) -> rusqlite::Result<Vec<u64>> {
    conn.prepare_cached("SELECT DISTINCT epoch FROM ledger_totals WHERE epoch > ?1 ORDER BY epoch")?
        .query_map([last_sealed.map_or(-1, |e| e as i64)], |r| {
            r.get::<_, i64>(0).map(|e| e as u64)
        })?
        .collect()
}

/// Writes a seal, its leaves and, for an epoch without totals rows (a ledger
/// rebuilt from its entries), the epoch totals the leaves carry.
pub fn write_seal(conn: &Connection, seal: &Seal, tree: &Tree, sealed_at: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO seals (epoch, upto_seq, head, root, signature, public_key, sealed_at, epoch_s, cap)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        seal.epoch as i64,
        seal.upto_seq as i64,
        &seal.head[..],
        &seal.root[..],
        &seal.signature[..],
        seal.public_key,
        sealed_at as i64,
        seal.epoch_s.map(|e| e as i64),
        seal.cap.map(|c| c.to_string())
    ])?;
    write_leaves(conn, seal.epoch, tree)
}

/// A seal's leaves.
pub fn write_leaves(conn: &Connection, epoch: u64, tree: &Tree) -> rusqlite::Result<()> {
    let mut leaf = conn.prepare_cached(
        "INSERT OR REPLACE INTO seal_leaves (epoch, address, epoch_total, balance) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for l in &tree.leaves {
        leaf.execute(params![
            epoch as i64,
            address_text(&l.address),
            l.epoch_total.to_string(),
            l.balance.to_string()
        ])?;
    }
    Ok(())
}

/// The newest seal and the tree of its stored leaves, when they agree.
pub fn newest_tree(conn: &Connection) -> anyhow::Result<Option<(Seal, Tree)>> {
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
pub fn write_totals(conn: &Connection, epoch: u64, tree: &Tree) -> rusqlite::Result<()> {
    let mut total = conn
        .prepare_cached("INSERT OR REPLACE INTO ledger_totals (epoch, address, total) VALUES (?1, ?2, ?3)")?;
    for l in tree.leaves.iter().filter(|l| l.epoch_total > 0) {
        total.execute(params![
            epoch as i64,
            address_text(&l.address),
            l.epoch_total.to_string()
        ])?;
    }
    Ok(())
}

/// Balances, open epochs' totals and the newest timestamp, from a walk over
/// every entry (a rebuild).
pub fn write_rebuilt(conn: &Connection, done: &wattstream_rewards::Finished) -> rusqlite::Result<()> {
    let mut balance =
        conn.prepare_cached("INSERT OR REPLACE INTO ledger_balances (address, balance) VALUES (?1, ?2)")?;
    for (a, b) in done.balances.iter().filter(|(_, b)| **b > 0) {
        balance.execute(params![address_text(a), b.to_string()])?;
    }
    let mut total = conn
        .prepare_cached("INSERT OR REPLACE INTO ledger_totals (epoch, address, total) VALUES (?1, ?2, ?3)")?;
    for ((epoch, a), t) in done.totals.iter().filter(|(_, t)| **t > 0) {
        total.execute(params![*epoch as i64, address_text(a), t.to_string()])?;
    }
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(timestamp) FROM ledger_entries", [], |r| r.get(0))?;
    set_meta(conn, "newest_ts", newest.unwrap_or(0))
}
