//! The durable outbox: every signed window is committed to a small SQLite
//! database (WAL, `synchronous=FULL`) before anything tries to send it, together
//! with the next `seq`, in one transaction. So a power cut at any moment loses no
//! finished window, never reuses a `seq`, and a window resent after a crash is
//! the same bytes as before.
//!
//! The first `seq` of a new outbox is the current Unix time in seconds. A meter
//! makes at most one window per second, so even if its data directory is lost
//! and recreated, the new numbers start above every number it used before and
//! the processor does not mistake new readings for duplicates.
//!
//! Entries the processor rejects go to `dead-letter.jsonl` beside the database,
//! one JSON line each with the reason, and leave the outbox; that file is
//! bounded too (`deadletter.rs`). The outbox is bounded: past `max_entries`
//! the oldest are dropped and counted.

use std::path::{Path, PathBuf};

use crate::deadletter::DeadLetterFile;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use wattstream_sdk::{DeviceKey, Reading};

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One stored envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub body: String,
}

/// A line of the dead-letter file.
#[derive(Debug, Serialize)]
struct DeadLetter<'a> {
    seq: u64,
    reason: &'a str,
    detail: &'a str,
    at: u64,
    body: &'a str,
}

/// The outbox in a data directory.
pub struct Outbox {
    conn: Connection,
    dead_letter: DeadLetterFile,
    max_entries: u64,
}

use wattstream_sdk::time::unix_now as now_s;

