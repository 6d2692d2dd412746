//! Projects on a server: each holds deployed applets (each with one strategy:
//! an event type and a handler, run in deployment order), environment variables,
//! publisher tokens, and its own database file (`DATA_DIR/projects/NAME.db`).
//! Definitions live in the main store so they survive restarts; compiled applets
//! live in memory and in the runtime's on-disk cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::definitions::{self, Definitions, NewApplet};
use super::order::{self, Link, Place};
use super::runtime::{Applet, AppletError, Runtime};
use super::slot::DbSlot;
use super::state::AppletLimits;
use crate::store::sql::{Sql, SqlError};

/// Why a project operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Applet(#[from] AppletError),
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Sql(#[from] SqlError),
    #[error("project database: {0}")]
    Db(#[from] super::db::DbError),
    #[error("{0}")]
    Invalid(String),
    /// The chain order would let a minter pay before a gate.
    #[error("{0}")]
    Order(String),
}

/// A deployed applet.
pub struct Deployed {
    pub name: String,
    pub hash: String,
    pub event_type: String,
    pub handler: String,
    pub limits: AppletLimits,
    /// Decides whether an event may be rewarded: runs before every minter.
    pub gate: bool,
    pub applet: Applet,
}

impl Deployed {
    fn link(&self) -> Link {
        Link {
            name: self.name.clone(),
            event_type: self.event_type.clone(),
            gate: self.gate,
            mints: self.applet.mints,
        }
    }
}

/// What to deploy, and where in the chain.
pub struct Deploy<'a> {
    pub name: &'a str,
    pub wasm: &'a [u8],
    pub event_type: &'a str,
    pub handler: &'a str,
    pub limits: AppletLimits,
    pub place: Place,
    pub gate: bool,
    /// Deploy even where a minter would run before a gate.
    pub force: bool,
}

/// What the API lists about an applet.
#[derive(Debug, Serialize)]
pub struct AppletInfo {
    /// 1 runs first.
    pub position: usize,
    pub name: String,
    pub hash: String,
    pub event_type: String,
    pub handler: String,
    pub handlers: Vec<String>,
    pub limits: AppletLimits,
    pub gate: bool,
    pub mints: bool,
}

/// One project in memory.
pub struct Project {
    pub name: String,
    pub applets: Vec<Deployed>,
    pub env: HashMap<String, String>,
    /// Shared by every version of the project (see [`DbSlot`]).
    pub db: Arc<DbSlot>,
}

impl Project {
    /// The applets that handle `event_type`, in order.
    pub fn chain(&self, event_type: &str) -> impl Iterator<Item = &Deployed> {
        self.applets.iter().filter(move |a| a.event_type == event_type)
    }

    /// The token whose `mint` credits the ledger: the project's
    /// `TOKEN_CONTRACT`, else the built-in ledger token.
    pub fn token(&self) -> String {
        self.env
            .get(wattstream_abi::env::TOKEN_CONTRACT)
            .cloned()
            .unwrap_or_else(|| wattstream_abi::LEDGER_TOKEN.to_string())
    }
}

/// A valid project or applet name: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A project's deployed applets as stored, compiled, in deployment order.
pub fn load_deployed(
    runtime: &Runtime,
    conn: &dyn Sql,
    project: &str,
) -> Result<Vec<Deployed>, ProjectError> {
    definitions::applet_rows(conn, project)?
        .into_iter()
        .map(|(name, hash, wasm, event_type, handler, limits, gate)| {
            Ok(Deployed {
                applet: runtime.compile(&wasm)?,
                name,
                hash,
                event_type,
                handler,
                limits: serde_json::from_str(&limits).unwrap_or_default(),
                gate,
            })
        })
        .collect()
}

/// A project's environment variables as stored.
pub fn load_env(conn: &dyn Sql, project: &str) -> Result<HashMap<String, String>, ProjectError> {
    definitions::env(conn, project)
}

/// All projects, and the runtime that runs their applets.
pub struct Projects {
    pub runtime: Runtime,
    defs: Definitions,
    dir: PathBuf,
    projects: RwLock<HashMap<String, Arc<Project>>>,
    sql_limit: Duration,
}

impl Projects {
    /// Loads every project from the SQLite store at `db_path`; project
    /// databases live in `data_dir/projects`.
    pub fn open(db_path: &Path, data_dir: &Path) -> Result<Self, ProjectError> {
        Self::open_on(Definitions::Sqlite(db_path.to_path_buf()), data_dir)
    }

