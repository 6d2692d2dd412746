//! The dashboard's views of the ledger: `GET /v1/epochs` (the newest seals
//! with their totals, and with `dashboard.settlement_chain` their state on
//! that chain) and `GET /v1/devices/{id}/epochs` (a device's credits
//! per epoch). Public, as seals and rewards are (a claim on chain carries
//! them); each answer is bounded by `limit` (at most
//! [`crate::rewards::views::MAX_EPOCHS`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochsQuery {
    /// Epochs in the answer (default 24).
    limit: Option<u32>,
}

fn limit_of(
    q: Result<Query<EpochsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<u32, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    Ok(q.limit.unwrap_or(24))
}

/// `GET /v1/epochs`: the newest seals, newest first, each with the devices
/// it credited and its total.
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<EpochsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = limit_of(query)?;
    let rewards = state.rewards.clone();
    let epochs = tokio::task::spawn_blocking(move || rewards.epochs(limit))
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?;
    let mut answer: Vec<serde_json::Value> = epochs
        .iter()
        .map(|e| serde_json::to_value(e).expect("an epoch serializes"))
        .collect();
    // With a settlement chain: each seal's state there, asked side by side.
    if let Some((chain, distributor)) = state.settlement
        && let Some(conn) = state.chains.get(chain)
    {
        let asks = epochs.iter().map(|e| {
            crate::chain::settled::settlement(
                conn,
                distributor,
                e.seal.epoch,
                &e.seal.root,
                SETTLEMENT_WITHIN,
            )
        });
        for (row, s) in answer.iter_mut().zip(futures_util::future::join_all(asks).await) {
            row["settlement"] = serde_json::to_value(s).expect("a settlement serializes");
        }
    }
    Ok(axum::Json(json!({
        "epoch_s": state.rewards.epoch_s(),
        "settlement_chain": state.settlement.map(|(id, _)| id),
        "epochs": answer,
    }))
    .into_response())
}

/// How long the epochs page waits for the settlement chain.
const SETTLEMENT_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// `GET /v1/devices/{id}/epochs`: the device's credits per epoch, newest
/// first, the open epoch included (`sealed: false`).
pub async fn device(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<EpochsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = super::devices::parse_id(&id)?;
    let limit = limit_of(query)?;
    let rewards = state.rewards.clone();
    let epochs = tokio::task::spawn_blocking(move || rewards.device_epochs(&id, limit))
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?;
    Ok(axum::Json(json!({
        "device_id": id.to_string(),
        "epoch_s": state.rewards.epoch_s(),
        "epochs": epochs,
    }))
    .into_response())
}
