//! Projects and applets over HTTP (admin): deploy, list, remove, environment,
//! publisher tokens, logs and failures; a device's rewards (public). W3bstream's
//! event endpoint is in `w3bstream.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use wattstream_sdk::DeviceId;

use super::{ApiError, AppState, read_body, require_admin};
use crate::applets::definitions::Definitions;
use crate::applets::order::Place;
use crate::applets::projects::{Deploy, Project, ProjectError};
use crate::applets::state::AppletLimits;
use crate::store::sql::Val;

/// Largest applet module.
const WASM_MAX: usize = 16 << 20;

fn project_error(e: ProjectError) -> ApiError {
    match e {
        ProjectError::Applet(e) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_applet", e.to_string()),
        ProjectError::Invalid(e) => ApiError::new(StatusCode::BAD_REQUEST, "malformed", e),
        ProjectError::Order(e) => ApiError::new(StatusCode::CONFLICT, "chain_order", e),
        other => ApiError::store(other),
    }
}

fn task_error(e: tokio::task::JoinError) -> ApiError {
    tracing::error!(error = %e, "request task failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployQuery {
    event_type: Option<String>,
    handler: Option<String>,
    deadline_ms: Option<u64>,
    memory_mb: Option<usize>,
    /// Place it before this applet of the chain.
    before: Option<String>,
    /// Place it after this applet of the chain.
    after: Option<String>,
    /// It decides whether an event may be rewarded: it must run before minters.
    #[serde(default)]
    gate: bool,
    /// Deploy even where a minter would run before a gate.
    #[serde(default)]
    force: bool,
    /// It keeps nothing between events: one instance may serve a batch.
    #[serde(default)]
    stateless: bool,
}

pub async fn deploy(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    query: Result<Query<DeployQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let wasm = read_body(&headers, body, WASM_MAX, state.body_timeout()).await?;
    let defaults = AppletLimits::default();
    let limits = AppletLimits {
        deadline_ms: q.deadline_ms.unwrap_or(defaults.deadline_ms),
        memory_bytes: q
            .memory_mb
            .map_or(defaults.memory_bytes, |m| m.saturating_mul(1 << 20)),
        stateless: q.stateless,
        ..defaults
    };
    let place = match (q.before, q.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "give `before` or `after`, not both",
            ));
        }
        (Some(b), None) => Place::Before(b),
        (None, Some(a)) => Place::After(a),
        (None, None) => Place::Keep,
    };
    let projects = state.projects.clone();
    let info = tokio::task::spawn_blocking(move || {
        let d = Deploy {
            name: &name,
            wasm: &wasm,
            event_type: q.event_type.as_deref().unwrap_or("DATA"),
            handler: q.handler.as_deref().unwrap_or("start"),
            limits,
            place,
            gate: q.gate,
            force: q.force,
        };
        projects.deploy(&project, d)
    })
    .await
    .map_err(task_error)?
    .map_err(project_error)?;
    tracing::info!(applet = %info.name, hash = %info.hash, "applet deployed");
    state.applets.wake();
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(axum::Json(json!({
        "project": project,
        "applets": state.projects.list(&project),
        "stats": state.metrics.applet_stats.of(&project),
    }))
    .into_response())
}

/// `GET /v1/projects` (admin): the projects, and which one `POST /v1/events`
/// runs.
pub async fn names(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(axum::Json(json!({
        "default": state.default_project,
        "projects": state.projects.names(),
    }))
    .into_response())
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let projects = state.projects.clone();
    let (p, n) = (project.clone(), name.clone());
    let found = tokio::task::spawn_blocking(move || projects.remove(&p, &n))
        .await
        .map_err(task_error)?
        .map_err(project_error)?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no applet {name} in {project}"),
        ));
    }
    Ok(axum::Json(json!({"project": project, "applet": name, "status": "removed"})).into_response())
}

pub async fn set_env(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let bytes = read_body(&headers, body, 64 << 10, state.body_timeout()).await?;
    let vars: HashMap<String, Option<String>> = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("expected {{\"KEY\": \"value\" or null}}: {e}"),
        )
    })?;
    let projects = state.projects.clone();
    let p = project.clone();
    tokio::task::spawn_blocking(move || projects.set_env(&p, &vars))
        .await
        .map_err(task_error)?
        .map_err(project_error)?;
    Ok(axum::Json(json!({"project": project, "status": "updated"})).into_response())
}

pub async fn new_publisher(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let projects = state.projects.clone();
    let p = project.clone();
    let token = tokio::task::spawn_blocking(move || projects.new_publisher(&p))
        .await
        .map_err(task_error)?
        .map_err(project_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"project": project, "token": token})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    limit: Option<i64>,
}

