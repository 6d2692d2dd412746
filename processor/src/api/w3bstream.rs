//! W3bstream v1's event entry, for publishers that speak W3bstream: over HTTP
//! `POST /srv-applet-mgr/v0/event/{project}?eventType=..` with the publisher
//! token as bearer, and over MQTT (`crate::mqtt`) on the project's topic. Both
//! check the publisher token and run the raw payload through the project's
//! applets for that event type at once; nothing is stored (W3bstream's path
//! has no signed envelope, so it earns no ledger credits), and the answer
//! lists each applet's result.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, read_body};
use crate::applets::definitions::Definitions;
use crate::applets::host_db::HostDb;
use crate::applets::lease;
use crate::applets::state::EventInput;

#[derive(Deserialize)]
pub struct W3bQuery {
    #[serde(rename = "eventType")]
    event_type: Option<String>,
}

/// `POST /srv-applet-mgr/v0/event/{project}?eventType=..`.
pub async fn http_event(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<W3bQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    // The token is checked before the body is read: a stranger's upload costs nothing.
    authorize(&state, &project, &token).await?;
    let payload = read_body(
        &headers,
        body,
        state.pipeline.limits.max_body_bytes,
        state.body_timeout(),
    )
    .await?
    .to_vec();
    let event_type = q.event_type.unwrap_or_else(|| "DEFAULT".into());
    let answer = run(&state, &project, event_type, payload).await?;
    Ok(axum::Json(answer).into_response())
}

/// Whether `token` is a publisher token of `project`.
pub async fn authorize(state: &Arc<AppState>, project: &str, token: &str) -> Result<(), ApiError> {
    let projects = state.projects.clone();
    let (p, t) = (project.to_string(), token.to_string());
    let allowed = tokio::task::spawn_blocking(move || projects.publisher_ok(&p, &t))
        .await
        .map_err(task_error)?;
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong publisher token",
        ))
    }
}

fn task_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::store(format!("task failed: {e}"))
}

/// Runs `payload` through `project`'s applets for `event_type` (the caller
/// has checked the publisher token).
pub async fn run(
    state: &Arc<AppState>,
    project: &str,
    event_type: String,
    payload: Vec<u8>,
) -> Result<Value, ApiError> {
    let Some(p) = state.projects.get(project) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no project {project}"),
        ));
    };
    let (projects, metrics) = (state.projects.clone(), state.metrics.clone());
    let et = event_type.clone();
    let results = tokio::task::spawn_blocking(move || {
        // The chain over one database, whichever engine holds it.
        let chain = |mut db: HostDb| {
            let mut results = Vec::new();
            for applet in p.chain(&et) {
                let input = EventInput {
                    rid: 1,
                    payload: payload.clone(),
                    event_type: et.clone(),
                    env: p.env.clone(),
                    // Nothing stores this path's effects: no ledger settles its mints.
                    token: None,
                    seed: 0,
                    time_ns: 0,
                    chains: Vec::new(),
                    calls: None,
                };
                let (o, back) =
                    projects
                        .runtime
                        .run(&applet.applet, &applet.handler, input, db, &applet.limits);
                db = back;
                metrics.record_applet(&p.name, &applet.name, o.ok(), o.duration);
                results.push(json!({
                    "appletName": applet.name,
                    "handler": applet.handler,
                    "returnValue": o.effects.response,
                    "returnCode": o.code.unwrap_or(-1),
                    "error": o.error,
                    "credits": o.effects.credits.len(),
                }));
            }
            (db, results)
        };
        match projects.definitions() {
            Definitions::Sqlite(_) => {
                p.db.with(|db| {
                    let (back, results) = chain(HostDb::Sqlite(db));
                    (back.into_sqlite().expect("the database lent"), results)
                })
                .map_err(|e| e.to_string())
            }
            Definitions::Postgres(w) => lease::in_project(w, &p.name, |db| {
                let (back, results) = chain(db);
                (back, Ok(results))
            })
            .map_err(|e| e.to_string()),
        }
    })
    .await
    .map_err(task_error)?
    .map_err(ApiError::store)?;
    Ok(json!({"projectName": project, "eventType": event_type, "results": results}))
}
