//! `identity`: the gate in front of the reward applets. It refuses an event when
//! the device is not verified and active, has no owner binding, or its reading is
//! implausible: negative energy, power above `MAX_POWER_W` (project env, default
//! 5000 W), or a timestamp that goes backwards while `seq` goes forward. Codes
//! (negative: W3bstream v1 reads a handler's return `< 0` as failure): -1 not
//! verified/active, -2 no owner, -3 negative energy, -4 timestamp regression,
//! -5 power above the maximum.

#![no_std]

extern crate alloc;

use alloc::format;
use wattstream_applet::{Error, Event, get_db, get_env, handler, log_debug, set_db};

handler!(start, |event: Event| {
    let d = &event.device;
    if !d.verified || d.status != "active" {
        return Err(Error::reject(-1, "device is not verified and active"));
    }
    if d.owner.is_empty() {
        return Err(Error::reject(-2, "device has no owner binding"));
    }
    let r = &event.reading;
    if r.energy_wh.is_some_and(|e| e < 0.0) {
        return Err(Error::reject(-3, "negative energy"));
    }
    let max_w: f64 = get_env("MAX_POWER_W")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000.0);
    if r.sensor_reading > max_w {
        return Err(Error::reject(
            -5,
            &format!("{} W is above the {} W maximum", r.sensor_reading, max_w),
        ));
    }
    if let Some(seq) = r.seq {
        let key = format!("identity/last/{}", d.id);
        if let Some(last) = get_db(key.as_bytes())? {
            let last: [u64; 2] = serde_json::from_slice(&last).unwrap_or([0, 0]);
            if seq > last[0] && r.timestamp < last[1] {
                return Err(Error::reject(
                    -4,
                    "timestamp went backwards while seq went forward",
                ));
            }
        }
        set_db(
            key.as_bytes(),
            serde_json::to_string(&[seq, r.timestamp])
                .unwrap_or_default()
                .as_bytes(),
        )?;
    }
    log_debug(&format!("identity ok: {} seq {:?}", d.id, r.seq));
    Ok(())
});