fn project_or_404(state: &AppState, name: &str) -> Result<Arc<Project>, ApiError> {
    state
        .projects
        .get(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no project {name}")))
}

/// Rows as JSON objects with the given column names.
fn rows_json(rows: Vec<Vec<Val>>, names: &[&str]) -> Vec<Value> {
    rows.into_iter()
        .map(|r| {
            let obj = names.iter().zip(r).map(|(n, v)| {
                let v = match v {
                    Val::Int(x) => json!(x),
                    Val::Real(x) => json!(x),
                    Val::Text(t) => json!(t),
                    Val::Null | Val::Blob(_) => Value::Null,
                };
                (n.to_string(), v)
            });
            Value::Object(obj.collect())
        })
        .collect()
}

/// The newest `limit` rows of an internal table, as `{"project": P, KEY: [rows]}` (admin).
async fn recent_rows(
    state: &AppState,
    headers: &HeaderMap,
    project: String,
    limit: Option<i64>,
    key: &'static str,
    (sql, names): (&'static str, &'static [&'static str]),
) -> Result<Response, ApiError> {
    require_admin(state, headers)?;
    let p = project_or_404(state, &project)?;
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    let projects = state.projects.clone();
    let rows =
        tokio::task::spawn_blocking(move || projects.read_project(&p, |c| c.rows(sql, &[Val::Int(limit)])))
            .await
            .map_err(task_error)?
            .map_err(ApiError::store)?;
    Ok(axum::Json(json!({ "project": project, key: rows_json(rows, names) })).into_response())
}

pub async fn logs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    let sql = "SELECT * FROM (SELECT id, event_id, applet, level, message, at FROM _ws_logs ORDER BY id DESC LIMIT ?1) AS t ORDER BY id";
    let names = &["id", "event_id", "applet", "level", "message", "at"];
    recent_rows(&state, &headers, project, q.limit, "logs", (sql, names)).await
}

pub async fn failures(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    // Newest first; `at` has one-second steps, so ties keep insertion order
    // (rowid on SQLite, the identity column on PostgreSQL).
    let sql = match state.projects.definitions() {
        Definitions::Sqlite(_) => {
            "SELECT event_id, applet, code, error, at FROM _ws_failures ORDER BY rowid DESC LIMIT ?1"
        }
        Definitions::Postgres(_) => {
            "SELECT event_id, applet, code, error, at FROM _ws_failures ORDER BY id DESC LIMIT ?1"
        }
    };
    let names = &["event_id", "applet", "code", "error", "at"];
    recent_rows(&state, &headers, project, q.limit, "failures", (sql, names)).await
}

/// `GET /v1/projects/{project}/txs`: the transactions applets left for
/// configured chains, newest `limit` (admin): state, nonce, hash, block,
/// tries and the last error.
pub async fn txs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    recent_rows(
        &state,
        &headers,
        project,
        q.limit,
        "txs",
        crate::chain::outbox::RECENT,
    )
    .await
}

/// `GET /v1/devices/{id}/rewards`: balance, rate over the last hour of
/// readings, the latest sealed epoch and this device's proof in it.
pub async fn rewards(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = DeviceId::from_hex(&id)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "malformed", "not a device id"))?;
    // The rate reads the device's entries from the store: off the async runtime.
    let rewards = state.rewards.clone();
    let view = tokio::task::spawn_blocking(move || rewards.answer(&id))
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?;
    Ok(axum::Json(view).into_response())
}

/// `GET /v1/epochs/{n}`: a seal (a store read: off the async runtime).
pub async fn epoch(State(state): State<Arc<AppState>>, Path(epoch): Path<u64>) -> Result<Response, ApiError> {
    let rewards = state.rewards.clone();
    tokio::task::spawn_blocking(move || rewards.seal_view(epoch))
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?
        .map(|v| axum::Json(v).into_response())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("epoch {epoch} is not sealed"),
            )
        })
}

/// `GET /v1/epochs/{n}/proofs/{device}`: a device's proof in a sealed epoch,
/// with the seal (public, as rewards are: a claim on chain carries it).
pub async fn epoch_proof(
    State(state): State<Arc<AppState>>,
    Path((epoch, id)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    let id = DeviceId::from_hex(&id)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "malformed", "not a device id"))?;
    let rewards = state.rewards.clone();
    let (seal, proof) = tokio::task::spawn_blocking(move || rewards.proof_in(epoch, &id))
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("epoch {epoch} is not sealed, or the device has no leaf in it"),
            )
        })?;
    Ok(axum::Json(serde_json::json!({ "seal": seal, "proof": proof })).into_response())
}

/// `GET /v1/ledger/head`: the chain head and the processor key.
pub async fn ledger_head(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let rewards = state.rewards.clone();
    let head = tokio::task::spawn_blocking(move || rewards.head())
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?;
    Ok(axum::Json(head).into_response())
}
