//! `rewards-baseline`: rewards saving energy against the device's own trailing
//! baseline. The baseline is an exponential moving average of the device's power
//! (kept in the project KV, `ALPHA` = 0.05 per window). A window below the
//! baseline earns `RATE_PER_WH` tokens (project env, default 1) per watt-hour
//! saved, up to `CAP_PER_EPOCH` tokens (default 2) per device per hour-long
//! epoch. The first `WARMUP` windows (default 12) only build the baseline.

#![no_std]

extern crate alloc;

use alloc::format;
use wattstream_applet::{Event, TOKEN, get_db, get_env, handler, log_debug, mint, set_db};

const ALPHA: f64 = 0.05;

fn env_f64(key: &str, default: f64) -> f64 {
    get_env(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

handler!(start, |event: Event| {
    let id = &event.device.id;
    let watts = event.reading.sensor_reading;
    // The time the processor pays for, not the window the device claims.
    let window_h = event.paid_s as f64 / 3600.0;
    let key = format!("baseline/{id}");
    // [baseline W, windows seen]
    let (baseline, seen) = match get_db(key.as_bytes())? {
        Some(v) => serde_json::from_slice::<(f64, u64)>(&v).unwrap_or((watts, 0)),
        None => (watts, 0),
    };
    let next = (baseline * (1.0 - ALPHA) + watts * ALPHA, seen + 1);
    set_db(
        key.as_bytes(),
        serde_json::to_string(&next).unwrap_or_default().as_bytes(),
    )?;
    if seen < env_f64("WARMUP", 12.0) as u64 || watts >= baseline {
        return Ok(());
    }
    let saved_wh = (baseline - watts) * window_h;
    let mut amount = (saved_wh * env_f64("RATE_PER_WH", 1.0) * TOKEN as f64) as u128;
    let epoch = event.reading.timestamp / 3600;
    let cap = (env_f64("CAP_PER_EPOCH", 2.0) * TOKEN as f64) as u128;
    let paid_key = format!("baseline/paid/{id}/{epoch}");
    let paid: u128 = get_db(paid_key.as_bytes())?
        .and_then(|v| core::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    amount = amount.min(cap.saturating_sub(paid));
    if amount == 0 {
        return Ok(());
    }
    mint(&event.device.address, amount)?;
    set_db(paid_key.as_bytes(), format!("{}", paid + amount).as_bytes())?;
    log_debug(&format!(
        "saved {saved_wh:.6} Wh against a {baseline:.3} W baseline: minted {amount}"
    ));
    Ok(())
});
