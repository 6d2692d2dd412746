//! Where project definitions are kept: deployed applets (module, strategy,
//! limits, place in the chain), environments and publisher tokens. In the
//! main store, on either engine, with the same statements; on PostgreSQL
//! every change also notifies the other processors (`project:NAME` on the
//! registry channel, `store::pg::notify`), which reload the project.

use std::collections::HashMap;
use std::path::PathBuf;

use super::lease::PgWork;
use super::projects::ProjectError;
use crate::store::sql::{PgSql, Sql, Tx, Val};

/// The store holding the definitions.
#[derive(Clone)]
pub enum Definitions {
    /// The SQLite main store file.
    Sqlite(PathBuf),
    Postgres(PgWork),
}

/// A stored applet: name, hash, module, event type, handler, limits (JSON), gate.
pub type AppletRow = (String, String, Vec<u8>, String, String, String, bool);

/// One applet's definition to store.
pub struct NewApplet<'a> {
    pub name: &'a str,
    pub hash: &'a str,
    pub wasm: &'a [u8],
    pub event_type: &'a str,
    pub handler: &'a str,
    pub limits: String,
    pub gate: bool,
}

impl Definitions {
    /// Runs `f` on a connection to the store.
    pub fn with<T>(&self, f: impl FnOnce(&dyn Sql) -> Result<T, ProjectError>) -> Result<T, ProjectError> {
        match self {
            Definitions::Sqlite(path) => {
                let c = rusqlite::Connection::open(path)?;
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                f(&c)
            }
            Definitions::Postgres(w) => f(&PgSql::get(&w.pool, &w.rt)?),
        }
    }

    /// Every project with applets or an environment.
    pub fn names(&self) -> Result<Vec<String>, ProjectError> {
        self.with(|c| {
            c.rows(
                "SELECT DISTINCT project FROM applets UNION SELECT DISTINCT project FROM project_env",
                &[],
            )?
            .iter()
            .map(|r| Ok(r[0].text(0)?.to_string()))
            .collect()
        })
    }

    /// Stores `a` (replacing an applet of the same name) and the chain's
    /// order, `chain` being every applet's name in order.
    pub fn deploy(&self, project: &str, a: &NewApplet<'_>, chain: &[String]) -> Result<(), ProjectError> {
        self.change(project, |tx| {
            tx.exec(
                "INSERT INTO applets (project, name, hash, wasm, event_type, handler, limits, position, created_at, gate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9)
                 ON CONFLICT(project, name) DO UPDATE SET hash = excluded.hash, wasm = excluded.wasm,
                   event_type = excluded.event_type, handler = excluded.handler, limits = excluded.limits,
                   gate = excluded.gate",
                &[
                    project.into(),
                    a.name.into(),
                    a.hash.into(),
                    a.wasm.into(),
                    a.event_type.into(),
                    a.handler.into(),
                    a.limits.as_str().into(),
                    Val::Int(now()),
                    Val::Int(a.gate.into()),
                ],
            )?;
            for (i, name) in chain.iter().enumerate() {
                tx.exec(
                    "UPDATE applets SET position = ?1 WHERE project = ?2 AND name = ?3",
                    &[Val::Int(i as i64 + 1), project.into(), name.as_str().into()],
                )?;
            }
            Ok(true)
        })
        .map(|_| ())
    }

    /// Removes an applet; false when there was none.
    pub fn remove(&self, project: &str, name: &str) -> Result<bool, ProjectError> {
        self.change(project, |tx| {
            let n = tx.exec(
                "DELETE FROM applets WHERE project = ?1 AND name = ?2",
                &[project.into(), name.into()],
            )?;
            Ok(n > 0)
        })
    }

    /// Sets (or with `None`, removes) environment variables.
    pub fn set_env(&self, project: &str, vars: &HashMap<String, Option<String>>) -> Result<(), ProjectError> {
        self.change(project, |tx| {
            for (k, v) in vars {
                match v {
                    Some(v) => tx.exec(
                        "INSERT INTO project_env (project, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(project, key) DO UPDATE SET value = excluded.value",
                        &[project.into(), k.as_str().into(), v.as_str().into()],
                    )?,
                    None => tx.exec(
                        "DELETE FROM project_env WHERE project = ?1 AND key = ?2",
                        &[project.into(), k.as_str().into()],
                    )?,
                };
            }
            Ok(true)
        })
        .map(|_| ())
    }

    /// A change in one transaction; when `f` says something changed, the
    /// other processors on PostgreSQL hear of it at commit.
    fn change(
        &self,
        project: &str,
        f: impl FnOnce(&dyn Sql) -> Result<bool, ProjectError>,
    ) -> Result<bool, ProjectError> {
        self.with(|c| {
            let tx = Tx::write(c, DEFINITIONS_LOCK)?;
            let changed = f(&*tx)?;
            if changed && matches!(self, Definitions::Postgres(_)) {
                tx.exec(
                    "SELECT pg_notify(?1, ?2)",
                    &[
                        crate::store::pg::notify::CHANNEL.into(),
                        format!("{}{project}", crate::store::pg::notify::PROJECT_PREFIX).into(),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(changed)
        })
    }

    pub fn add_publisher(&self, project: &str, token_hash: &str) -> Result<(), ProjectError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO publishers (project, token_hash, created_at) VALUES (?1, ?2, ?3)",
                &[project.into(), token_hash.into(), Val::Int(now())],
            )?;
            Ok(())
        })
    }

    pub fn publisher(&self, project: &str, token_hash: &str) -> Result<bool, ProjectError> {
        self.with(|c| {
            Ok(c.row(
                "SELECT 1 FROM publishers WHERE project = ?1 AND token_hash = ?2",
                &[project.into(), token_hash.into()],
            )?
            .is_some())
        })
    }
}

/// Serializes definition changes across processors (the chain's positions
/// are rewritten as a whole); applet batches hold it shared, so a chain does
/// not change under a batch (`applets::lease`).
pub const DEFINITIONS_LOCK: i64 = 0x5761_7474_5374_0004;

fn now() -> i64 {
    wattstream_sdk::time::unix_now() as i64
}

/// A project's stored applets, in chain order.
pub fn applet_rows(c: &dyn Sql, project: &str) -> Result<Vec<AppletRow>, ProjectError> {
    c.rows(
        "SELECT name, hash, wasm, event_type, handler, limits, gate FROM applets WHERE project = ?1 ORDER BY position",
        &[project.into()],
    )?
    .into_iter()
    .map(|r| {
        let wasm = match &r[2] {
            Val::Blob(b) => b.clone(),
            _ => return Err(ProjectError::Invalid("a stored applet module is not bytes".into())),
        };
        Ok((
            r[0].text(0)?.to_string(),
            r[1].text(1)?.to_string(),
            wasm,
            r[3].text(3)?.to_string(),
            r[4].text(4)?.to_string(),
            r[5].text(5)?.to_string(),
            r[6].int(6)? != 0,
        ))
    })
    .collect()
}

/// A project's environment variables as stored.
pub fn env(c: &dyn Sql, project: &str) -> Result<HashMap<String, String>, ProjectError> {
    c.rows(
        "SELECT key, value FROM project_env WHERE project = ?1",
        &[project.into()],
    )?
    .iter()
    .map(|r| Ok((r[0].text(0)?.to_string(), r[1].text(1)?.to_string())))
    .collect()
}
