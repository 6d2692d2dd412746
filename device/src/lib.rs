//! # wattstream-device
//!
//! The meter: an INA219 read through the `ina219` driver (on real I2C, or on an
//! emulated bus under `--sim`), five-second windows with trapezoidal energy,
//! signed envelopes in a durable outbox, an uplink with backoff and a dead-letter
//! file, a state file for the screen, and systemd notify/watchdog.

pub mod clock;
pub mod config;
pub mod daemon;
pub mod deadletter;
pub mod mqtt;
pub mod outbox;
pub mod provision;
pub mod rewards;
pub mod sensor;
pub mod uplink;
pub mod window;
