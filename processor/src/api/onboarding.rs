//! Onboarding over HTTP (crate::onboarding): `POST /v1/devices/claim`,
//! `POST /v1/devices/{id}/transfer` and `GET /v1/devices/{id}/bindings`.
//!
//! Claims and transfers need no token under the `open` and `makers` policies:
//! the signatures are the authorisation. An `Authorization` header, when sent,
//! must carry the admin token; with it, a claim passes the `admin` policy and
//! a transfer may go without the current owner's signature. The bindings are
//! public on purpose: their point is that anyone can re-verify who owns a
//! device, as anyone can read a chain.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use wattstream_sdk::DeviceId;
use wattstream_sdk::binding::{ClaimRequest, TransferRequest};

use super::{ApiError, AppState, read_body, require_admin};
use crate::onboarding::{OnboardError, Record, record};
use crate::pipeline::unix_now;

/// Largest onboarding body (a claim with a maker certificate is about 1.5 KB).
const BODY_MAX: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    request: ClaimRequest,
    owner_signature: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    request: TransferRequest,
    #[serde(default)]
    from_signature: Option<String>,
    #[serde(default)]
    owner_signature: Option<String>,
}

/// Whether the caller showed the admin token; a wrong one is an error.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        require_admin(state, headers)?;
        return Ok(true);
    }
    Ok(false)
}

async fn parse<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, BODY_MAX, state.body_timeout()).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("bad onboarding request: {e}"),
        )
    })
}

fn refused(e: OnboardError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, e.code(), e.to_string())
}

/// Runs a blocking store call and maps its outcome; applies a recorded change
/// to the registry cache.
async fn settle(
    state: &Arc<AppState>,
    what: &'static str,
    run: impl FnOnce() -> anyhow::Result<Result<Record, OnboardError>> + Send + 'static,
) -> Result<Response, ApiError> {
    let outcome = tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "binding store failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            )
        })?;
    let record = match outcome {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(reason = e.code(), "{what} refused: {e}");
            state.metrics.record_onboarding(what, e.code());
            return Err(refused(e));
        }
    };
    state.metrics.record_onboarding(what, "recorded");
    if let Some(id) = DeviceId::from_hex(&record.device_id) {
        state.registry.set_owner(id, record.owner.clone());
    }
    tracing::info!(device = %record.device_id, seq = record.seq, kind = record.kind.as_str(), "{what} recorded");
    let status = if record.kind == record::Kind::Claim {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(record)).into_response())
}

pub async fn claim(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &headers)?;
    let ClaimBody {
        request,
        owner_signature,
    } = parse(&state, &headers, body).await?;
    let onboarding = state.onboarding.clone();
    settle(&state, "claim", move || {
        onboarding.claim(request, owner_signature, admin, unix_now())
    })
    .await
}

pub async fn transfer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let admin = admin(&state, &headers)?;
    let body: TransferBody = parse(&state, &headers, body).await?;
    if body.request.device_id != id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!(
                "the request is for device {}, the path names {id}",
                body.request.device_id
            ),
        ));
    }
    let onboarding = state.onboarding.clone();
    settle(&state, "transfer", move || {
        onboarding.transfer(
            body.request,
            body.from_signature,
            body.owner_signature,
            admin,
            unix_now(),
        )
    })
    .await
}

pub async fn bindings(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = super::devices::parse_id(&id)?.to_string();
    let onboarding = state.onboarding.clone();
    let lookup = id.clone();
    let records = tokio::task::spawn_blocking(move || onboarding.records(&lookup))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            )
        })?;
    // Served as stored; the owners by epoch come from the same check a reader
    // runs offline, so a record that does not verify is visible here too.
    let (owners, problem) = match record::verify_chain(&id, &records) {
        Ok(spans) => (spans, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Ok(axum::Json(json!({
        "device_id": id,
        "records": records,
        "owners": owners,
        "verified": problem.is_none(),
        "problem": problem,
    }))
    .into_response())
}
