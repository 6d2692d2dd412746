//! `GET /v1/fleet` (admin): the fleet page's table, filtered, sorted and
//! paginated here so a browser never holds 10,000 devices. Each row: status
//! (online when the last reading arrived within `dashboard.online_after_s`,
//! offline, revoked), owner, counters, balance; the rows of the page also get
//! their last reading and a sparkline of the last hour (12 five-minute means
//! from the store's downsampling query, not the raw stream).
//!
//! The whole registry and every balance are read once per request (a few
//! milliseconds at 10,000 devices); the per-device reads are done only for
//! the page, at most [`MAX_LIMIT`] devices.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, require_admin};
use crate::pipeline::unix_now;
use crate::store::DeviceRow;

/// The most rows one page holds.
pub const MAX_LIMIT: usize = 200;
/// Sparkline: this many buckets of [`SPARK_BUCKET_S`] up to now.
const SPARK_BUCKETS: i64 = 12;
const SPARK_BUCKET_S: i64 = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    offset: Option<usize>,
    /// Rows per page (default 50, at most 200).
    limit: Option<usize>,
    /// `registered` (default), `device`, `owner`, `status`, `last_seen`,
    /// `accepted`, `rejected` or `balance`.
    sort: Option<String>,
    /// Largest first.
    desc: Option<bool>,
    /// Only devices whose id or owner contains this (case-insensitive).
    q: Option<String>,
    /// Only `online`, `offline` or `revoked` devices.
    status: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Offline,
    Revoked,
}

impl Status {
    fn of(d: &DeviceRow, now: i64, online_after_s: i64) -> Status {
        if d.revoked_at.is_some() {
            Status::Revoked
        } else if d.last_seen.is_some_and(|t| t >= now - online_after_s) {
            Status::Online
        } else {
            Status::Offline
        }
    }

    fn parse(s: &str) -> Option<Status> {
        match s {
            "online" => Some(Status::Online),
            "offline" => Some(Status::Offline),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Row {
    device_id: String,
    owner: Option<String>,
    status: Status,
    registered_at: i64,
    last_seen: Option<i64>,
    accepted: i64,
    /// Rejected and conflicting envelopes.
    rejected: i64,
    duplicate: i64,
    /// Token units, decimal; and in tokens.
    balance_units: String,
    balance: f64,
    /// The latest reading (page rows only).
    last_w: Option<f64>,
    last_timestamp: Option<i64>,
    /// Mean power per five minutes over the last hour, oldest first; `null`
    /// where no reading fell.
    spark: Vec<Option<f64>>,
}

#[derive(Serialize, Default)]
struct Counts {
    all: usize,
    online: usize,
    offline: usize,
    revoked: usize,
}

type Keyed = (DeviceRow, Status, u128);

fn order(sort: &str) -> Option<fn(&Keyed, &Keyed) -> Ordering> {
    Some(match sort {
        "registered" => |a, b| a.0.registered_at.cmp(&b.0.registered_at),
        "device" => |_, _| Ordering::Equal,
        "owner" => |a, b| a.0.owner.cmp(&b.0.owner),
        "status" => |a, b| a.1.cmp(&b.1),
        "last_seen" => |a, b| a.0.last_seen.cmp(&b.0.last_seen),
        "accepted" => |a, b| a.0.accepted.cmp(&b.0.accepted),
        "rejected" => |a, b| (a.0.rejected + a.0.conflict).cmp(&(b.0.rejected + b.0.conflict)),
        "balance" => |a, b| a.2.cmp(&b.2),
        _ => return None,
    })
}

pub async fn fleet(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<FleetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let bad = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "malformed", why.to_string());
    let sort = q.sort.as_deref().unwrap_or("registered");
    let by = order(sort).ok_or_else(|| {
        bad("sort is registered, device, owner, status, last_seen, accepted, rejected or balance")
    })?;
    let only = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| bad("status is online, offline or revoked"))?),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let offset = q.offset.unwrap_or(0);
    let needle = q.q.unwrap_or_default().trim().to_lowercase();
    if needle.len() > 128 {
        return Err(bad("q is at most 128 characters"));
    }

    let devices = state.reads.all_devices().await.map_err(ApiError::store)?;
    let rewards = state.rewards.clone();
    let balances = tokio::task::spawn_blocking(move || rewards.balances())
        .await
        .map_err(ApiError::store)?
        .map_err(ApiError::store)?;
    let now = unix_now() as i64;
    let online_after = state.dashboard.online_after_s as i64;
    let mut counts = Counts::default();
    let mut rows: Vec<Keyed> = devices
        .into_iter()
        .map(|d| {
            let status = Status::of(&d, now, online_after);
            let balance = balances.get(&d.device_id).copied().unwrap_or(0);
            (d, status, balance)
        })
        .inspect(|(_, s, _)| {
            counts.all += 1;
            match s {
                Status::Online => counts.online += 1,
                Status::Offline => counts.offline += 1,
                Status::Revoked => counts.revoked += 1,
            }
        })
        .filter(|(_, s, _)| only.is_none_or(|o| o == *s))
        .filter(|(d, _, _)| {
            needle.is_empty()
                || d.device_id.contains(&needle)
                || d.owner
                    .as_ref()
                    .is_some_and(|o| o.to_lowercase().contains(&needle))
        })
        .collect();
    rows.sort_by(|a, b| by(a, b).then_with(|| a.0.device_id.cmp(&b.0.device_id)));
    if q.desc.unwrap_or(false) {
        rows.reverse();
    }
    let total = rows.len();
    let page: Vec<Keyed> = rows.into_iter().skip(offset).take(limit).collect();

    // The page's last readings and sparklines, read side by side.
    let to = now.div_euclid(SPARK_BUCKET_S) * SPARK_BUCKET_S + SPARK_BUCKET_S;
    let span = crate::store::series::Span {
        from: to - SPARK_BUCKETS * SPARK_BUCKET_S,
        to,
        bucket_s: SPARK_BUCKET_S,
        max_window_s: state.pipeline.limits.max_window_s as i64,
    };
    let reads = page.iter().map(|(d, _, _)| {
        let reads = state.reads.clone();
        let id = d.device_id.clone();
        async move {
            let last = reads.last_event(&id).await?;
            let series = reads.series(&id, span).await?;
            Ok::<_, crate::store::StoreError>((last, series))
        }
    });
    let extra = futures_util::future::join_all(reads).await;
    let mut out = Vec::with_capacity(page.len());
    for ((d, status, balance), extra) in page.into_iter().zip(extra) {
        let (last, series) = extra.map_err(ApiError::store)?;
        let mut spark = vec![None; SPARK_BUCKETS as usize];
        for b in series {
            if let Some(slot) = spark.get_mut(((b.t - span.from) / SPARK_BUCKET_S) as usize) {
                *slot = Some(b.avg_w);
            }
        }
        out.push(Row {
            owner: d.owner,
            status,
            registered_at: d.registered_at,
            last_seen: d.last_seen,
            accepted: d.accepted,
            rejected: d.rejected + d.conflict,
            duplicate: d.duplicate,
            balance_units: balance.to_string(),
            balance: balance as f64 / 1e18,
            last_w: last.as_ref().map(|e| e.sensor_reading),
            last_timestamp: last.as_ref().map(|e| e.timestamp),
            spark,
            device_id: d.device_id,
        });
    }
    Ok(axum::Json(serde_json::json!({
        "now": now,
        "online_after_s": online_after,
        "counts": counts,
        "total": total,
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "desc": q.desc.unwrap_or(false),
        "devices": out,
    }))
    .into_response())
}
