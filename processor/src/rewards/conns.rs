//! Where the ledger's rows are, on either engine: the connection that writes
//! them (one at a time in this process, and on SQLite the store's writing
//! connection when the store is in this process; across processes, SQLite's
//! write lock or PostgreSQL's advisory lock [`super::LEDGER_LOCK`] takes over) and the
//! connections that answer the rewards queries (each meter polls every
//! minute), opened once, not per request.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::Connection;

use crate::store::OtherWriters;
use crate::store::sql::{PgSql, Sql, SqlError};
use crate::store::turns::{TurnOf, Turns};

/// Connections for rewards queries on SQLite.
const READERS: usize = 4;

pub(crate) fn conn(path: &Path) -> rusqlite::Result<Connection> {
    let mut c = Connection::open(path)?;
    crate::store::wait_for_locks(&mut c)?;
    Ok(c)
}

/// The ledger's or retention's own connection to the store: with `store`
/// (the ingest writer in this process) it mostly reads, their writes going
/// to the store's writing connection in their turns, and any commit of its
/// own asks the store's checkpoint thread instead of checkpointing inline;
/// without, it writes (an offline tool).
pub(crate) fn writing_conn(path: &Path, store: Option<&OtherWriters>) -> rusqlite::Result<Connection> {
    let mut c = conn(path)?;
    if let Some(s) = store {
        s.checkpoints.hook(&mut c)?;
    }
    Ok(c)
}

pub enum Conns {
    Sqlite {
        book: Mutex<Connection>,
        /// The ingest writer's turns at the write lock, when in its process.
        turns: Option<std::sync::Arc<Turns>>,
        readers: Vec<Mutex<Connection>>,
        next_reader: AtomicUsize,
    },
    Postgres {
        pool: deadpool_postgres::Pool,
        rt: tokio::runtime::Handle,
        /// Keeps this process's accrual and sealing from interleaving
        /// before they reach the advisory lock.
        book: Mutex<()>,
    },
}

