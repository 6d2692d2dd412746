//! Which store the processor runs on, and the parts that differ by it. Every
//! other part of the server takes what this opens and does not ask which
//! engine it is.
//!
//! - **SQLite** (`data_dir`, the default): one writer thread, project files,
//!   one applet worker with a cursor, the ledger reading project credits.
//! - **PostgreSQL** (`store.url`): the writer task, project definitions and
//!   schemas in the database, the leasing applet worker, the ledger taking
//!   the credits queue under its advisory lock, and a listener that applies
//!   other processors' registry and project changes here.

use std::sync::Arc;

use crate::applets::definitions::Definitions;
use crate::applets::lease::PgWork;
use crate::applets::projects::Projects;
use crate::applets::worker::Stream;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::onboarding::Onboarding;
use crate::registry::Registry;
use crate::rewards::{Conns, Rewards};
use crate::store::{self, Reads, Writer};

/// How the store writer ends.
pub enum WriterDone {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl WriterDone {
    /// Waits for the writer to drain and exit.
    pub async fn wait(self) -> anyhow::Result<()> {
        match self {
            WriterDone::Thread(t) => tokio::task::spawn_blocking(move || t.join())
                .await?
                .map_err(|_| anyhow::anyhow!("store writer panicked")),
            WriterDone::Task(t) => Ok(t.await?),
        }
    }
}

/// The store, opened.
pub struct Opened {
    pub writer: Writer,
    pub reads: Reads,
    pub writer_done: WriterDone,
    pub projects: Arc<Projects>,
    pub rewards: Arc<Rewards>,
    /// Device-to-owner bindings (their own connections: a claim never waits
    /// for the ledger's).
    pub onboarding: Arc<Onboarding>,
    pub stream: Stream,
    /// Set on PostgreSQL.
    pub pg: Option<PgWork>,
    /// On SQLite: what the store's other writers in this process (the
    /// ledger, retention) share with the ingest writer.
    pub store_writers: Option<store::OtherWriters>,
}

/// Connections for the blocking parts on PostgreSQL (applet worker, ledger,
/// rewards queries, project definitions).
const PG_BLOCKING_CONNECTIONS: usize = 8;

/// Opens the store `config` names.
pub async fn open(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Opened> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir)?;
    let Some(url) = config.store.url.clone() else {
        let (writer, reads, thread, others) = store::open(&dir, &config.store, metrics)?;
        let db = store::db_path(&dir);
        let projects = {
            let (db, dir) = (db.clone(), dir.clone());
            Arc::new(tokio::task::spawn_blocking(move || Projects::open(&db, &dir)).await??)
        };
        let onboarding = Arc::new(Onboarding::new(
            config.onboarding.clone(),
            config.rewards.epoch_s,
            Arc::new(Conns::sqlite(&db, Some(&others))?),
        )?);
        let cfg = config.rewards.clone();
        let store_writers = Some(others.clone());
        let rewards = {
            let dir = dir.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || Rewards::open(&dir, &db, cfg, Some(&others))).await??,
            )
        };
        let stream = Stream::Sqlite(reads.sqlite().expect("SQLite reads").clone());
        return Ok(Opened {
            writer,
            reads,
            writer_done: WriterDone::Thread(thread),
            projects,
            rewards,
            onboarding,
            stream,
            pg: None,
            store_writers,
        });
    };
    let project = config.applets.default_project.clone();
    let (writer, reads, task) = store::pg::open(&url, &config.store, metrics, Some(project)).await?;
    let work = PgWork {
        pool: store::pg::connect(&url, PG_BLOCKING_CONNECTIONS).await?,
        rt: tokio::runtime::Handle::current(),
    };
    let tokens = crate::read_tokens::ReadTokens::open(&dir)?;
    same_as_the_others(&work, "read-token-secret", &tokens.fingerprint()).await?;
    let projects = {
        let (defs, dir) = (Definitions::Postgres(work.clone()), dir.clone());
        Arc::new(tokio::task::spawn_blocking(move || Projects::open_on(defs, &dir)).await??)
    };
    let rewards = {
        let (w, cfg) = (work.clone(), config.rewards.clone());
        Arc::new(tokio::task::spawn_blocking(move || Rewards::open_postgres(&dir, w.pool, w.rt, cfg)).await??)
    };
    let onboarding = Arc::new(Onboarding::new(
        config.onboarding.clone(),
        config.rewards.epoch_s,
        Arc::new(Conns::postgres(work.pool.clone(), work.rt.clone())),
    )?);
    Ok(Opened {
        onboarding,
        writer,
        reads: Reads::Postgres(reads),
        writer_done: WriterDone::Task(task),
        projects,
        rewards,
        stream: Stream::Postgres(work.clone()),
        pg: Some(work),
        store_writers: None,
    })
}

/// Every processor on one database must hold the same `name` (a device's
/// read token from one must open the others): the first records its
/// fingerprint, the others must match it.
async fn same_as_the_others(work: &PgWork, name: &str, fingerprint: &str) -> anyhow::Result<()> {
    let c = work.pool.get().await?;
    c.execute(
        "INSERT INTO shared_secrets (name, fingerprint) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &fingerprint],
    )
    .await?;
    let theirs: String = c
        .query_one("SELECT fingerprint FROM shared_secrets WHERE name = $1", &[&name])
        .await?
        .get(0);
    anyhow::ensure!(
        theirs == fingerprint,
        "this store's processors hold another {name}: copy {name} from a processor \
         already on this store into the data directory"
    );
    Ok(())
}

/// On PostgreSQL: applies the registry and project changes other processors
/// make (`store::pg::notify`) to this one's registry and projects.
pub fn follow(
    url: String,
    reads: Reads,
    registry: Arc<Registry>,
    projects: Arc<Projects>,
) -> tokio::task::JoinHandle<()> {
    use crate::store::pg::notify::{Change, listen};
    tokio::spawn(async move {
        let mut heard = listen(url, std::time::Duration::from_secs(1));
        while let Some(change) = heard.recv().await {
            let applied = match change {
                Change::Device(id) => match reads.device(&id).await {
                    Ok(Some(row)) => {
                        registry.refresh(&row);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                Change::Resync => match reads.all_devices().await {
                    Ok(rows) => {
                        rows.iter().for_each(|r| registry.refresh(r));
                        reload_all(&projects).await
                    }
                    Err(e) => Err(e.to_string()),
                },
                Change::Project(name) => {
                    let p = projects.clone();
                    match tokio::task::spawn_blocking(move || p.reload(&name)).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            if let Err(e) = applied {
                tracing::error!(error = %e, "applying another processor's change");
            }
        }
    })
}

/// Every project again (after the listener was away: changes may be missed).
async fn reload_all(projects: &Arc<Projects>) -> Result<(), String> {
    let p = projects.clone();
    tokio::task::spawn_blocking(move || p.reload_all())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
