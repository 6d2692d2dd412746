//! The ledger as the store holds it: entries (with the timestamp of the event
//! that earned them) and seals, read back into the rewards crate's types, and
//! the applet credits waiting in a project database. Stored data that does not
//! parse is an error naming the row, never a silent zero address or amount:
//! the ledger's verification must see what is really there.

use wattstream_rewards::{Credit, Entry, Leaf, Seal};

use crate::store::sql::{Sql, SqlError, Val};

type Result<T> = std::result::Result<T, SqlError>;

const ENTRY_COLUMNS: &str =
    "seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp";

fn index(v: &Val, col: usize) -> Result<u32> {
    u32::try_from(v.count(col)?).map_err(|_| SqlError::Malformed {
        col,
        what: "index (over u32)",
        value: format!("{v:?}"),
    })
}

/// An entry and the timestamp of the event that earned it.
fn entry(r: &[Val]) -> Result<(Entry, u64)> {
    Ok((
        Entry {
            seq: r[0].count(0)?,
            epoch: r[1].count(1)?,
            address: r[2].address(2)?,
            amount: r[3].amount(3)?,
            event_id: r[4].int(4)?,
            applet: r[5].text(5)?.to_string(),
            applet_hash: r[6].text(6)?.to_string(),
            idx: index(&r[7], 7)?,
            prev: r[8].bytes(8)?,
            hash: r[9].bytes(9)?,
        },
        r[10].count(10)?,
    ))
}

const SEAL_COLUMNS: &str = "epoch, upto_seq, head, root, signature, public_key, epoch_s, cap";

fn seal(r: &[Val]) -> Result<Seal> {
    Ok(Seal {
        epoch: r[0].count(0)?,
        upto_seq: r[1].count(1)?,
        head: r[2].bytes(2)?,
        root: r[3].bytes(3)?,
        signature: r[4].bytes(4)?,
        public_key: r[5].text(5)?.to_string(),
        epoch_s: match &r[6] {
            Val::Null => None,
            v => Some(v.count(6)?),
        },
        cap: match &r[7] {
            Val::Null => None,
            v => Some(v.amount(7)?),
        },
    })
}

/// Every stored entry and seal, in order (tests and small ledgers: this
/// holds every entry in memory; [`for_each_entry`] streams them).
pub fn load(conn: &dyn Sql) -> Result<(Vec<Entry>, Vec<Seal>)> {
    let mut entries = Vec::new();
    for_each_entry(conn, 0, |e, _| {
        entries.push(e);
        Ok::<_, SqlError>(())
    })?;
    Ok((entries, seals_after(conn, None)?))
}

/// Entries read per query by [`for_each_entry`].
const WALK_PAGE: i64 = 10_000;

/// Runs `f` on every entry after `after_seq`, in order, a page of entries in
/// memory at a time (call it inside a read transaction for one snapshot).
/// `f`'s error stops the walk and is returned.
pub fn for_each_entry<E: From<SqlError>>(
    conn: &dyn Sql,
    after_seq: u64,
    mut f: impl FnMut(Entry, u64) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut after = after_seq as i64;
    loop {
        let rows = conn.rows(&sql, &[Val::Int(after), Val::Int(WALK_PAGE)])?;
        for r in &rows {
            let (e, t) = entry(r)?;
            after = e.seq as i64;
            f(e, t)?;
        }
        if (rows.len() as i64) < WALK_PAGE {
            return Ok(());
        }
    }
}

/// Seals of epochs after `after` (all when `None`), oldest first.
pub fn seals_after(conn: &dyn Sql, after: Option<u64>) -> Result<Vec<Seal>> {
    conn.rows(
        &format!("SELECT {SEAL_COLUMNS} FROM seals WHERE epoch > ?1 ORDER BY epoch"),
        &[Val::Int(after.map_or(-1, |a| a as i64))],
    )?
    .iter()
    .map(|r| seal(r))
    .collect()
}

/// The newest `limit` seals, newest first.
pub fn seals_newest(conn: &dyn Sql, limit: u32) -> Result<Vec<Seal>> {
    conn.rows(
        &format!("SELECT {SEAL_COLUMNS} FROM seals ORDER BY epoch DESC LIMIT ?1"),
        &[Val::Int(limit.into())],
    )?
    .iter()
    .map(|r| seal(r))
    .collect()
}

/// The seal of `epoch`, or the newest one when `None`.
pub fn seal_of(conn: &dyn Sql, epoch: Option<u64>) -> Result<Option<Seal>> {
    let row = match epoch {
        Some(e) => conn.row(
            &format!("SELECT {SEAL_COLUMNS} FROM seals WHERE epoch = ?1"),
            &[Val::Int(e as i64)],
        )?,
        None => conn.row(
            &format!("SELECT {SEAL_COLUMNS} FROM seals ORDER BY epoch DESC LIMIT 1"),
            &[],
        )?,
    };
    row.as_deref().map(seal).transpose()
}

