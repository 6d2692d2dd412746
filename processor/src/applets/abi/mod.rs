//! The host side of the W3bstream v1 applet ABI (DESIGN §4), one file per
//! capability, in the manner of Spin's factors: each module links its own
//! imports and tests them.
//!
//! - [`memory`]: the only code that reads or writes guest memory (bounds,
//!   caps, the `alloc` out-pointer protocol);
//! - [`log`]: `ws_log`, `ws_submit_metrics` and AssemblyScript's `abort`;
//! - [`env`]: the event (`ws_get_data`, `ws_set_data`, `ws_get_event_type`),
//!   the environment (`ws_get_env`) and `ws_api_call`;
//! - [`kv`]: `ws_get_db`, `ws_set_db`;
//! - [`sql`]: `ws_set_sql_db`, `ws_get_sql_db`;
//! - [`chain`]: `ws_send_tx`, `ws_call_contract` (the ledger token);
//! - [`wasi`]: the few WASI preview 1 calls TinyGo and wasi-libc applets make.
//!
//! Names, status codes and log levels come from `wattstream-abi`, the crate
//! the Rust applet SDK uses too.

pub mod chain;
pub mod env;
pub mod kv;
pub mod log;
pub mod memory;
pub mod sql;
pub mod wasi;

use wasmtime::Linker;

use super::state::HostState;

/// Adds every import to `linker`.
pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::link(linker)?;
    env::link(linker)?;
    kv::link(linker)?;
    sql::link(linker)?;
    chain::link(linker)?;
    wasi::link(linker)
}

/// A guest for the capability tests: a small module linked against one
/// capability, over a fresh in-memory project database.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;
    use std::time::Duration;

    use wasmtime::{Engine, Instance, Linker, Module, Store, Val};

    use crate::applets::db::ProjectDb;
    use crate::applets::state::{AppletLimits, Effects, EventInput, HostState};

    pub struct Guest {
        pub store: Store<HostState>,
        instance: Instance,
    }

    /// A module that imports each `(module, name, params)` as an
    /// `(i32 * params) -> i32` function and re-exports it under `name`, with a
    /// page of memory holding `data`, and a bump `alloc` starting at 4096.
    pub fn wat(imports: &[(&str, &str, usize)], data: &[(u32, &[u8])]) -> String {
        let mut m = String::from("(module\n");
        for (i, (module, name, n)) in imports.iter().enumerate() {
            let params = "i32 ".repeat(*n);
            m += &format!("(import \"{module}\" \"{name}\" (func $f{i} (param {params}) (result i32)))\n");
        }
        m += "(memory (export \"memory\") 1)\n(global $next (mut i32) (i32.const 4096))\n";
        m += "(func (export \"alloc\") (param i32) (result i32) (local i32)
                global.get $next local.set 1
                global.get $next local.get 0 i32.add global.set $next
                local.get 1)\n";
        for (i, (_, name, n)) in imports.iter().enumerate() {
            let params = "i32 ".repeat(*n);
            let gets: String = (0..*n).map(|k| format!("local.get {k} ")).collect();
            m += &format!("(func (export \"{name}\") (param {params}) (result i32) {gets} call $f{i})\n");
        }
        for (at, bytes) in data {
            let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
            m += &format!("(data (i32.const {at}) \"{escaped}\")\n");
        }
        m + ")"
    }

    /// The event every test guest runs on.
    pub fn event() -> EventInput {
        EventInput {
            rid: 7,
            payload: br#"{"data":{"sensor_reading":1.5,"timestamp":100}}"#.to_vec(),
            event_type: "DATA".into(),
            env: HashMap::from([("COLOR".to_string(), "green".to_string())]),
            token: Some(wattstream_abi::LEDGER_TOKEN.into()),
            seed: 42,
            time_ns: 1_000_000_007,
            chains: vec![1337],
            calls: None,
        }
    }

    impl Guest {
        pub fn new(wat: &str, link: fn(&mut Linker<HostState>) -> wasmtime::Result<()>) -> Guest {
            let engine = Engine::default();
            let mut linker = Linker::new(&engine);
            link(&mut linker).expect("link");
            let module = Module::new(&engine, wat).expect("test module");
            let limits = AppletLimits::default();
            let state = HostState {
                limits: limits.store_limits(),
                applet_limits: limits,
                event: event(),
                db: Some(crate::applets::host_db::HostDb::Sqlite(
                    ProjectDb::open(None, Duration::from_millis(100)).expect("project db"),
                )),
                effects: Effects::default(),
                log_bytes: 0,
                rng: 42,
                exports: Default::default(),
                chains: None,
            };
            let mut store = Store::new(&engine, state);
            store.limiter(|s| &mut s.limits);
            let instance = linker.instantiate(&mut store, &module).expect("instantiate");
            store.data_mut().exports = crate::applets::state::Exports::of(&instance, &mut store);
            Guest { store, instance }
        }

        /// Calls export `name` with i32 arguments; its i32 result.
        pub fn call(&mut self, name: &str, args: &[i32]) -> i32 {
            self.try_call(name, args).expect("call")
        }

        /// Like [`Guest::call`], keeping a trap as an error.
        pub fn try_call(&mut self, name: &str, args: &[i32]) -> wasmtime::Result<i32> {
            let f = self
                .instance
                .get_func(&mut self.store, name)
                .unwrap_or_else(|| panic!("no export {name}"));
            let args: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
            let mut out = [Val::I32(0)];
            f.call(&mut self.store, &args, &mut out)?;
            Ok(out[0].unwrap_i32())
        }

        pub fn bytes(&mut self, at: u32, len: usize) -> Vec<u8> {
            let mem = self
                .instance
                .get_memory(&mut self.store, "memory")
                .expect("memory");
            mem.data(&self.store)[at as usize..at as usize + len].to_vec()
        }

        pub fn u32_at(&mut self, at: u32) -> u32 {
            u32::from_le_bytes(self.bytes(at, 4).try_into().expect("4 bytes"))
        }

        /// The output an import wrote through out pointers at 100 and 104.
        pub fn out(&mut self) -> Vec<u8> {
            let (addr, len) = (self.u32_at(100), self.u32_at(104));
            self.bytes(addr, len as usize)
        }

        pub fn state(&self) -> &HostState {
            self.store.data()
        }
    }
}
