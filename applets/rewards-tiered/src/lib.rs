//! `rewards-tiered`: the W3bstream demo's rule, pro-rated per window and minted
//! through ERC-20 `mint` on the rewards ledger. Average power under 3 W earns
//! 10 tokens an hour, under 5 W 4 tokens an hour, otherwise nothing. A reading
//! earns `rate × paid_s / 3600` tokens, in 18-decimal units, rounded down, where
//! `paid_s` is the time the processor pays for (`WS_PAID_S`), not the
//! `window_s` the device claims.

#![no_std]

extern crate alloc;

use alloc::format;
use wattstream_applet::{Error, Event, TOKEN, handler, log_debug, mint};

/// Tokens per hour for an average power.
pub fn rate_per_hour(watts: f64) -> u128 {
    if watts < 3.0 {
        10
    } else if watts < 5.0 {
        4
    } else {
        0
    }
}

handler!(start, |event: Event| {
    let paid_s = event.paid_s as u128;
    let amount = rate_per_hour(event.reading.sensor_reading) * TOKEN * paid_s / 3600;
    if amount == 0 {
        return Ok(());
    }
    if event.device.address.is_empty() {
        return Err(Error::reject(-1, "no verified device address"));
    }
    mint(&event.device.address, amount)?;
    log_debug(&format!("minted {amount} units to {}", event.device.address));
    Ok(())
});
