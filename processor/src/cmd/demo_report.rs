//! The demo's live table and its summary, read from the processor's API and
//! each meter's state file.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use wattstream_sdk::client::{ProcessorClient, RewardsView};
use wattstream_sdk::state::MeterState;

use super::demo::Meter;

fn state(dir: &Path) -> Option<MeterState> {
    MeterState::read(&dir.join("data/state.json")).ok()
}

/// A device's registration answer and its rewards (`None` before the first).
fn device(
    runtime: &tokio::runtime::Runtime,
    client: &ProcessorClient,
    id: &str,
) -> (Value, Option<RewardsView>) {
    let d = runtime.block_on(client.device(id)).unwrap_or(Value::Null);
    (d, runtime.block_on(client.rewards(id)).ok())
}

pub(super) fn table(
    runtime: &tokio::runtime::Runtime,
    client: &ProcessorClient,
    meters: &[Meter],
    elapsed: Duration,
    total: Duration,
) -> String {
    let width = 30usize;
    let done = ((elapsed.as_secs_f64() / total.as_secs_f64()) * width as f64).min(width as f64) as usize;
    let mut out = format!(
        "[{}{}] {:>3}/{} s\n{:<10} {:>9} {:>9} {:>7} {:>7} {:>14} {:>10}\n",
        "#".repeat(done),
        ".".repeat(width - done),
        elapsed.as_secs(),
        total.as_secs(),
        "meter",
        "power W",
        "window W",
        "sent",
        "outbox",
        "rewards",
        "proof"
    );
    for m in meters {
        let s = state(&m.dir);
        let (d, r) = device(runtime, client, &m.device_id);
        out.push_str(&format!(
            "{:<10} {:>9.2} {:>9.2} {:>7} {:>7} {:>14.6} {:>10}\n",
            m.name,
            s.as_ref().and_then(|s| s.power_w).unwrap_or(0.0),
            s.as_ref().and_then(|s| s.window_w).unwrap_or(0.0),
            d["counts"]["accepted"].as_i64().unwrap_or(0),
            s.as_ref().map_or(0, |s| s.link.outbox_depth),
            r.map_or(0.0, |r| r.balance),
            s.as_ref()
                .map_or("-".to_string(), |s| format!("{:?}", s.rewards.proof)
                    .to_lowercase()),
        ));
    }
    out
}

pub(super) fn summary(
    runtime: &tokio::runtime::Runtime,
    client: &ProcessorClient,
    meters: &[Meter],
) -> String {
    let mut out = String::from("Summary\n");
    let mut total = 0;
    let mut best: Option<(&str, f64)> = None;
    for m in meters {
        let (d, r) = device(runtime, client, &m.device_id);
        let accepted = d["counts"]["accepted"].as_i64().unwrap_or(0);
        let (balance, rate) = r.map_or((0.0, 0.0), |r| (r.balance, r.rate_per_h));
        total += accepted;
        if best.is_none_or(|(_, b)| balance > b) {
            best = Some((&m.name, balance));
        }
        out.push_str(&format!(
            "  {:<10} {:>4} events accepted, {:>12.6} tokens, {:>8.4} tokens/h\n",
            m.name, accepted, balance, rate
        ));
    }
    out.push_str(&format!("events accepted: {total}\n"));
    if let Some((name, b)) = best {
        out.push_str(&format!("most rewarded: {name} ({b:.6} tokens)\n"));
    }
    out
}

/// What the dashboard's epochs page shows of the settlement: how many sealed
/// epochs the distributor on chain holds the root of.
pub(super) fn settlements(
    runtime: &tokio::runtime::Runtime,
    client: &ProcessorClient,
) -> anyhow::Result<String> {
    let page = runtime.block_on(client.get_json("/v1/epochs?limit=200"))?;
    let epochs = page["epochs"].as_array().cloned().unwrap_or_default();
    let count = |state: &str| {
        epochs
            .iter()
            .filter(|e| e["settlement"]["state"] == state)
            .count()
    };
    Ok(format!(
        "epochs page: {} settled, {} root differs, of {} sealed epochs (chain {})\n",
        count("settled"),
        count("root_differs"),
        epochs.len(),
        page["settlement_chain"]
    ))
}
