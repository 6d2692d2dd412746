//! The HTTP API (DESIGN §3): routes, shared state, the JSON error shape, body
//! limits, admin authentication and request metrics. Handlers live in
//! `events.rs` (ingest) and `devices.rs` (registry and queries).

mod devices;
mod epochs;
pub(crate) mod events;
mod fleet;
mod onboarding;
mod projects;
mod stream;
pub(crate) mod w3bstream;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::json;

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use crate::store::{Reads, Writer};

/// What every handler can reach.
pub struct AppState {
    pub pipeline: Pipeline,
    pub reads: Reads,
    pub writer: Writer,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub admin_token: Option<String>,
    /// `applets.max_lag_events`: past it `/healthz` says `degraded`.
    pub max_lag_events: u64,
    /// `applets.stall_after_s`.
    pub worker_stall: std::time::Duration,
    pub projects: Arc<crate::applets::projects::Projects>,
    /// Wakes the applet worker.
    pub applets: crate::applets::worker::Waker,
    /// The project whose applets run over `POST /v1/events`.
    pub default_project: String,
    pub rewards: Arc<crate::rewards::Rewards>,
    /// Per-device read tokens (event history and owner are personal data).
    pub read_tokens: crate::read_tokens::ReadTokens,
    /// Device-to-owner bindings.
    pub onboarding: Arc<crate::onboarding::Onboarding>,
    /// What the live stream (`GET /v1/stream`) forwards.
    pub live: crate::live::Live,
    /// One permit per open live stream (`dashboard.max_streams`).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// `[dashboard]`.
    pub dashboard: crate::config::DashboardConfig,
    /// The configured chains (the epochs page reads settlements there).
    pub chains: Arc<crate::chain::adapter::Chains>,
    /// `dashboard.settlement_chain` and `distributor`, checked at start.
    pub settlement: Option<(u64, alloy::primitives::Address)>,
    /// Turns true when shutdown begins (live streams end on it).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// `limits.body_read_timeout_s`.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.pipeline.limits.body_read_timeout_s.max(1))
    }
}

type Shared = Arc<AppState>;

/// An error answer: a 4xx/5xx status and `{"status":"rejected","reason":CODE,"detail":TEXT}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            detail: detail.into(),
        }
    }

    /// A store failure: logged in full, answered without its details (they
    /// name files and SQL, which are the operator's business).
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store is unavailable; nothing was changed, try again",
        )
    }
}

impl ApiError {
    /// The status and the JSON body this error is answered with.
    pub fn to_bytes(&self) -> (StatusCode, Vec<u8>) {
        let body = json!({"status": "rejected", "reason": self.reason, "detail": self.detail});
        (self.status, body.to_string().into_bytes())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.to_bytes();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// How much of an oversized body is read and thrown away before answering 413,
/// so that an ordinary client gets the answer rather than a broken pipe. Bodies
/// declared larger than this are refused without reading.
const DRAIN_MAX: usize = 32 << 20;

/// Reads a request body, refusing (413) anything over `max` bytes. Memory use is
/// bounded by `max`: the excess is discarded as it arrives.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    within: std::time::Duration,
) -> Result<axum::body::Bytes, ApiError> {
    tokio::time::timeout(within, read_body_untimed(headers, body, max))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the body did not arrive within {} s", within.as_secs()),
            ))
        })
}

