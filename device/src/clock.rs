//! The meter signs readings with wall-clock timestamps, and a Raspberry Pi
//! has no real-time clock: until NTP has set it, it may read days in the
//! past (readings the processor would call stale) or the future
//! (`future_timestamp`). So the meter waits for a synchronised clock before it
//! opens its outbox or signs anything, and says so in its state file.
//!
//! "Synchronised" is the kernel's own verdict (the `adjtimex(2)` status
//! without `STA_UNSYNC`), read through systemd-timedated's `NTPSynchronized`
//! (`timedatectl show -p NTPSynchronized --value`), the same bit; the house
//! keeps `unsafe` out of the meter, and no maintained crate wraps `adjtimex`
//! safely. Where that cannot be asked (no systemd, a container) the clock is
//! `unknown` and the meter goes on: it never blocks forever on a system that
//! cannot tell. `clock_sync_command = []` turns the wait off.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wattstream_sdk::notify;
use wattstream_sdk::state::{ClockStatus, MeterState, STATE_VERSION};

/// How often the clock is asked while waiting.
const POLL: Duration = Duration::from_secs(2);

/// Runs `command` (`yes` = synchronised, `no` = not yet, anything else or a
/// failure = cannot tell).
pub fn check(command: &[String]) -> ClockStatus {
    let Some((program, args)) = command.split_first() else {
        return ClockStatus::Unknown;
    };
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => ClockStatus::Synchronized,
            "no" => ClockStatus::Waiting,
            _ => ClockStatus::Unknown,
        },
        _ => ClockStatus::Unknown,
    }
}

/// Blocks until the clock is synchronised (or cannot be asked), keeping the
/// systemd watchdog fed and the state file saying `"clock": "waiting"`.
pub fn wait_for_sync(command: &[String], device_id: &str, window_s: u64, state_file: &Path) -> ClockStatus {
    let mut dog = notify::Watchdog::from_env();
    let mut told = false;
    loop {
        let status = check(command);
        if status != ClockStatus::Waiting {
            if told {
                tracing::info!(?status, "the clock is synchronised: starting");
            }
            return status;
        }
        if !told {
            tracing::warn!("the clock is not synchronised yet: waiting before signing any reading");
            notify::ready();
            notify::status("waiting for a synchronised clock");
            told = true;
        }
        let state = MeterState {
            version: STATE_VERSION,
            time: wattstream_sdk::time::unix_now(),
            device_id: device_id.to_string(),
            power_w: None,
            window_w: None,
            window_s,
            energy_today_wh: 0.0,
            history_w: Vec::new(),
            link: Default::default(),
            rewards: Default::default(),
            sensor: Default::default(),
            clock: ClockStatus::Waiting,
        };
        if let Err(e) = state.write(state_file) {
            tracing::warn!(error = %e, "could not write the state file");
        }
        dog.ping();
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_commands_answer_is_the_clock_status() {
        assert_eq!(check(&cmd("echo yes")), ClockStatus::Synchronized);
        assert_eq!(check(&cmd("echo no")), ClockStatus::Waiting);
        assert_eq!(check(&cmd("echo maybe")), ClockStatus::Unknown);
        assert_eq!(check(&cmd("exit 1")), ClockStatus::Unknown);
        assert_eq!(
            check(&["/nonexistent/timedatectl".to_string()]),
            ClockStatus::Unknown
        );
        assert_eq!(check(&[]), ClockStatus::Unknown);
    }
}