impl Conns {
    /// `store`: the ingest writer in this process, whose checkpoint thread
    /// the writing connection's commits then ask instead of checkpointing
    /// inline, and with which it takes turns at the write lock.
    pub fn sqlite(db_path: &Path, store: Option<&OtherWriters>) -> rusqlite::Result<Self> {
        Ok(Conns::Sqlite {
            book: Mutex::new(writing_conn(db_path, store)?),
            turns: store.map(|s| s.turns.clone()),
            readers: (0..READERS)
                .map(|_| conn(db_path).map(Mutex::new))
                .collect::<rusqlite::Result<_>>()?,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub fn postgres(pool: deadpool_postgres::Pool, rt: tokio::runtime::Handle) -> Self {
        Conns::Postgres {
            pool,
            rt,
            book: Mutex::new(()),
        }
    }

    /// Runs `f` on the connection that writes the ledger (this process's
    /// writers take turns: on SQLite with the ingest writer too, one
    /// transaction's worth of `f` each, so `f` must not wait for the writer).
    pub fn book<T, E: From<SqlError>>(&self, f: impl FnOnce(&dyn Sql) -> Result<T, E>) -> Result<T, E> {
        self.book_in_two(|_| Ok(()), |c, ()| f(c))
    }

    /// Runs `prepare` on the connection that writes the ledger *before* this
    /// process's turn at the write lock, then `write` with what it returned
    /// during the turn: a page worked out while ingest goes on, and only
    /// written while it waits (on the store's writing connection, lent with
    /// the turn, when the store is in this process). Nothing else of this
    /// process writes the ledger between the two (the ledger's connection,
    /// locked throughout); `write` must check that no other process did.
    pub fn book_in_two<P, T, E: From<SqlError>>(
        &self,
        prepare: impl FnOnce(&dyn Sql) -> Result<P, E>,
        write: impl FnOnce(&dyn Sql, P) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conns::Sqlite { book, turns, .. } => {
                let book = book.lock().expect("ledger lock");
                let prepared = prepare(&*book)?;
                let turn = turns.as_ref().map(|t| t.take(TurnOf::Ledger));
                // In the store's process the page is written on the store's
                // writing connection, whose page cache lasts across turns.
                match turn.as_ref().and_then(|t| t.conn()) {
                    Some(shared) => write(&*shared, prepared),
                    None => write(&*book, prepared),
                }
            }
            Conns::Postgres { pool, rt, book } => {
                let _turn = book.lock().expect("ledger lock");
                on_pg(pool, rt, |c| {
                    let prepared = prepare(c)?;
                    write(c, prepared)
                })
            }
        }
    }

    /// Runs `f` on a reader: a free one, or the next in turn when all are busy.
    pub fn read<T, E: From<SqlError>>(&self, f: impl FnOnce(&dyn Sql) -> Result<T, E>) -> Result<T, E> {
        match self {
            Conns::Sqlite {
                readers, next_reader, ..
            } => {
                for r in readers {
                    if let Ok(c) = r.try_lock() {
                        return f(&*c);
                    }
                }
                let i = next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
                f(&*readers[i].lock().expect("rewards reader lock"))
            }
            Conns::Postgres { pool, rt, .. } => on_pg(pool, rt, f),
        }
    }
}

/// `f` on a pooled connection; one the server has closed is dropped rather
/// than returned to the pool (the next call gets a fresh one).
fn on_pg<T, E: From<SqlError>>(
    pool: &deadpool_postgres::Pool,
    rt: &tokio::runtime::Handle,
    f: impl FnOnce(&dyn Sql) -> Result<T, E>,
) -> Result<T, E> {
    let c = PgSql::get(pool, rt)?;
    let out = f(&c);
    if out.is_err() {
        // Whether it was lost is known only to the driver: ask it.
        c.discard_if_closed();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Ingest keeps its turns while a page is worked out; only the page's
    /// write waits for one, and gives it back.
    #[test]
    fn a_page_is_prepared_outside_the_turn_and_written_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::db_path(dir.path());
        crate::store::migrate(&mut Connection::open(&path).unwrap()).unwrap();
        let checkpoints = crate::store::checkpoint::Checkpointer::start(
            &path,
            "test-checkpoint",
            None,
            crate::store::checkpoint::RESTART_BYTES,
        )
        .unwrap();
        let others = OtherWriters {
            checkpoints: checkpoints.hooks(),
            turns: Arc::new(Turns::default()),
        };
        let conns = Conns::sqlite(&path, Some(&others)).unwrap();
        let turns = |_: &dyn Sql| Ok::<_, SqlError>(others.turns.waiting());
        let (preparing, writing) = conns
            .book_in_two(turns, |c, preparing| Ok::<_, SqlError>((preparing, turns(c)?)))
            .unwrap();
        assert_eq!((preparing, writing), (0, 1));
        assert_eq!(others.turns.waiting(), 0, "the turn ends with the write");
    }

    /// When every reader is busy, each query queues on the next reader in
    /// turn, not all on one: freeing one reader lets through the query that
    /// queued on it while the others wait for theirs.
    #[test]
    fn with_every_reader_busy_queries_queue_on_the_readers_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::db_path(dir.path());
        crate::store::migrate(&mut Connection::open(&path).unwrap()).unwrap();
        let conns = Conns::sqlite(&path, None).unwrap();
        let Conns::Sqlite {
            readers, next_reader, ..
        } = &conns
        else {
            unreachable!("a SQLite store")
        };
        let mut busy: Vec<_> = readers.iter().map(|r| Some(r.lock().unwrap())).collect();
        let (ran, order) = std::sync::mpsc::channel();
        let wait = std::time::Duration::from_secs(10);
        let (second, first_waits, first) = std::thread::scope(|s| {
            for query in 0..2 {
                let (ran, conns) = (ran.clone(), &conns);
                s.spawn(move || {
                    conns.read(|_| {
                        ran.send(query).unwrap();
                        Ok::<_, SqlError>(())
                    })
                });
                // The next query asks only once this one has queued.
                while next_reader.load(Ordering::Relaxed) < query + 1 {
                    std::thread::yield_now();
                }
            }
            busy[1] = None;
            let second = order.recv_timeout(wait);
            let first_waits = order.try_recv().is_err();
            // Every reader free, whatever happened: the scope ends.
            busy.clear();
            (second, first_waits, order.recv_timeout(wait))
        });
        assert_eq!(second, Ok(1), "the second query queued on the second reader");
        assert!(first_waits, "the first still waited for the first reader");
        assert_eq!(first, Ok(0));
    }
}
