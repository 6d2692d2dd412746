//! The ledger as the store holds it: entries (with the timestamp of the event
//! that earned them) and seals, read back into the rewards crate's types, and
//! the applet credits waiting in a project database. Stored data that does not
//! parse is an error naming the row, never a silent zero address or amount:
//! the ledger's verification must see what is really there.

use rusqlite::types::Type;
use rusqlite::{Connection, Row};
use wattstream_rewards::{Credit, Entry, Leaf, Seal};

use crate::applets::db::ProjectDb;

fn bad(col: usize, ty: Type, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, ty, what.into())
}

fn bytes<const N: usize>(r: &Row<'_>, col: usize) -> rusqlite::Result<[u8; N]> {
    let v: Vec<u8> = r.get(col)?;
    let len = v.len();
    v.try_into()
        .map_err(|_| bad(col, Type::Blob, format!("{len} bytes where {N} belong")))
}

fn address(r: &Row<'_>, col: usize) -> rusqlite::Result<[u8; 20]> {
    let s: String = r.get(col)?;
    let mut a = [0u8; 20];
    hex::decode_to_slice(s.strip_prefix("0x").unwrap_or(&s), &mut a)
        .map_err(|_| bad(col, Type::Text, format!("not an address: {s:?}")))?;
    Ok(a)
}

fn amount(r: &Row<'_>, col: usize) -> rusqlite::Result<u128> {
    let s: String = r.get(col)?;
    s.parse()
        .map_err(|_| bad(col, Type::Text, format!("not an amount in units: {s:?}")))
}

fn count(r: &Row<'_>, col: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(col)?;
    u64::try_from(v).map_err(|_| bad(col, Type::Integer, format!("negative: {v}")))
}

const ENTRY_COLUMNS: &str =
    "seq, epoch, address, amount, event_id, applet, applet_hash, idx, prev, hash, timestamp";

/// An entry and the timestamp of the event that earned it.
fn entry(r: &Row<'_>) -> rusqlite::Result<(Entry, u64)> {
    Ok((
        Entry {
            seq: count(r, 0)?,
            epoch: count(r, 1)?,
            address: address(r, 2)?,
            amount: amount(r, 3)?,
            event_id: r.get(4)?,
            applet: r.get(5)?,
            applet_hash: r.get(6)?,
            idx: u32::try_from(count(r, 7)?).map_err(|_| bad(7, Type::Integer, "index over u32".into()))?,
            prev: bytes(r, 8)?,
            hash: bytes(r, 9)?,
        },
        count(r, 10)?,
    ))
}

const SEAL_COLUMNS: &str = "epoch, upto_seq, head, root, signature, public_key, epoch_s, cap";

fn seal(r: &Row<'_>) -> rusqlite::Result<Seal> {
    Ok(Seal {
        epoch: count(r, 0)?,
        upto_seq: count(r, 1)?,
        head: bytes(r, 2)?,
        root: bytes(r, 3)?,
        signature: bytes(r, 4)?,
        public_key: r.get(5)?,
        epoch_s: r
            .get::<_, Option<i64>>(6)?
            .map(|v| u64::try_from(v).map_err(|_| bad(6, Type::Integer, format!("negative: {v}"))))
            .transpose()?,
        cap: match r.get::<_, Option<String>>(7)? {
            Some(c) => Some(
                c.parse()
                    .map_err(|_| bad(7, Type::Text, format!("not a cap in units: {c:?}")))?,
            ),
            None => None,
        },
    })
}

/// Every stored entry and seal, in order (tests and small ledgers: this
/// holds every entry in memory; [`for_each_entry`] streams them).
pub fn load(conn: &Connection) -> rusqlite::Result<(Vec<Entry>, Vec<Seal>)> {
    let mut entries = Vec::new();
    for_each_entry(conn, 0, |e, _| {
        entries.push(e);
        Ok::<_, rusqlite::Error>(())
    })?;
    Ok((entries, seals_after(conn, None)?))
}