async fn read_body_untimed(
    headers: &HeaderMap,
    mut body: Body,
    max: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body is larger than {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(4096, |n| n.min(max as u64) as usize));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("could not read the body: {e}"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            total += data.len();
            if total > DRAIN_MAX {
                break;
            }
            if total <= max {
                buf.extend_from_slice(data);
            }
        }
    }
    if total > max {
        return Err(too_large());
    }
    Ok(buf.into())
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `Authorization: Bearer TOKEN` against the admin token.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: the processor has no admin token configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same_secret(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong admin token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <admin token>`",
        )),
    }
}

/// Checks that the caller may read `device_id`'s readings and owner: the
/// admin token, or that device's read token.
pub fn require_reader(state: &AppState, headers: &HeaderMap, device_id: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let admin = state.admin_token.as_deref();
    match given {
        Some(t) if admin.is_some_and(|a| same_secret(t.as_bytes(), a.as_bytes())) => Ok(()),
        Some(t) if state.read_tokens.check(device_id, t) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a device's readings and owner need the admin token or that device's read token \
             (`wattstream device token --id`)",
        )),
    }
}

/// A request method as a metrics label: the methods the API knows, else
/// `other` (a client must not be able to grow the label set).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn record_request(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    state
        .metrics
        .record_request(method, &route, response.status().as_u16());
    response
}

async fn not_found(State(state): State<Shared>, req: Request) -> ApiError {
    state
        .metrics
        .record_request(method_label(req.method()), "unmatched", 404);
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// `GET /healthz`: 503 when the store does not answer; otherwise 200 with
/// `ok`, or `degraded` and the problems (the applet worker stalled for
/// `applets.stall_after_s`, or more than `applets.max_lag_events` behind):
/// ingest still works then.
async fn healthz(State(state): State<Shared>) -> Response {
    if let Err(e) = state.reads.ping().await {
        return ApiError::store(e).into_response();
    }
    let w = &state.metrics.worker;
    let mut problems = Vec::new();
    if w.lag() > state.max_lag_events {
        problems.push(format!(
            "the applet worker is {} events behind (limit {})",
            w.lag(),
            state.max_lag_events
        ));
    }
    let age = w.since_beat();
    if age.is_some_and(|a| a > state.worker_stall) {
        problems.push(format!(
            "the applet worker has made no progress for {} s",
            state.worker_stall.as_secs()
        ));
    }
    let mqtt = &state.metrics.mqtt;
    let mqtt_json = if mqtt.enabled.load(std::sync::atomic::Ordering::Relaxed) {
        let connected = mqtt.connected.load(std::sync::atomic::Ordering::Relaxed);
        if !connected {
            problems.push("not connected to the MQTT broker: MQTT ingest is paused".into());
        }
        json!({
            "connected": connected,
            "error": mqtt.last_error.lock().expect("mqtt health lock").clone(),
        })
    } else {
        serde_json::Value::Null
    };
    axum::Json(json!({
        "status": if problems.is_empty() { "ok" } else { "degraded" },
        "problems": problems,
        "devices": state.registry.len(),
        "mqtt": mqtt_json,
        "applet_worker": {
            "lag_events": w.lag(),
            "heartbeat_age_s": age.map(|a| a.as_secs_f64()),
            "restarts": w.restarts(),
        },
    }))
    .into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The whole API.
pub fn router(state: Shared) -> Router {
    let pages = if state.dashboard.enabled {
        crate::web::routes()
    } else {
        Router::new()
    };
    pages
        .route("/v1/events", post(events::post_events))
        .route("/v1/devices", post(devices::register).get(devices::list))
        .route("/v1/devices/{id}", get(devices::show).delete(devices::revoke))
        .route("/v1/devices/{id}/events", get(devices::events))
        .route("/v1/devices/{id}/series", get(devices::series))
        .route("/v1/devices/{id}/epochs", get(epochs::device))
        .route("/v1/fleet", get(fleet::fleet))
        .route("/v1/epochs", get(epochs::list))
        .route("/v1/projects", get(projects::names))
        .route("/v1/devices/{id}/read-token", post(devices::read_token))
        .route("/v1/devices/claim", post(onboarding::claim))
        .route("/v1/devices/{id}/transfer", post(onboarding::transfer))
        .route("/v1/devices/{id}/bindings", get(onboarding::bindings))
        .route("/v1/devices/{id}/rewards", get(projects::rewards))
        .route("/v1/epochs/{epoch}", get(projects::epoch))
        .route("/v1/epochs/{epoch}/proofs/{device}", get(projects::epoch_proof))
        .route("/v1/ledger/head", get(projects::ledger_head))
        .route("/v1/projects/{project}/applets", get(projects::list))
        .route(
            "/v1/projects/{project}/applets/{name}",
            post(projects::deploy).delete(projects::remove),
        )
        .route(
            "/v1/projects/{project}/env",
            axum::routing::put(projects::set_env),
        )
        .route("/v1/projects/{project}/publishers", post(projects::new_publisher))
        .route("/v1/projects/{project}/logs", get(projects::logs))
        .route("/v1/projects/{project}/failures", get(projects::failures))
        .route("/v1/projects/{project}/txs", get(projects::txs))
        .route("/srv-applet-mgr/v0/event/{project}", post(w3bstream::http_event))
        .route("/v1/stream", get(stream::stream))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), record_request))
        .fallback(not_found)
        .with_state(state)
}
