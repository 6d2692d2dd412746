//! User applets: WebAssembly modules with the W3bstream v1 ABI, run by wasmtime
//! for each event.
//!
//! - [`runtime`]: engine, module cache, limits, one fresh instance per call.
//! - [`abi`]: the host functions.
//! - [`db`]: a project's SQLite database (its KV store and the applets' SQL tables).
//! - [`host_db`]: the project database a call runs against, on either engine.
//! - [`pg_sql`]: applet SQL on PostgreSQL, inside the project's own role.
//! - [`tables`]: the host's own `_ws_*` tables, the same statements on both engines.
//! - [`event`]: one event through the chain, and what its applets saw.
//! - [`evm`]: the ledger calls behind `ws_send_tx` and `ws_call_contract`.
//! - [`slot`]: where a project database waits between calls.
//! - [`state`]: what one call sees and produces.
//! - [`order`]: where applets go in a chain, and gates before minters.
//! - [`projects`]: deployed applets, strategies, environments, publishers.
//! - [`definitions`]: where those are stored, on either engine.
//! - [`worker`]: runs the default project's applets over the stored stream.
//! - [`lease`]: the same on PostgreSQL, shared by any number of processors.
//! - [`runner`]: one applet on one event, in memory (`wattstream applet run`).

pub mod abi;
pub mod call;
pub mod db;
pub mod definitions;
pub mod event;
pub mod evm;
pub mod host_db;
pub mod lease;
pub mod order;
pub mod pg_sql;
pub mod projects;
pub mod runner;
pub mod runtime;
pub mod slot;
pub mod state;
pub mod stats;
pub mod tables;
pub mod worker;
