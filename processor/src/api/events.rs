//! `POST /v1/events`: one envelope or an array of them, through the pipeline.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use wattstream_sdk::wire::{BatchAnswer, EventStatus};

use super::{ApiError, AppState, read_body};
use crate::pipeline::{IngestError, Ingested};

/// The HTTP status for a single envelope's verdict.
fn single_status(status: EventStatus, reason: Option<&str>) -> StatusCode {
    match (status, reason) {
        (EventStatus::Accepted | EventStatus::Duplicate, _) => StatusCode::OK,
        (_, Some("unknown_device" | "revoked_device")) => StatusCode::FORBIDDEN,
        (_, Some("conflict")) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub async fn post_events(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let limits = &state.pipeline.limits;
    let bytes = match read_body(&headers, body, limits.max_body_bytes, state.body_timeout()).await {
        Ok(b) => b,
        Err(e) => {
            state.metrics.record_event("rejected", e.reason);
            return e.into_response();
        }
    };
    let (status, body) = answer(&state, state.pipeline.ingest(&bytes).await);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The answer to an ingest, the same over HTTP and MQTT: the status and the
/// JSON bytes (one verdict, `{"results":[...]}` for a batch, or the error
/// shape), serialized once.
pub(crate) fn answer(state: &AppState, result: Result<Ingested, IngestError>) -> (StatusCode, Vec<u8>) {
    match result {
        Ok(Ingested::Single(result)) => (
            single_status(result.status, result.reason.as_deref()),
            wire_json(&result),
        ),
        Ok(Ingested::Batch(results)) => (StatusCode::OK, wire_json(&BatchAnswer { results })),
        Err(IngestError::Body(e)) => {
            let (reason, status) = e.reason();
            state.metrics.record_event("rejected", reason);
            ApiError::new(
                StatusCode::from_u16(status).expect("valid status"),
                reason,
                e.to_string(),
            )
            .to_bytes()
        }
        Err(IngestError::Store(e)) => ApiError::store(e).to_bytes(),
    }
}

/// The wire types always serialize.
fn wire_json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("wire types serialize")
}
