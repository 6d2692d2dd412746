//! The transactions outbox: `_ws_txs` in each project's database (a SQLite
//! project file, or the project's schema on PostgreSQL), the same statements
//! on both engines.
//!
//! Invariants, and why they hold:
//! - **Once per `(event, applet, index)`.** An intent is written by the
//!   applet worker in the same transaction as the event's other effects
//!   (`applets::event::record`), under a unique key: an event that runs again
//!   (it cannot, but a bug or a replay into the live database would) adds
//!   nothing. A replay writes into its own scratch database, which no sender
//!   reads.
//! - **A signed transaction is stored before it is broadcast.** `signed`
//!   rows hold the nonce, the hash and the raw bytes; a sender that starts
//!   (after a crash, or on another processor) broadcasts the same bytes
//!   again, so a transaction is never signed twice for one intent while an
//!   earlier signature may still be mined.
//! - **A nonce is given up only when the chain has used it for something
//!   else**: a `signed` row whose nonce the chain has passed without mining
//!   its hash goes back to `pending` and is signed again with a new nonce.
//!
//! States: `pending` → `signed` → `mined` → `confirmed` or `reverted`;
//! `pending` → `failed` after `max_attempts` failed tries to sign it.

use crate::store::sql::{Sql, SqlError, Val};

use super::adapter::TxIntent;

type Result<T> = std::result::Result<T, SqlError>;

/// One outbox row.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub event_id: i64,
    pub applet: String,
    pub to: String,
    pub value: String,
    pub data: String,
    pub state: String,
    pub nonce: Option<i64>,
    pub hash: Option<String>,
    pub raw: Option<String>,
    pub attempts: i64,
}

const COLUMNS: &str = "id, event_id, applet, to_addr, value, data, state, nonce, hash, raw, attempts";

fn row(r: &[Val]) -> Result<Row> {
    Ok(Row {
        id: r[0].int(0)?,
        event_id: r[1].int(1)?,
        applet: r[2].text(2)?.to_string(),
        to: r[3].text(3)?.to_string(),
        value: r[4].text(4)?.to_string(),
        data: r[5].text(5)?.to_string(),
        state: r[6].text(6)?.to_string(),
        nonce: r[7].opt_int(7)?,
        hash: r[8].opt_text(8)?.map(str::to_string),
        raw: r[9].opt_text(9)?.map(str::to_string),
        attempts: r[10].int(10)?,
    })
}

/// Adds an intent (nothing when `(event, applet, idx)` has one).
pub fn add(c: &dyn Sql, event_id: i64, applet: &str, idx: usize, tx: &TxIntent, at: i64) -> Result<()> {
    c.exec(
        "INSERT INTO _ws_txs (event_id, applet, idx, chain_id, to_addr, value, data, state, attempts, next_at, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, 0, ?8)
         ON CONFLICT (event_id, applet, idx) DO NOTHING",
        &[
            Val::Int(event_id),
            applet.into(),
            Val::Int(idx as i64),
            Val::Int(tx.chain_id as i64),
            tx.to.as_str().into(),
            tx.value.as_str().into(),
            tx.data.as_str().into(),
            Val::Int(at),
        ],
    )?;
    Ok(())
}

/// Signed transactions of `chain` not yet confirmed, by nonce.
pub fn in_flight(c: &dyn Sql, chain: u64) -> Result<Vec<Row>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM _ws_txs WHERE chain_id = ?1 AND state IN ('signed', 'mined') ORDER BY nonce"
    );
    c.rows(&sql, &[Val::Int(chain as i64)])?
        .iter()
        .map(|r| row(r))
        .collect()
}

/// Pending intents of `chain` due by `now`, oldest first.
pub fn due(c: &dyn Sql, chain: u64, now: i64, limit: i64) -> Result<Vec<Row>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM _ws_txs WHERE chain_id = ?1 AND state = 'pending' AND next_at <= ?2
         ORDER BY id LIMIT ?3"
    );
    c.rows(&sql, &[Val::Int(chain as i64), Val::Int(now), Val::Int(limit)])?
        .iter()
        .map(|r| row(r))
        .collect()
}

/// How many intents of `chain` are not yet confirmed (or given up).
pub fn open_count(c: &dyn Sql, chain: u64) -> Result<u64> {
    c.row(
        "SELECT COUNT(*) FROM _ws_txs WHERE chain_id = ?1 AND state IN ('pending', 'signed', 'mined')",
        &[Val::Int(chain as i64)],
    )?
    .map_or(Ok(0), |r| r[0].count(0))
}

/// The row is signed: its nonce, hash and raw bytes, before any broadcast.
pub fn signed(c: &dyn Sql, id: i64, nonce: u64, hash: &str, raw: &str) -> Result<()> {
    c.exec(
        "UPDATE _ws_txs SET state = 'signed', nonce = ?2, hash = ?3, raw = ?4, error = NULL WHERE id = ?1",
        &[Val::Int(id), Val::Int(nonce as i64), hash.into(), raw.into()],
    )?;
    Ok(())
}

/// The row's state after a receipt (`mined`, `confirmed`, `reverted`), or
/// `signed` again when its block left the chain.
pub fn settle(c: &dyn Sql, id: i64, state: &str, block: Option<u64>) -> Result<()> {
    c.exec(
        "UPDATE _ws_txs SET state = ?2, block = ?3 WHERE id = ?1",
        &[Val::Int(id), state.into(), block.map(|b| b as i64).into()],
    )?;
    Ok(())
}

