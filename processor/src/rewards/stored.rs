//! The ledger as the store holds it: entries (with the timestamp of the event
//! that earned them) and seals, read back into the rewards crate's types, and
//! the applet credits waiting in a project database. Stored data that does not
//! parse is an error naming the row, never a silent zero address or amount:
//! the ledger's verification must see what is really there.

use rusqlite::types::Type;
use rusqlite::{Connection, Row};
use wattstream_rewards::{Credit, Entry, Seal};

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

/// Every stored entry and seal, in order.
pub fn load(conn: &Connection) -> rusqlite::Result<(Vec<Entry>, Vec<Seal>)> {
    let entries = conn
        .prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY seq"
        ))?
        .query_map([], |r| entry(r).map(|(e, _)| e))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let seals = conn
        .prepare("SELECT epoch, upto_seq, head, root, signature, public_key, epoch_s, cap FROM seals ORDER BY epoch")?
        .query_map([], |r| {
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
                    Some(c) => Some(c.parse().map_err(|_| bad(7, Type::Text, format!("not a cap in units: {c:?}")))?),
                    None => None,
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((entries, seals))
}

/// One device's entries with their event timestamps, oldest first.
pub fn device_entries(conn: &Connection, address: &[u8; 20]) -> rusqlite::Result<Vec<(Entry, u64)>> {
    conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE address = ?1 ORDER BY seq"
    ))?
    .query_map([format!("0x{}", hex::encode(address))], entry)?
    .collect()
}

/// The newest event timestamp in the ledger (0 when empty).
pub fn newest_timestamp(conn: &Connection) -> rusqlite::Result<u64> {
    let t: Option<i64> = conn.query_row("SELECT MAX(timestamp) FROM ledger_entries", [], |r| r.get(0))?;
    Ok(t.unwrap_or(0).max(0) as u64)
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