/// The stored leaves of the seal of `epoch`.
pub fn seal_leaves(conn: &dyn Sql, epoch: u64) -> Result<Vec<Leaf>> {
    conn.rows(
        "SELECT address, epoch_total, balance FROM seal_leaves WHERE epoch = ?1 ORDER BY address",
        &[Val::Int(epoch as i64)],
    )?
    .iter()
    .map(|r| {
        Ok(Leaf {
            address: r[0].address(0)?,
            epoch_total: r[1].amount(1)?,
            balance: r[2].amount(2)?,
        })
    })
    .collect()
}

/// `0x` + 40 lowercase hex: how the store spells an address.
pub fn address_text(a: &[u8; 20]) -> String {
    format!("0x{}", hex::encode(a))
}

/// Rows of `(address, amount)` read by `sql` with `params`.
pub fn address_amounts(conn: &dyn Sql, sql: &str, params: &[Val]) -> Result<Vec<([u8; 20], u128)>> {
    conn.rows(sql, params)?
        .iter()
        .map(|r| Ok((r[0].address(0)?, r[1].amount(1)?)))
        .collect()
}

/// A `TEXT` amount (u128 units) read by `sql`, 0 when there is no row.
pub fn amount_of(conn: &dyn Sql, sql: &str, params: &[Val]) -> Result<u128> {
    conn.row(sql, params)?.map_or(Ok(0), |r| r[0].amount(0))
}

/// One device's entries with their event timestamps, oldest first.
pub fn device_entries(conn: &dyn Sql, address: &[u8; 20]) -> Result<Vec<(Entry, u64)>> {
    conn.rows(
        &format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE address = ?1 ORDER BY seq"),
        &[Val::Text(address_text(address))],
    )?
    .iter()
    .map(|r| entry(r))
    .collect()
}

/// Credits in a SQLite project database after `rowid`, oldest first, at most
/// `limit`.
pub fn read_credits(db: &dyn Sql, after: i64, limit: i64) -> Result<Vec<(i64, Credit)>> {
    db.rows(
        "SELECT rowid, event_id, applet, applet_hash, idx, address, amount, timestamp FROM _ws_credits
         WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        &[Val::Int(after), Val::Int(limit)],
    )?
    .iter()
    .map(|r| Ok((r[0].int(0)?, credit(&r[1..])?)))
    .collect()
}

/// The last event the project's applet worker has run (`_ws_cursor`).
pub fn worker_cursor(db: &dyn Sql) -> Result<Option<i64>> {
    db.row("SELECT last_event_id FROM _ws_cursor WHERE id = 1", &[])?
        .map(|r| r[0].int(0))
        .transpose()
}

/// A credit row: `event_id, applet, applet_hash, idx, address, amount, timestamp`.
pub fn credit(r: &[Val]) -> Result<Credit> {
    Ok(Credit {
        event_id: r[0].int(0)?,
        applet: r[1].text(1)?.to_string(),
        applet_hash: r[2].text(2)?.to_string(),
        idx: index(&r[3], 3)?,
        address: r[4].address(4)?,
        amount: r[5].amount(5)?,
        timestamp: r[6].count(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn store_with(address: &str, amount: &str) -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c).unwrap();
        c.execute(
            "INSERT INTO ledger_entries (seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp)
             VALUES (1, 0, ?1, ?2, 1, 'a', 'h', 0, zeroblob(32), zeroblob(32), 5)",
            [address, amount],
        )
        .unwrap();
        c
    }

    #[test]
    fn well_formed_rows_load() {
        let addr = format!("0x{}", "ab".repeat(20));
        let (entries, seals) = load(&store_with(&addr, "1000")).unwrap();
        assert_eq!((entries[0].address, entries[0].amount), ([0xab; 20], 1000));
        assert!(seals.is_empty());
        let mine = device_entries(&store_with(&addr, "7"), &[0xab; 20]).unwrap();
        assert_eq!((mine.len(), mine[0].1), (1, 5));
    }

    #[test]
    fn a_bad_address_or_amount_is_an_error_not_a_zero() {
        let addr = format!("0x{}", "ab".repeat(20));
        for (a, n) in [("0xnothex", "1"), (addr.as_str(), "lots"), (addr.as_str(), "-1")] {
            let e = load(&store_with(a, n)).unwrap_err();
            assert!(matches!(e, SqlError::Malformed { .. }), "{a} {n}: {e}");
        }
    }
}
