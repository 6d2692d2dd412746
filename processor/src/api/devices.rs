//! The registry (admin: register, list, revoke, read tokens) and the device
//! queries (one device's registration, last reading and counts; its events,
//! paginated), which need the admin token or the device's read token.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wattstream_sdk::{DeviceId, PublicKey};

use super::{ApiError, AppState, read_body, require_admin, require_reader};
use crate::pipeline::unix_now;
use crate::store::{EventRow, NewDevice, RegisterOutcome};

/// Largest admin request body.
const ADMIN_BODY_MAX: usize = 16 * 1024;
/// Longest owner string.
const OWNER_MAX: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    public_key: String,
    owner: Option<String>,
}

pub(super) fn parse_id(text: &str) -> Result<DeviceId, ApiError> {
    DeviceId::from_hex(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("`{text}` is not a device id (40 hex characters)"),
        )
    })
}

pub async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let bytes = read_body(&headers, body, ADMIN_BODY_MAX, state.body_timeout()).await?;
    let req: RegisterRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("bad registration request: {e}"),
        )
    })?;
    let key = PublicKey::from_hex(req.public_key.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    if req.owner.as_ref().is_some_and(|o| o.len() > OWNER_MAX) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("owner is longer than {OWNER_MAX}"),
        ));
    }
    let id = key.device_id();
    let outcome = state
        .writer
        .register(NewDevice {
            device_id: id.to_string(),
            public_key: key.to_hex(),
            owner: req.owner.clone(),
            at: unix_now() as i64,
        })
        .await
        .map_err(ApiError::store)?;
    let status = match outcome {
        RegisterOutcome::Created => StatusCode::CREATED,
        RegisterOutcome::AlreadyRegistered => StatusCode::OK,
        RegisterOutcome::Revoked => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "revoked_device",
                format!("device {id} was revoked; a revoked key cannot be registered again"),
            ));
        }
    };
    state.registry.registered(id, req.owner);
    tracing::info!(device = %id, created = (status == StatusCode::CREATED), "device registered");
    Ok((
        status,
        axum::Json(json!({"device_id": id.to_string(), "public_key": key.to_hex()})),
    )
        .into_response())
}

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let devices = state.reads.all_devices().await.map_err(ApiError::store)?;
    Ok(axum::Json(json!({ "devices": devices })).into_response())
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let id = parse_id(&id)?;
    let found = state
        .writer
        .revoke(id.to_string(), unix_now() as i64)
        .await
        .map_err(ApiError::store)?;
    if !found {
        return Err(unknown_device(&id));
    }
    state.registry.revoked(&id);
    tracing::info!(device = %id, "device revoked");
    Ok(axum::Json(json!({"device_id": id.to_string(), "status": "revoked"})).into_response())
}

/// `POST /v1/devices/{id}/read-token` (admin): the token that lets the
/// device's owner read its readings.
pub async fn read_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let id = parse_id(&id)?.to_string();
    let token = state.read_tokens.token_for(&id);
    Ok(axum::Json(json!({"device_id": id, "token": token})).into_response())
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?.to_string();
    require_reader(&state, &headers, &id)?;
    let device = state.reads.device(&id).await.map_err(ApiError::store)?;
    let last = state.reads.last_event(&id).await.map_err(ApiError::store)?;
    let Some(d) = device else {
        return Err(unknown_device(&id));
    };
    Ok(axum::Json(DeviceView {
        status: if d.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        },
        counts: Counts {
            accepted: d.accepted,
            duplicate: d.duplicate,
            rejected: d.rejected,
            conflict: d.conflict,
        },
        last_reading: last,
        device_id: d.device_id,
        public_key: d.public_key,
        owner: d.owner,
        registered_at: d.registered_at,
        revoked_at: d.revoked_at,
        last_seen: d.last_seen,
    })
    .into_response())
}

#[derive(Serialize)]
struct Counts {
    accepted: i64,
    duplicate: i64,
    rejected: i64,
    conflict: i64,
}

/// `GET /v1/devices/{id}`.
#[derive(Serialize)]
struct DeviceView {
    device_id: String,
    public_key: String,
    owner: Option<String>,
    status: &'static str,
    registered_at: i64,
    revoked_at: Option<i64>,
    last_seen: Option<i64>,
    last_reading: Option<EventRow>,
    counts: Counts,
}

/// `GET /v1/devices/{id}/events`.
#[derive(Serialize)]
struct EventsPage {
    device_id: String,
    events: Vec<EventRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// Most events in one page.
const PAGE_MAX: usize = 1000;

pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?.to_string();
    require_reader(&state, &headers, &id)?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let after = match q.after.as_deref() {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(t, i)| Some((t.parse::<i64>().ok()?, i.parse::<i64>().ok()?)))
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "malformed", "bad `after` cursor"))?,
        ),
    };
    let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    let known = state.reads.device(&id).await.map_err(ApiError::store)?.is_some();
    let rows = state
        .reads
        .events(&id, from, to, after, limit)
        .await
        .map_err(ApiError::store)?;
    if !known {
        return Err(unknown_device(&id));
    }
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| format!("{}.{}", r.timestamp, r.id)))
        .flatten();
    // Serialised straight from the rows (not through `json!`), which keeps each
    // event's `data` byte for byte.
    Ok(axum::Json(EventsPage {
        device_id: id,
        events: rows,
        next,
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    /// `hour` (60 buckets of a minute), `day` (96 of 15 minutes) or `week`
    /// (168 of an hour).
    range: Option<String>,
    /// End of the span, Unix seconds (default: now, rounded up to a bucket).
    to: Option<i64>,
    /// Bucket length instead of the range's own (at least 5 s, at most
    /// 1,000 buckets): `range=week&bucket_s=86400` is energy per day.
    bucket_s: Option<i64>,
}

/// `GET /v1/devices/{id}/series`: the device's power downsampled in the
/// store (`store::series`), for charts. Admin or the device's read token.
pub async fn series(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?.to_string();
    require_reader(&state, &headers, &id)?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let bad = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "malformed", why.to_string());
    let (span_s, default_bucket) = match q.range.as_deref().unwrap_or("hour") {
        "hour" => (3600, 60),
        "day" => (86_400, 900),
        "week" => (604_800, 3600),
        _ => return Err(bad("range is hour, day or week")),
    };
    let bucket_s = q.bucket_s.unwrap_or(default_bucket);
    if bucket_s < 5 || span_s / bucket_s > 1000 || bucket_s > span_s {
        return Err(bad(
            "bucket_s must be at least 5, at most the range, and give at most 1000 buckets",
        ));
    }
    let to = match q.to {
        Some(t) => t,
        None => (unix_now() as i64).div_euclid(bucket_s) * bucket_s + bucket_s,
    };
    let span = crate::store::series::Span {
        from: to - span_s,
        to,
        bucket_s,
        max_window_s: state.pipeline.limits.max_window_s as i64,
    };
    if state.reads.device(&id).await.map_err(ApiError::store)?.is_none() {
        return Err(unknown_device(&id));
    }
    let buckets = state.reads.series(&id, span).await.map_err(ApiError::store)?;
    Ok(axum::Json(json!({
        "device_id": id,
        "from": span.from,
        "to": span.to,
        "bucket_s": bucket_s,
        "buckets": buckets,
    }))
    .into_response())
}

/// The answer for a device that is not registered (404 `unknown_device`).
fn unknown_device(id: &impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_device",
        format!("device {id} is not registered"),
    )
}