    /// Loads every project from `defs` (on PostgreSQL, the project databases
    /// are schemas there: `applets::lease`). Call from a blocking thread.
    pub fn open_on(defs: Definitions, data_dir: &Path) -> Result<Self, ProjectError> {
        let runtime = Runtime::new(Some(&data_dir.join("applet-cache")))
            .map_err(|e| ProjectError::Invalid(e.to_string()))?;
        let dir = data_dir.join("projects");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ProjectError::Invalid(format!("{}: {e}", dir.display())))?;
        let projects = Projects {
            runtime,
            defs,
            dir,
            projects: RwLock::default(),
            sql_limit: AppletLimits::default().sql_limit(),
        };
        projects.reload_all()?;
        Ok(projects)
    }

    /// Every stored project again.
    pub fn reload_all(&self) -> Result<(), ProjectError> {
        for name in self.defs.names()? {
            self.reload(&name)?;
        }
        Ok(())
    }

    /// Where compiled modules are cached.
    pub fn runtime_cache_dir(&self) -> PathBuf {
        self.dir.with_file_name("applet-cache")
    }

    /// Where the definitions are kept.
    pub fn definitions(&self) -> &Definitions {
        &self.defs
    }

    /// Runs a read `f` on `project`'s database: its SQLite file, or its
    /// schema on PostgreSQL. Call from a blocking thread.
    pub fn read_project<T>(
        &self,
        project: &Project,
        f: impl FnOnce(&dyn Sql) -> Result<T, SqlError>,
    ) -> Result<T, ProjectError> {
        match &self.defs {
            Definitions::Sqlite(_) => Ok(project.db.read(|db| f(db.conn()))??),
            Definitions::Postgres(w) => Ok(super::lease::in_schema(w, &project.name, f)?),
        }
    }

    /// Runs `f` on `project`'s database in a transaction that writes,
    /// committed when `f` succeeds. Call from a blocking thread.
    pub fn write_project<T>(
        &self,
        project: &Project,
        f: impl FnOnce(&dyn Sql) -> Result<T, SqlError>,
    ) -> Result<T, ProjectError> {
        match &self.defs {
            Definitions::Sqlite(_) => Ok(project.db.read(|db| {
                let tx = crate::store::sql::Tx::write(db.conn(), 0)?;
                let out = f(&*tx)?;
                tx.commit()?;
                Ok::<T, SqlError>(out)
            })??),
            Definitions::Postgres(w) => Ok(super::lease::in_schema_write(w, &project.name, f)?),
        }
    }

    /// Every project's name.
    pub fn names(&self) -> Vec<String> {
        self.projects
            .read()
            .expect("projects lock")
            .keys()
            .cloned()
            .collect()
    }

    /// A project, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Project>> {
        self.projects.read().expect("projects lock").get(name).cloned()
    }

    /// Rebuilds a project from the store (after any change, here or, on
    /// PostgreSQL, by another processor).
    pub fn reload(&self, name: &str) -> Result<(), ProjectError> {
        let (applets, env) = self
            .defs
            .with(|c| Ok((load_deployed(&self.runtime, c, name)?, load_env(c, name)?)))?;
        if let Definitions::Postgres(w) = &self.defs {
            // Its schemas and role, before any call runs in them.
            super::lease::prepare(w, name)?;
        }
        // Keep the project database across reloads: the new version shares the slot.
        // (On PostgreSQL the project's data is in its schemas: the slot is an
        // empty stand-in nothing reads.)
        let file = match &self.defs {
            Definitions::Sqlite(_) => Some(self.dir.join(format!("{name}.db"))),
            Definitions::Postgres(_) => None,
        };
        let db = match self.get(name) {
            Some(p) => p.db.clone(),
            None => Arc::new(DbSlot::open(file, self.sql_limit)?),
        };
        let project = Arc::new(Project {
            name: name.to_string(),
            applets,
            env,
            db,
        });
        self.projects
            .write()
            .expect("projects lock")
            .insert(name.to_string(), project);
        Ok(())
    }

    /// Deploys (or replaces) an applet at its place in the chain; returns
    /// what was deployed. A chain where a minter would run before a gate is
    /// refused unless forced (see [`super::order`]).
    pub fn deploy(&self, project: &str, d: Deploy<'_>) -> Result<AppletInfo, ProjectError> {
        if !valid_name(project) || !valid_name(d.name) {
            return Err(ProjectError::Invalid(
                "project and applet names are 1-64 of [A-Za-z0-9_-]".into(),
            ));
        }
        let limits = d.limits;
        if limits.memory_bytes > super::runtime::MEMORY_CEILING
            || limits.deadline_ms == 0
            || limits.deadline_ms > 10_000
        {
            return Err(ProjectError::Invalid(
                "limits: memory up to 256 MiB, deadline 1..=10000 ms".into(),
            ));
        }
        let applet = self.runtime.compile(d.wasm)?;
        if !applet.handlers.iter().any(|h| h == d.handler) || d.handler == "alloc" {
            return Err(ProjectError::Invalid(format!(
                "the applet has no handler `{}`; it exports {}",
                d.handler,
                applet.handlers.join(", ")
            )));
        }
        let current: Vec<Link> = self
            .get(project)
            .map(|p| p.applets.iter().map(Deployed::link).collect())
            .unwrap_or_default();
        let link = Link {
            name: d.name.to_string(),
            event_type: d.event_type.to_string(),
            gate: d.gate,
            mints: applet.mints,
        };
        let chain = order::place(&current, link, &d.place).map_err(ProjectError::Invalid)?;
        if let Err(e) = order::check(&chain)
            && !d.force
        {
            return Err(ProjectError::Order(e));
        }
        let hash = hex::encode(Sha256::digest(d.wasm));
        let new = NewApplet {
            name: d.name,
            hash: &hash,
            wasm: d.wasm,
            event_type: d.event_type,
            handler: d.handler,
            limits: serde_json::to_string(&limits).expect("limits serialise"),
            gate: d.gate,
        };
        let order: Vec<String> = chain.iter().map(|l| l.name.clone()).collect();
        self.defs.deploy(project, &new, &order)?;
        self.reload(project)?;
        Ok(self
            .list(project)
            .into_iter()
            .find(|a| a.name == d.name)
            .expect("just deployed"))
    }

    /// Removes an applet; `false` when there was none.
    pub fn remove(&self, project: &str, name: &str) -> Result<bool, ProjectError> {
        let removed = self.defs.remove(project, name)?;
        if removed {
            self.reload(project)?;
        }
        Ok(removed)
    }

    /// The applets of a project.
    pub fn list(&self, project: &str) -> Vec<AppletInfo> {
        self.get(project)
            .map(|p| {
                p.applets
                    .iter()
                    .enumerate()
                    .map(|(i, a)| AppletInfo {
                        position: i + 1,
                        gate: a.gate,
                        mints: a.applet.mints,
                        name: a.name.clone(),
                        hash: a.hash.clone(),
                        event_type: a.event_type.clone(),
                        handler: a.handler.clone(),
                        handlers: a.applet.handlers.clone(),
                        limits: a.limits.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets (or with `None`, removes) project environment variables.
    pub fn set_env(&self, project: &str, vars: &HashMap<String, Option<String>>) -> Result<(), ProjectError> {
        if !valid_name(project) {
            return Err(ProjectError::Invalid("bad project name".into()));
        }
        if vars
            .keys()
            .any(|k| wattstream_abi::env::is_reserved(k) || k.is_empty() || k.len() > 256)
        {
            return Err(ProjectError::Invalid(
                "keys starting with WS_ are reserved for the processor".into(),
            ));
        }
        self.defs.set_env(project, vars)?;
        self.reload(project)
    }

    /// Creates a publisher token for the W3bstream-compatible endpoint.
    pub fn new_publisher(&self, project: &str) -> Result<String, ProjectError> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| ProjectError::Invalid(format!("no random source: {e}")))?;
        let token = format!("wsp_{}", hex::encode(bytes));
        self.defs
            .add_publisher(project, &hex::encode(Sha256::digest(token.as_bytes())))?;
        Ok(token)
    }

    /// Whether `token` publishes to `project`.
    pub fn publisher_ok(&self, project: &str, token: &str) -> bool {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        self.defs.publisher(project, &hash).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPLET: &str = r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "start") (param i32) (result i32) i32.const 0))"#;

    #[test]
    fn a_redeploy_keeps_the_database_for_whoever_holds_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        crate::store::migrate(&mut rusqlite::Connection::open(&db).unwrap()).unwrap();
        let projects = Projects::open(&db, dir.path()).unwrap();
        let deploy = |name: &str| {
            let d = Deploy {
                name,
                wasm: APPLET.as_bytes(),
                event_type: "DATA",
                handler: "start",
                limits: AppletLimits::default(),
                place: Place::Keep,
                gate: false,
                force: false,
            };
            projects.deploy("default", d).unwrap()
        };
        deploy("first");
        let held = projects.get("default").unwrap();
        held.db.read(|d| d.kv_set(b"k", b"v").unwrap()).unwrap();
        deploy("second");
        let current = projects.get("default").unwrap();
        assert_eq!(current.applets.len(), 2);
        assert!(
            Arc::ptr_eq(&held.db, &current.db),
            "one database for every version"
        );
        // The worker's stale handle still reaches the database (it used to find it taken).
        assert_eq!(
            held.db.read(|d| d.kv_get(b"k").unwrap()).unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}