/// Runs `f` on every entry after `after_seq`, in order, one row at a time.
/// `f`'s error stops the walk and is returned.
pub fn for_each_entry<E: From<rusqlite::Error>>(
    conn: &Connection,
    after_seq: u64,
    mut f: impl FnMut(Entry, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq > ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([after_seq as i64])?;
    while let Some(r) = rows.next()? {
        let (e, t) = entry(r)?;
        f(e, t)?;
    }
    Ok(())
}

/// Seals of epochs after `after` (all when `None`), oldest first.
pub fn seals_after(conn: &Connection, after: Option<u64>) -> rusqlite::Result<Vec<Seal>> {
    conn.prepare_cached(&format!(
        "SELECT {SEAL_COLUMNS} FROM seals WHERE epoch > ?1 ORDER BY epoch"
    ))?
    .query_map([after.map_or(-1, |a| a as i64)], seal)?
    .collect()
}

/// The seal of `epoch`, or the newest one when `None`.
pub fn seal_of(conn: &Connection, epoch: Option<u64>) -> rusqlite::Result<Option<Seal>> {
    use rusqlite::OptionalExtension;
    match epoch {
        Some(e) => conn
            .prepare_cached(&format!("SELECT {SEAL_COLUMNS} FROM seals WHERE epoch = ?1"))?
            .query_row([e as i64], seal)
            .optional(),
        None => conn
            .prepare_cached(&format!(
                "SELECT {SEAL_COLUMNS} FROM seals ORDER BY epoch DESC LIMIT 1"
            ))?
            .query_row([], seal)
            .optional(),
    }
}

/// The stored leaves of the seal of `epoch`.
pub fn seal_leaves(conn: &Connection, epoch: u64) -> rusqlite::Result<Vec<Leaf>> {
    conn.prepare_cached(
        "SELECT address, epoch_total, balance FROM seal_leaves WHERE epoch = ?1 ORDER BY address",
    )?
    .query_map([epoch as i64], |r| {
        Ok(Leaf {
            address: address(r, 0)?,
            epoch_total: amount(r, 1)?,
            balance: amount(r, 2)?,
        })
    })?
    .collect()
}

/// `0x` + 40 lowercase hex: how the store spells an address.
pub fn address_text(a: &[u8; 20]) -> String {
    format!("0x{}", hex::encode(a))
}

/// Rows of `(address, amount)` read by `sql` with `params`.
pub fn address_amounts(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<([u8; 20], u128)>> {
    conn.prepare_cached(sql)?
        .query_map(params, |r| Ok((address(r, 0)?, amount(r, 1)?)))?
        .collect()
}

/// A `TEXT` amount (u128 units) read by `sql`, 0 when there is no row.
pub fn amount_of(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<u128> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params, |r| amount(r, 0))
        .optional()?
        .unwrap_or(0))
}

/// One device's entries with their event timestamps, oldest first.
pub fn device_entries(conn: &Connection, address: &[u8; 20]) -> rusqlite::Result<Vec<(Entry, u64)>> {
    conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE address = ?1 ORDER BY seq"
    ))?
    .query_map([format!("0x{}", hex::encode(address))], entry)?
    .collect()
}

/// Credits in a project database after `rowid`, oldest first, at most `limit`.
pub fn read_credits(db: &ProjectDb, after: i64, limit: i64) -> rusqlite::Result<Vec<(i64, Credit)>> {
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
                idx: u32::try_from(count(r, 4)?)
                    .map_err(|_| bad(4, Type::Integer, "index over u32".into()))?,
                address: address(r, 5)?,
                amount: amount(r, 6)?,
                timestamp: count(r, 7)?,
            },
        ))
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(
                matches!(e, rusqlite::Error::FromSqlConversionFailure(..)),
                "{a} {n}: {e}"
            );
        }
    }
}
