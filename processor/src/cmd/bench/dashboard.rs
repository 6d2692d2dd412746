//! The dashboard's fleet page on the bench's fleet: `GET /v1/fleet` sorted by
//! balance (the whole registry and every balance read, sorted, one page of
//! 50 with their sparklines), timed one request after another once the
//! sustained run has filled the store. Target: a page within 250 ms, so a
//! Pi-class browser shows a 10,000-meter fleet without a wait.

use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};
use wattstream_sdk::client::ProcessorClient;

/// Pages asked for.
const REQUESTS: usize = 20;
/// The time one page may take.
pub const TARGET_MS: f64 = 250.0;

/// Times the fleet page; prints and returns `{p50_ms, max_ms, requests}`.
pub fn fleet_page(rt: &tokio::runtime::Runtime, admin: &ProcessorClient, devices: usize) -> Result<Value> {
    let mut ms = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        // Pages across the fleet, as an operator paging through it.
        let offset = (i * 50 * 7) % devices.max(1);
        let t = Instant::now();
        let page = rt.block_on(admin.get_json(&format!(
            "/v1/fleet?sort=balance&desc=true&limit=50&offset={offset}"
        )))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            page["counts"]["all"].as_u64() == Some(devices as u64),
            "the fleet page counts {} devices, not {devices}",
            page["counts"]["all"]
        );
    }
    ms.sort_by(f64::total_cmp);
    let (p50, max) = (ms[ms.len() / 2], ms[ms.len() - 1]);
    println!(
        "   dashboard fleet page (GET /v1/fleet, sorted by balance, 50 rows of {devices}): p50 {p50:.1} ms, max {max:.1} ms over {REQUESTS} pages (target <= {TARGET_MS:.0} ms: ratio {:.2})",
        p50 / TARGET_MS
    );
    Ok(json!({ "p50_ms": p50, "max_ms": max, "requests": REQUESTS, "target_ms": TARGET_MS }))
}
