//! `GET /v1/stream`: the live stream the dashboard subscribes to, as
//! Server-Sent Events (`text/event-stream`). Events are [`LiveEvent`]s, named
//! `reading`, `ledger` and `seal`, each a JSON object; `lagged` says the
//! viewer missed some (it should reload what it shows); a comment line every
//! [`HEARTBEAT`] keeps proxies from closing an idle stream.
//!
//! Who sees what: the admin token, every event, or with `?devices=A,B,…`
//! (at most [`MAX_DEVICES`]) only those devices' readings: the fleet page
//! asks for the rows it shows, so a browser watching a 10,000-meter fleet
//! gets 50 meters' readings, not 2,000 a second. A device's read token, with
//! `?device=ID`, only that device's readings. Ledger and seal events, which
//! name no device, go to every stream. The token travels in the
//! `Authorization` header like everywhere else: the dashboard reads the
//! stream with `fetch`, not `EventSource` (which cannot send a header), so
//! no token ever sits in a URL or a server log.
//!
//! Bounds: at most `dashboard.max_streams` streams at once (503 past it),
//! each a broadcast subscriber that never holds more than
//! [`crate::live::CAPACITY`] events; every stream ends when the processor
//! begins to shut down, so an open dashboard does not hold the drain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, AppState, require_admin, require_reader};
use crate::live::Frame;

/// How often an idle stream sends a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The most devices one `?devices=` names.
pub const MAX_DEVICES: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only this device's readings (needed with a read token).
    device: Option<String>,
    /// Only these devices' readings, comma-separated (admin).
    devices: Option<String>,
}

/// Whose readings a stream forwards (`None`: everyone's).
type Only = Option<HashSet<String>>;

fn wanted(frame: &Frame, only: &Only) -> bool {
    match (only, &frame.device) {
        (Some(set), Some(d)) => set.contains(d),
        _ => true,
    }
}

struct Open {
    rx: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    only: Only,
    stopping: tokio::sync::watch::Receiver<bool>,
    heartbeat: tokio::time::Interval,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Open {
    /// The next frame, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            tokio::select! {
                got = self.rx.recv() => match got {
                    Ok(f) if wanted(&f, &self.only) => return Some(f.bytes.clone()),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        return Some(Frame::new("lagged", &format!("{{\"missed\":{n}}}"), None).bytes);
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                _ = self.stopping.wait_for(|s| *s) => return None,
            }
        }
    }
}

pub async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed", why);
    let only: Only = match (q.device, q.devices) {
        (Some(_), Some(_)) => return Err(bad("give `device` or `devices`, not both".into())),
        (Some(id), None) => {
            let id = super::devices::parse_id(&id)?.to_string();
            require_reader(&state, &headers, &id)?;
            Some(HashSet::from([id]))
        }
        (None, Some(list)) => {
            require_admin(&state, &headers)?;
            let ids = list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| super::devices::parse_id(s).map(|d| d.to_string()))
                .collect::<Result<HashSet<_>, _>>()?;
            if ids.len() > MAX_DEVICES {
                return Err(bad(format!("at most {MAX_DEVICES} devices")));
            }
            Some(ids)
        }
        (None, None) => {
            require_admin(&state, &headers)?;
            None
        }
    };
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "every live stream is taken (`dashboard.max_streams`); try again later",
        )
    })?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.reset(); // the first tick after HEARTBEAT, not now
    let open = Open {
        rx: state.live.subscribe(),
        stopping: state.stopping.clone(),
        heartbeat,
        only: only.clone(),
        _permit: permit,
    };
    let mut devices: Option<Vec<String>> = only.map(|s| s.into_iter().collect());
    if let Some(d) = devices.as_mut() {
        d.sort();
    }
    let hello = Frame::new(
        "hello",
        &serde_json::json!({ "devices": devices, "heartbeat_s": HEARTBEAT.as_secs() }).to_string(),
        None,
    )
    .bytes;
    let first = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(hello) });
    let rest = futures_util::stream::unfold(open, |mut open| async move {
        open.next().await.map(|b| (Ok(b), open))
    });
    use futures_util::StreamExt;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(first.chain(rest)),
    )
        .into_response())
}
