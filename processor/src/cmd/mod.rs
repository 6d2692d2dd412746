//! The `wattstream` commands, one module each: its arguments beside its
//! `run()`. `main.rs` only parses and dispatches. The server itself lives in
//! the library (`wattstream_processor`); the benchmark and the demo are
//! programs that drive it, so they live here, in the binary.

pub mod applet;
pub mod applet_chain;
pub mod bench;
pub mod chain;
pub mod client;
pub mod demo;
pub mod demo_chain;
mod demo_report;
pub mod device;
pub mod onboarding;
pub mod rewards;
pub mod serve;
pub mod verify;

/// A multi-threaded tokio runtime for the commands that need one.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
