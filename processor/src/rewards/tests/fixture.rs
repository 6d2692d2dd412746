//! A ledger service on either engine for the behaviour tests: SQLite in a
//! temporary data directory with credits in a project database, or a fresh
//! PostgreSQL database with credits in its queue. The tests say what to do;
//! this says how on each engine.

use std::time::Duration;

use rusqlite::Connection;
use wattstream_rewards::{Credit, Tamper};

use crate::applets::slot::DbSlot;
use crate::config::RewardsConfig;
use crate::rewards::{Credits, Rewards, Verified, queue, verify_on};
use crate::store::sql::{PgSql, Sql};

use crate::testdb as pg;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub const T0: i64 = 1_795_515_000;
pub const PROJECT: &str = "default";

pub fn config() -> RewardsConfig {
    RewardsConfig {
        epoch_s: 20,
        ..RewardsConfig::default()
    }
}

pub struct Fixture {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub project: DbSlot,
    pub rt: tokio::runtime::Runtime,
    pub pool: Option<deadpool_postgres::Pool>,
    _db: Option<pg::TestDb>,
}

impl Fixture {
    /// An empty store with its schema, and nothing accrued.
    pub fn new(kind: Kind) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (db, pool) = match kind {
            Kind::Sqlite => {
                let path = crate::store::db_path(dir.path());
                crate::store::migrate(&mut Connection::open(&path).unwrap()).unwrap();
                (None, None)
            }
            Kind::Postgres => {
                let db = rt.block_on(pg::TestDb::create());
                let pool = rt.block_on(crate::store::pg::connect(&db.url, 8)).unwrap();
                (Some(db), Some(pool))
            }
        };
        // A file, as `serve` has it: accrual reads it from a snapshot.
        let project = DbSlot::open(Some(dir.path().join("project.db")), Duration::from_millis(100)).unwrap();
        Fixture {
            kind,
            dir,
            project,
            rt,
            pool,
            _db: db,
        }
    }

    /// A ledger service on the store (a start: checks it first).
    pub fn open(&self) -> anyhow::Result<Rewards> {
        self.open_with(config())
    }

    /// [`Fixture::open`] with another configuration.
    pub fn open_with(&self, config: RewardsConfig) -> anyhow::Result<Rewards> {
        match &self.pool {
            None => Rewards::open(self.dir.path(), &self.db_path(), config, None),
            Some(pool) => {
                Rewards::open_postgres(self.dir.path(), pool.clone(), self.rt.handle().clone(), config)
            }
        }
    }

    fn db_path(&self) -> std::path::PathBuf {
        crate::store::db_path(self.dir.path())
    }

    /// Runs `f` on a connection to the store.
    pub fn with<T>(&self, f: impl FnOnce(&dyn Sql) -> T) -> T {
        match &self.pool {
            None => f(&Connection::open(self.db_path()).unwrap()),
            Some(pool) => f(&PgSql::get(pool, self.rt.handle()).unwrap()),
        }
    }

    /// Runs statements (no parameters) on the store.
    pub fn sql(&self, sql: &str) {
        self.with(|c| c.batch(sql)).unwrap();
    }

    /// `rewards verify` on the store, with the key file beside it.
    pub fn verify(&self) -> anyhow::Result<Result<Verified, Tamper>> {
        self.with(|c| verify_on(c, self.dir.path(), &config(), None))
    }

    /// Accrues what is waiting, from where this engine keeps credits.
    pub fn accrue(&self, rewards: &Rewards) -> anyhow::Result<usize> {
        match self.kind {
            Kind::Sqlite => rewards.accrue(&Credits::Project(&self.project)),
            Kind::Postgres => rewards.accrue(&Credits::Queue(PROJECT)),
        }
    }

    /// `n` credits of 1000 units for each device in `devices`, one every 5 s
    /// from `t0`, with event ids from `first`.
    pub fn add_credits(&self, first: i64, devices: &[u8], n: i64, t0: i64) {
        let mut credits = Vec::new();
        let mut id = first;
        for i in 0..n {
            for d in devices {
                credits.push(credit(id, *d, (t0 + i * 5) as u64));
                id += 1;
            }
        }
        self.put(&credits);
    }

    /// Puts credits where the applet worker would.
    pub fn put(&self, credits: &[Credit]) {
        match self.kind {
            Kind::Sqlite => self
                .project
                .read(|db| {
                    for c in credits {
                        db.conn()
                            .execute(
                                "INSERT INTO _ws_credits (event_id, applet, idx, applet_hash, address, amount, timestamp)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                rusqlite::params![
                                    c.event_id,
                                    c.applet,
                                    c.idx,
                                    c.applet_hash,
                                    format!("0x{}", hex::encode(c.address)),
                                    c.amount.to_string(),
                                    c.timestamp as i64
                                ],
                            )
                            .unwrap();
                    }
                    // The worker moves its cursor in the same transaction.
                    let upto = credits.iter().map(|c| c.event_id).max().unwrap_or(0);
                    db.conn()
                        .execute(
                            "INSERT INTO _ws_cursor (id, last_event_id) VALUES (1, ?1)
                             ON CONFLICT (id) DO UPDATE SET last_event_id = MAX(last_event_id, excluded.last_event_id)",
                            [upto],
                        )
                        .unwrap();
                })
                .unwrap(),
            Kind::Postgres => self.with(|c| {
                // The events the credits are for: the ledger takes credits
                // only for events that exist (`queue::settled`).
                let upto = credits.iter().map(|c| c.event_id).max().unwrap_or(0);
                c.exec(
                    "INSERT INTO events (device_id, timestamp, dedup_key, sensor_reading, data, signature, received_at)
                     SELECT 'd', g, g, 0, '{}', '', 0
                     FROM generate_series((SELECT COALESCE(MAX(id), 0) + 1 FROM events), ?1) AS g",
                    &[crate::store::sql::Val::Int(upto)],
                )
                .unwrap();
                for credit in credits {
                    queue::put(c, PROJECT, 0, credit).unwrap();
                }
            }),
        }
    }

    /// Makes inserts into `table` fail (a full disk), or work again.
    pub fn fail_inserts(&self, table: &str, on: bool) {
        let sql = match (self.kind, on) {
            (Kind::Sqlite, true) => format!(
                "CREATE TRIGGER fail BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            ),
            (Kind::Sqlite, false) => "DROP TRIGGER fail".into(),
            (Kind::Postgres, true) => format!(
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
                 CREATE TRIGGER fail BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail();"
            ),
            (Kind::Postgres, false) => format!("DROP TRIGGER fail ON {table}; DROP FUNCTION fail();"),
        };
        self.sql(&sql);
    }
}

/// A credit of 1000 units for device `[d; 20]` by event `event_id`.
pub fn credit(event_id: i64, d: u8, timestamp: u64) -> Credit {
    Credit {
        event_id,
        applet: "tiered".into(),
        applet_hash: "h".into(),
        idx: 0,
        address: [d; 20],
        amount: 1000,
        timestamp,
    }
}
