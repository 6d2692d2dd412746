//! Applets deployed `--stateless` keep one instance across a batch's events
//! (`applets::call`). What a user relies on: the example applets, built with
//! the Rust SDK, run any number of events in one instance without their
//! memory growing (the SDK empties its heap at each call), and they credit
//! exactly what fresh instances credit. Needs `applets/dist/*.wasm`.

mod common;

use std::time::Duration;

use common::dist;
use wattstream_abi::LEDGER_TOKEN;
use wattstream_processor::applets::call::Warm;
use wattstream_processor::applets::db::ProjectDb;
use wattstream_processor::applets::host_db::HostDb;
use wattstream_processor::applets::runner::device_env;
use wattstream_processor::applets::runtime::Runtime;
use wattstream_processor::applets::state::{AppletLimits, EventInput};
use wattstream_sdk::{DeviceKey, Reading};

/// Event `n` of one device, as the worker hands it to its applets.
fn event(key: &DeviceKey, n: u64) -> EventInput {
    let mut r = Reading::new(2.5, 1_700_000_000 + n * 5).with_seq(n + 1);
    r.window_s = Some(5);
    let mut env = device_env(
        &key.device_id().to_string(),
        Some("alice"),
        "active",
        n as i64 + 1,
    );
    env.insert(wattstream_abi::env::PAID_S.to_string(), "5".to_string());
    EventInput {
        rid: 1,
        payload: key.sign_reading(&r).into_bytes(),
        event_type: "DATA".into(),
        env,
        token: Some(LEDGER_TOKEN.to_string()),
        seed: n,
        time_ns: 0,
        chains: Vec::new(),
        calls: None,
    }
}

#[test]
fn a_rust_sdk_applet_serves_thousands_of_events_in_one_instance_without_its_memory_growing() {
    let runtime = Runtime::new(None).unwrap();
    let limits = AppletLimits {
        stateless: true,
        ..AppletLimits::default()
    };
    let key = DeviceKey::generate();
    for name in ["identity", "rewards-tiered"] {
        let applet = runtime.compile(&std::fs::read(dist(name)).unwrap()).unwrap();
        let mut db = HostDb::Sqlite(ProjectDb::open(None, Duration::from_millis(1000)).unwrap());
        let mut warm: Option<Warm> = None;
        let mut first = 0;
        for n in 0..5000 {
            let (o, back) = runtime.run_warm(&applet, "start", event(&key, n), db, &limits, &mut warm);
            db = back;
            assert!(o.ok(), "{name}, event {n}: {o:?}");
            let w = warm.as_mut().expect("the instance is kept");
            assert_eq!(w.calls(), n + 1, "{name}: one instance served every event");
            if n == 0 {
                first = w.memory_bytes();
            }
        }
        let last = warm.as_mut().unwrap().memory_bytes();
        assert_eq!(
            last, first,
            "{name}: memory after 5,000 events against after the first"
        );
    }
}
