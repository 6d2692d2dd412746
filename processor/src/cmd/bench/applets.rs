//! The applet part of `wattstream bench`: microseconds per event for a
//! trivial applet and for each example applet (fresh instance, limits,
//! savepoint, call, effects).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use wattstream_sdk::{DeviceKey, Reading};

use wattstream_abi::LEDGER_TOKEN;
use wattstream_processor::applets::db::ProjectDb;
use wattstream_processor::applets::runner::device_env;
use wattstream_processor::applets::runtime::Runtime;
use wattstream_processor::applets::state::{AppletLimits, EventInput};

/// The smallest applet that follows the ABI.
pub const TRIVIAL_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "start") (param i32) (result i32) (i32.const 0)))"#;

/// One applet's figures.
#[derive(Debug, Serialize)]
pub struct AppletFigure {
    pub applet: String,
    pub us_per_event: f64,
    pub events_per_s: f64,
    pub runs: u64,
}

/// Runs `wasm` repeatedly for about `seconds`; µs per event.
pub fn applet_overhead(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    seconds: f64,
) -> anyhow::Result<AppletFigure> {
    let applet = runtime.compile(wasm)?;
    let key = DeviceKey::from_bytes(&[7; 32]).expect("valid key");
    let id = key.device_id().to_string();
    let mut db = Some(ProjectDb::open(None, Duration::from_millis(100))?);
    let limits = AppletLimits::default();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut runs, mut busy) = (0u64, Duration::ZERO);
    while Instant::now() < deadline || runs < 100 {
        let mut r = Reading::new(2.0 + (runs % 7) as f64, 1_795_514_495 + runs * 5).with_seq(runs);
        r.window_s = Some(5);
        let input = EventInput {
            rid: 1,
            payload: key.sign_reading(&r).into_bytes(),
            event_type: "DATA".into(),
            env: {
                // As the worker would: 5 s windows 5 s apart are paid 5 s, so
                // the reward applets do their whole work (mint included).
                let mut env = device_env(&id, Some("bench"), "active", runs as i64);
                env.insert(wattstream_abi::env::PAID_S.into(), "5".into());
                env
            },
            token: Some(LEDGER_TOKEN.into()),
            seed: runs,
            time_ns: 0,
            chains: Vec::new(),
            calls: None,
        };
        let started = Instant::now();
        let (outcome, back) = runtime.run_sqlite(&applet, "start", input, db.take().expect("db"), &limits);
        busy += started.elapsed();
        db = Some(back);
        if !outcome.ok() {
            anyhow::bail!(
                "{name} failed in the benchmark: {:?} {:?}",
                outcome.code,
                outcome.error
            );
        }
        runs += 1;
    }
    let us = busy.as_secs_f64() * 1e6 / runs as f64;
    Ok(AppletFigure {
        applet: name.to_string(),
        us_per_event: us,
        events_per_s: 1e6 / us,
        runs,
    })
}

/// The applet part of the benchmark: the trivial applet and every `.wasm` in `dist`.
pub fn applets(dist: &Path, seconds: f64) -> anyhow::Result<Vec<AppletFigure>> {
    let runtime = Runtime::new(None)?;
    let mut out = vec![applet_overhead(
        &runtime,
        "trivial (WAT)",
        TRIVIAL_WAT.as_bytes(),
        seconds,
    )?];
    let mut files: Vec<_> = std::fs::read_dir(dist)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for path in files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(applet_overhead(&runtime, &name, &std::fs::read(&path)?, seconds)?);
    }
    Ok(out)
}