/// Back to `pending` (its nonce was used by another transaction).
pub fn unsign(c: &dyn Sql, id: i64, why: &str) -> Result<()> {
    c.exec(
        "UPDATE _ws_txs SET state = 'pending', nonce = NULL, hash = NULL, raw = NULL, block = NULL, error = ?2
         WHERE id = ?1",
        &[Val::Int(id), why.into()],
    )?;
    Ok(())
}

/// A failed try: the next one after `next_at`, or given up (`failed`).
pub fn retry(c: &dyn Sql, id: i64, attempts: i64, next_at: i64, error: &str, give_up: bool) -> Result<()> {
    c.exec(
        "UPDATE _ws_txs SET attempts = ?2, next_at = ?3, error = ?4, state = ?5 WHERE id = ?1",
        &[
            Val::Int(id),
            Val::Int(attempts),
            Val::Int(next_at),
            error.into(),
            if give_up { "failed" } else { "pending" }.into(),
        ],
    )?;
    Ok(())
}

/// A broadcast that did not take: counted and said, the row stays `signed`.
pub fn note(c: &dyn Sql, id: i64, error: &str) -> Result<()> {
    c.exec(
        "UPDATE _ws_txs SET attempts = attempts + 1, error = ?2 WHERE id = ?1",
        &[Val::Int(id), error.into()],
    )?;
    Ok(())
}

/// The newest `limit` rows as the API shows them (`GET /v1/projects/P/txs`).
pub const RECENT: (&str, &[&str]) = (
    "SELECT * FROM (SELECT id, event_id, applet, idx, chain_id, to_addr, value, data, state, nonce, hash,
                           block, attempts, error, at
                    FROM _ws_txs ORDER BY id DESC LIMIT ?1) AS t ORDER BY id",
    &[
        "id", "event_id", "applet", "idx", "chain_id", "to", "value", "data", "state", "nonce", "hash",
        "block", "attempts", "error", "at",
    ],
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applets::db::ProjectDb;

    fn intent(n: u8) -> TxIntent {
        TxIntent {
            chain_id: 1337,
            to: format!("0x{}", "ab".repeat(20)),
            value: n.to_string(),
            data: "0x40c10f19".into(),
        }
    }

    #[test]
    fn an_intent_is_kept_once_and_moves_through_its_states() {
        let db = ProjectDb::open(None, std::time::Duration::from_millis(100)).unwrap();
        let c = db.conn();
        add(c, 7, "mint", 0, &intent(1), 100).unwrap();
        // The same (event, applet, index) again, as a second run would: nothing.
        add(c, 7, "mint", 0, &intent(9), 101).unwrap();
        add(c, 7, "mint", 1, &intent(2), 100).unwrap();
        add(c, 8, "mint", 0, &intent(3), 100).unwrap();
        // Another chain's intent is not this chain's.
        add(
            c,
            8,
            "mint",
            1,
            &TxIntent {
                chain_id: 5,
                ..intent(4)
            },
            100,
        )
        .unwrap();
        let due = due(c, 1337, 100, 10).unwrap();
        let values: Vec<&str> = due.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(values, ["1", "2", "3"]);
        assert_eq!(open_count(c, 1337).unwrap(), 3);

        // Backoff hides an intent until it is due; giving up ends it.
        retry(c, due[0].id, 1, 200, "node down", false).unwrap();
        assert_eq!(super::due(c, 1337, 150, 10).unwrap().len(), 2);
        assert_eq!(super::due(c, 1337, 200, 10).unwrap()[0].attempts, 1);
        retry(c, due[2].id, 20, 0, "reverts", true).unwrap();
        assert_eq!(open_count(c, 1337).unwrap(), 2);

        // Signed, in flight by nonce; a nonce used elsewhere sends it back.
        signed(c, due[1].id, 4, "0xbb", "0x02").unwrap();
        signed(c, due[0].id, 3, "0xaa", "0x01").unwrap();
        let flying = in_flight(c, 1337).unwrap();
        assert_eq!(
            flying
                .iter()
                .map(|r| (r.nonce, r.hash.as_deref()))
                .collect::<Vec<_>>(),
            [(Some(3), Some("0xaa")), (Some(4), Some("0xbb"))]
        );
        assert!(super::due(c, 1337, 1000, 10).unwrap().is_empty());
        unsign(c, due[0].id, "nonce 3 used").unwrap();
        let back = super::due(c, 1337, 1000, 10).unwrap();
        assert_eq!(
            (back.len(), back[0].nonce, back[0].raw.as_deref()),
            (1, None, None)
        );
        // A refused broadcast is counted and said on the row, which stays signed.
        note(c, due[1].id, "refused: underpriced").unwrap();
        let flying = in_flight(c, 1337).unwrap();
        assert_eq!((flying[0].attempts, flying[0].state.as_str()), (1, "signed"));
        let error: String = c
            .query_row("SELECT error FROM _ws_txs WHERE id = ?1", [due[1].id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(error, "refused: underpriced");
        settle(c, due[1].id, "confirmed", Some(12)).unwrap();
        assert!(in_flight(c, 1337).unwrap().is_empty());
        assert_eq!(open_count(c, 1337).unwrap(), 1);
    }
}