impl Outbox {
    /// Opens (or creates) `outbox.db` in `dir`.
    pub fn open(dir: &Path, max_entries: u64) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(dir.join("outbox.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A meter has little memory: keep SQLite's page cache small.
        conn.pragma_update(None, "cache_size", -256)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?1), ('dropped', 0), ('dead_lettered', 0)",
            params![now_s() as i64],
        )?;
        Ok(Outbox {
            conn,
            dead_letter: DeadLetterFile::new(dir, crate::deadletter::DEFAULT_MAX_BYTES),
            max_entries: max_entries.max(1),
        })
    }

    /// Sets the size of one dead-letter file (two are kept).
    pub fn with_dead_letter_limit(mut self, max_bytes: u64) -> Self {
        self.dead_letter.max_bytes = max_bytes.max(1);
        self
    }

    fn meta(&self, key: &str) -> Result<u64, OutboxError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64)
    }

    /// The `seq` the next window will get.
    pub fn next_seq(&self) -> Result<u64, OutboxError> {
        self.meta("next_seq")
    }

    /// Entries dropped because the outbox was full.
    pub fn dropped(&self) -> Result<u64, OutboxError> {
        self.meta("dropped")
    }

    /// Entries moved to the dead-letter file.
    pub fn dead_lettered(&self) -> Result<u64, OutboxError> {
        self.meta("dead_lettered")
    }

    /// Entries the processor refused as `conflict`: it holds another reading
    /// signed by this key for the same `seq`. A meter never does that itself,
    /// so it means the key is used elsewhere, or the outbox was restored from
    /// an old copy: an alarm, never "delivered".
    pub fn conflicts(&self) -> Result<u64, OutboxError> {
        self.meta("conflicts")
    }

    /// Gives `reading` the next `seq`, signs it and stores it, in one transaction.
    /// Returns the stored entry.
    pub fn append(&mut self, key: &DeviceKey, mut reading: Reading) -> Result<Entry, OutboxError> {
        let tx = self.conn.transaction()?;
        let seq: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| r.get(0))?;
        reading.seq = Some(seq as u64);
        let body = key.sign_reading(&reading);
        tx.execute(
            "INSERT INTO outbox (seq, body, created_at) VALUES (?1, ?2, ?3)",
            params![seq, body, now_s() as i64],
        )?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'next_seq'",
            params![seq + 1],
        )?;
        let depth: i64 = tx.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
        let excess = depth - self.max_entries as i64;
        if excess > 0 {
            tx.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?1)",
                params![excess],
            )?;
            tx.execute(
                "UPDATE meta SET value = value + ?1 WHERE key = 'dropped'",
                params![excess],
            )?;
            tracing::warn!(dropped = excess, "outbox full: dropped the oldest windows");
        }
        tx.commit()?;
        Ok(Entry {
            seq: seq as u64,
            body,
        })
    }

    /// The oldest `n` entries, in `seq` order.
    pub fn peek(&self, n: usize) -> Result<Vec<Entry>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, body FROM outbox ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map(params![n as i64], |r| {
            Ok(Entry {
                seq: r.get::<_, i64>(0)? as u64,
                body: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes delivered entries.
    pub fn remove(&mut self, seqs: &[u64]) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for s in seqs {
                stmt.execute(params![*s as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends the entry to the dead-letter file (fsynced), then removes it.
    pub fn dead_letter(&mut self, entry: &Entry, reason: &str, detail: &str) -> Result<(), OutboxError> {
        let line = serde_json::to_string(&DeadLetter {
            seq: entry.seq,
            reason,
            detail,
            at: now_s(),
            body: &entry.body,
        })
        .expect("serialisable");
        let rotated = self.dead_letter.append(&line).map_err(|source| OutboxError::Io {
            path: self.dead_letter.path.clone(),
            source,
        })?;
        if rotated {
            tracing::warn!(
                older = %self.dead_letter.rotated().display(),
                "the dead-letter file is full: it replaced the older one"
            );
        }
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM outbox WHERE seq = ?1", params![entry.seq as i64])?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'dead_lettered'",
            [],
        )?;
        if reason == "conflict" {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('conflicts', 1)
                 ON CONFLICT(key) DO UPDATE SET value = value + 1",
                [],
            )?;
        }
        tx.commit()?;
        if reason == "conflict" {
            tracing::error!(
                seq = entry.seq,
                detail,
                "the processor holds another reading signed by this meter's key for this seq: \
                 is the key used on another device, or was the outbox restored from a copy?"
            );
        } else {
            tracing::warn!(
                seq = entry.seq,
                reason,
                detail,
                "window rejected by the processor: moved to the dead-letter file"
            );
        }
        Ok(())
    }

    /// Puts every dead letter back in the outbox (with its original `seq` and
    /// signed bytes, so the processor deduplicates it if it ever got it) and
    /// moves the dead-letter files aside as `dead-letter.resent-UNIXTIME.jsonl`.
    /// Lines that do not parse stay in a fresh dead-letter file. Returns how
    /// many entries went back.
    pub fn resend_dead_letters(&mut self) -> Result<usize, OutboxError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutboxError::Io { path, source }
        };
        let path = self.dead_letter.path.clone();
        let text = self.dead_letter.read_all().map_err(io(&path))?;
        if text.is_empty() {
            return Ok(0);
        }
        #[derive(serde::Deserialize)]
        struct Line {
            seq: u64,
            body: String,
        }
        let (mut back, mut bad) = (Vec::new(), Vec::new());
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Line>(l) {
                Ok(line) => back.push(line),
                Err(_) => bad.push(l),
            }
        }
        let aside = path.with_file_name(format!("dead-letter.resent-{}.jsonl", now_s()));
        std::fs::write(&aside, &text).map_err(io(&aside))?;
        self.dead_letter.clear().map_err(io(&path))?;
        if !bad.is_empty() {
            std::fs::write(&path, bad.join("\n") + "\n").map_err(io(&path))?;
        }
        let tx = self.conn.transaction()?;
        for line in &back {
            tx.execute(
                "INSERT OR IGNORE INTO outbox (seq, body, created_at) VALUES (?1, ?2, ?3)",
                params![line.seq as i64, line.body, now_s() as i64],
            )?;
        }
        tx.commit()?;
        tracing::info!(resent = back.len(), kept = bad.len(), aside = %aside.display(), "dead letters back in the outbox");
        Ok(back.len())
    }

    /// How many entries wait to be sent.
    pub fn depth(&self) -> Result<u64, OutboxError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattstream_sdk::{Envelope, VerifyPath};

    #[test]
    fn seq_survives_reopening_and_never_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::generate();
        let first = {
            let mut o = Outbox::open(dir.path(), 100).unwrap();
            let a = o.append(&key, Reading::new(1.0, 10)).unwrap();
            let b = o.append(&key, Reading::new(1.0, 15)).unwrap();
            assert_eq!(b.seq, a.seq + 1);
            o.remove(&[a.seq, b.seq]).unwrap();
            a.seq
        };
        assert!(first >= 1_700_000_000, "starts at the Unix time");
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        let c = o.append(&key, Reading::new(1.0, 20)).unwrap();
        assert_eq!(c.seq, first + 2);
        let env = Envelope::parse(c.body.as_bytes()).unwrap();
        env.verify(VerifyPath::Reference).unwrap();
        assert_eq!(env.reading().seq, Some(c.seq));
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::generate();
        let mut o = Outbox::open(dir.path(), 3).unwrap();
        let seqs: Vec<u64> = (0..5)
            .map(|i| o.append(&key, Reading::new(1.0, i)).unwrap().seq)
            .collect();
        assert_eq!(o.depth().unwrap(), 3);
        assert_eq!(o.dropped().unwrap(), 2);
        assert_eq!(
            o.peek(10).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(),
            seqs[2..]
        );
    }

    #[test]
    fn dead_letters_from_both_files_go_back_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100)
            .unwrap()
            .with_dead_letter_limit(1000);
        let key = DeviceKey::generate();
        let entries: Vec<Entry> = (0..6)
            .map(|i| o.append(&key, Reading::new(1.0, 1_795_515_000 + i)).unwrap())
            .collect();
        for e in &entries {
            o.dead_letter(e, "revoked_device", "").unwrap();
        }
        assert!(
            dir.path().join("dead-letter.1.jsonl").exists(),
            "the file rotated"
        );
        assert_eq!(o.depth().unwrap(), 0);
        let back = o.resend_dead_letters().unwrap();
        assert!((2..6).contains(&back), "only what the two files hold: {back}");
        let seqs: Vec<u64> = o.peek(10).unwrap().iter().map(|e| e.seq).collect();
        let newest: Vec<u64> = entries[6 - back..].iter().map(|e| e.seq).collect();
        assert_eq!(seqs, newest, "the newest ones, in order");
        assert!(
            !dir.path().join("dead-letter.1.jsonl").exists()
                && !dir.path().join("dead-letter.jsonl").exists()
        );
    }

    #[test]
    fn dead_letters_go_back_to_the_outbox_with_their_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::generate();
        let mut o = Outbox::open(dir.path(), 10).unwrap();
        let a = o.append(&key, Reading::new(1.0, 1_795_515_000)).unwrap();
        let b = o.append(&key, Reading::new(2.0, 1_795_515_005)).unwrap();
        o.dead_letter(&a, "future_timestamp", "clock").unwrap();
        o.dead_letter(&b, "bad_signature", "x").unwrap();
        assert_eq!(o.depth().unwrap(), 0);
        assert_eq!(o.resend_dead_letters().unwrap(), 2);
        assert_eq!(o.peek(10).unwrap(), vec![a, b], "same seq, same signed bytes");
        assert!(!dir.path().join("dead-letter.jsonl").exists());
        assert_eq!(o.resend_dead_letters().unwrap(), 0, "nothing twice");
        assert_eq!(o.depth().unwrap(), 2);
    }

    #[test]
    fn dead_letters_leave_the_outbox_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::generate();
        let mut o = Outbox::open(dir.path(), 10).unwrap();
        let e = o.append(&key, Reading::new(1.0, 1)).unwrap();
        o.dead_letter(&e, "bad_signature", "test").unwrap();
        assert_eq!(o.depth().unwrap(), 0);
        assert_eq!(o.dead_lettered().unwrap(), 1);
        assert_eq!(o.conflicts().unwrap(), 0);
        let c = o
            .append(&DeviceKey::generate(), Reading::new(1.0, 1_795_515_000))
            .unwrap();
        o.dead_letter(&c, "conflict", "another reading for this seq")
            .unwrap();
        assert_eq!((o.dead_lettered().unwrap(), o.conflicts().unwrap()), (2, 1));
        let text = std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            (lines[0]["reason"].as_str(), &lines[0]["body"]),
            (Some("bad_signature"), &e.body.clone().into())
        );
        assert_eq!(lines[1]["reason"], "conflict");
    }
}
