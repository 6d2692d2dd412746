//! systemd integration through `sd_notify` for the meter and the screen (feature
//! `systemd`): READY once the service works, STATUS lines for `systemctl status`,
//! WATCHDOG pings from the loop that must stay alive (so a hung bus stops the
//! pings and systemd restarts the service), STOPPING at exit. Outside systemd
//! (no `NOTIFY_SOCKET`) every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Tells systemd the service is up.
pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

/// A one-line status for `systemctl status`.
pub fn status(text: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(text)]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog at most twice per `WatchdogSec`.
pub struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    pub fn from_env() -> Self {
        Watchdog {
            every: sd_notify::watchdog_enabled().map(|d| d / 2),
            last: Instant::now(),
        }
    }

    /// Call from the loop that must stay alive.
    pub fn ping(&mut self) {
        if let Some(every) = self.every
            && self.last.elapsed() >= every
        {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }
}
