//! # wattstream-processor
//!
//! The W3bstream-style processor: it verifies every signed envelope, knows which
//! devices are registered, and stores the stream durably in an embedded SQLite
//! store. The ingest path is an explicit pipeline (see [`pipeline`]); the HTTP API
//! is in [`api`]; [`server`] wires them together and handles shutdown. The
//! `wattstream` binary's commands (the benchmark and the demo among them) drive
//! this library; they are not part of it.

pub mod api;
pub mod applets;
pub mod chain;
pub mod config;
pub mod engine;
pub mod http;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod onboarding;
pub mod pipeline;
pub mod read_tokens;
pub mod registry;
pub mod retention;
pub mod rewards;
pub mod server;
pub mod store;
pub mod tls;
pub mod web;

/// A PostgreSQL database per test (shared with the integration tests).
#[cfg(test)]
#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
pub(crate) mod testdb;
