//! # wattstream-applet
//!
//! Write WattStream applets in Rust. An applet is a WebAssembly module the
//! processor runs for each event; it uses the W3bstream v1 host ABI, so applets
//! built with this crate also run on W3bstream, and W3bstream applets run on
//! WattStream.
//!
//! ## Walkthrough
//!
//! 1. A crate of type `cdylib` depending on `wattstream-applet`.
//! 2. Declare a handler with [`handler!`]; it gets the [`Event`] and returns
//!    `Ok(())` to accept or an [`Error`] to reject. As on W3bstream v1, a
//!    handler's return value `< 0` is a failure and `>= 0` a success, so a
//!    rejection's code is negative: the call's writes are rolled back and
//!    later applets in the chain do not run:
//!
//! ```ignore
//! use wattstream_applet::{handler, log_info, Error, Event};
//!
//! handler!(start, |event: Event| {
//!     log_info(&format!("{} W from {}", event.reading.sensor_reading, event.device.id));
//!     if event.reading.sensor_reading > 10_000.0 {
//!         return Err(Error::reject(-5, "implausible power"));
//!     }
//!     Ok(())
//! });
//! ```
//!
//! 3. Build: `applets/build.sh` (wasm32-unknown-unknown, release).
//! 4. Try it on one event without a server:
//!    `wattstream applet run --wasm target/.../my_applet.wasm --event event.json`
//!    prints the logs, return code, SQL changes, ledger credits and time.
//! 5. Deploy: `wattstream applet deploy --server URL --token T --project P --name N --wasm FILE`.
//!    Add `--stateless` when the applet keeps nothing in memory between
//!    events (no `static` state): one instance then serves a batch of events,
//!    which is faster; [`handler!`] empties the heap at each call.
//!
//! ## What an event carries
//! `ws_get_data` returns the envelope body as the meter signed and sent it. The
//! processor has already verified the signature and the registration; it passes
//! what it verified through reserved environment keys, read by [`Event::load`]:
//! `WS_VERIFIED` (`"true"`), `WS_DEVICE_ID`, `WS_DEVICE_ADDRESS` (`0x` + id),
//! `WS_DEVICE_OWNER` (empty when none), `WS_DEVICE_STATUS` (`active`/`revoked`),
//! `WS_EVENT_ID`, and `WS_PAID_S` ([`Event::paid_s`]): the seconds of this
//! reading the processor lets rewards pay for. The device signs its own
//! `window_s`, so its owner can claim any: pay by `paid_s`.
//!
//! ## Rewards
//! [`mint`] sends an ERC-20 `mint(address,uint256)` call through `ws_send_tx`;
//! the processor's built-in settlement target credits its rewards ledger. Token
//! amounts are integers in the token's smallest unit (18 decimals:
//! [`TOKEN`] units are one token).

#![no_std]

extern crate alloc;

pub mod ffi;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Deserialize;

/// One token in its smallest units (18 decimals, as ERC-20 tokens usually have).
pub const TOKEN: u128 = 1_000_000_000_000_000_000;

/// The allocator export the host calls to place outputs in this module's memory.
/// Memory is never freed within a call; [`handler!`] starts each call with an
/// empty heap (see [`begin_call`]).
#[unsafe(no_mangle)]
pub extern "C" fn alloc(size: i32) -> i32 {
    let mut buf: Vec<u8> = Vec::with_capacity(size.max(1) as usize);
    let ptr = buf.as_mut_ptr();
    core::mem::forget(buf);
    ptr as i32
}

use wattstream_abi::{BALANCE_OF_SELECTOR, MINT_SELECTOR, env};
pub use wattstream_abi::{LEDGER_TOKEN, Level};

/// A host status other than 0, as the import returned it (see
/// [`wattstream_abi::Status`] for the numbers the ABI defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    pub const NOT_FOUND: Status = Status(wattstream_abi::Status::NotFound.code());
    pub const ENV_MISSING: Status = Status(wattstream_abi::Status::EnvKeyMissing.code());
    pub const FAILED: Status = Status(wattstream_abi::Status::Failed.code());

    /// The ABI's name for this status, when it defines one.
    pub fn known(self) -> Option<wattstream_abi::Status> {
        wattstream_abi::Status::from_code(self.0)
    }
}

/// Why a handler refuses an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The handler's return value (negative: W3bstream v1 reads `< 0` as
    /// failure).
    pub code: i32,
    pub reason: String,
}

impl Error {
    /// A rejection with a negative code and a reason (logged at error level).
    /// A code that is not negative would read as success to the host, so it
    /// is made negative: `reject(5, ..)` returns -5, `reject(0, ..)` -1.
    pub fn reject(code: i32, reason: &str) -> Self {
        let code = if code < 0 { code } else { -code.max(1) };
        Error {
            code,
            reason: reason.to_string(),
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error {
            code: -(100 + s.0.abs()),
            reason: format!("host call failed with status {}", s.0),
        }
    }
}

fn check(status: i32) -> Result<(), Status> {
    if status == wattstream_abi::Status::Ok.code() {
        Ok(())
    } else {
        Err(Status(status))
    }
}

/// Runs a host call that returns bytes through the out-pointer protocol.
fn output(call: impl FnOnce(*mut u32, *mut u32) -> i32) -> Result<Vec<u8>, Status> {
    let (mut ptr, mut len) = (0u32, 0u32);
    check(call(&mut ptr, &mut len))?;
    if len == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the host copied `len` bytes to `ptr`, memory it obtained from our
    // `alloc` (a leaked Vec of at least `len` capacity) and never frees.
    Ok(unsafe { Vec::from_raw_parts(ptr as *mut u8, len as usize, len as usize) })
}

/// Writes a line to the applet log.
pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length of a live str.
    unsafe { ffi::ws_log(level as i32, message.as_ptr(), message.len() as i32) };
}

/// A debug line: stored only where the processor's `applets.log_level` is
/// `debug` or `trace` (the default stores `info` and above). For per-event
/// chatter, which at fleet rates would be most of what a project writes.
pub fn log_debug(message: &str) {
    log(Level::Debug, message)
}

pub fn log_info(message: &str) {
    log(Level::Info, message)
}

pub fn log_warn(message: &str) {
    log(Level::Warn, message)
}

pub fn log_error(message: &str) {
    log(Level::Error, message)
}

/// The raw payload of event `rid`.
pub fn get_data(rid: i32) -> Result<Vec<u8>, Status> {
    // SAFETY: out-pointers to locals, see `output`.
    output(|p, l| unsafe { ffi::ws_get_data(rid, p, l) })
}

/// Sets the response payload of event `rid`.
pub fn set_data(rid: i32, data: &[u8]) -> Result<(), Status> {
    check(unsafe { ffi::ws_set_data(rid, data.as_ptr(), data.len() as i32) })
}

/// The event type of `rid` (`DATA` for meter readings).
pub fn event_type(rid: i32) -> Result<String, Status> {
    let bytes = output(|p, l| unsafe { ffi::ws_get_event_type(rid, p, l) })?;
    String::from_utf8(bytes).map_err(|_| Status(-1))
}

/// A value from the project's key-value store, `None` when absent.
pub fn get_db(key: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    match output(|p, l| unsafe { ffi::ws_get_db(key.as_ptr(), key.len() as i32, p, l) }) {
        Ok(v) => Ok(Some(v)),
        Err(Status::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores a value in the project's key-value store.
pub fn set_db(key: &[u8], value: &[u8]) -> Result<(), Status> {
    check(unsafe { ffi::ws_set_db(key.as_ptr(), key.len() as i32, value.as_ptr(), value.len() as i32) })
}

/// A project environment variable (or a reserved `WS_*` event key).
pub fn get_env(key: &str) -> Option<String> {
    let bytes = output(|p, l| unsafe { ffi::ws_get_env(key.as_ptr(), key.len() as i32, p, l) }).ok()?;
    String::from_utf8(bytes).ok()
}

/// A typed SQL parameter.
#[derive(Debug, Clone)]
pub enum Param<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bool(bool),
}

fn sql_json(statement: &str, params: &[Param<'_>]) -> String {
    let params: Vec<serde_json::Value> = params
        .iter()
        .map(|p| match p {
            Param::Int(v) => serde_json::json!({ "int64": v }),
            Param::Float(v) => serde_json::json!({ "float64": v }),
            Param::Text(v) => serde_json::json!({ "string": v }),
            Param::Bool(v) => serde_json::json!({ "bool": v }),
        })
        .collect();
    serde_json::json!({ "statement": statement, "params": params }).to_string()
}

/// Executes a statement in the project's SQL database.
pub fn sql_exec(statement: &str, params: &[Param<'_>]) -> Result<(), Status> {
    let q = sql_json(statement, params);
    check(unsafe { ffi::ws_set_sql_db(q.as_ptr(), q.len() as i32) })
}

/// Runs a query; the rows come back as a JSON array of objects.
pub fn sql_query(statement: &str, params: &[Param<'_>]) -> Result<serde_json::Value, Status> {
    let q = sql_json(statement, params);
    let bytes = output(|p, l| unsafe { ffi::ws_get_sql_db(q.as_ptr(), q.len() as i32, p, l) })?;
    serde_json::from_slice(&bytes).map_err(|_| Status(-1))
}

/// Sends a transaction (`{"to","value","data"}`) on `chain_id`; returns the host's answer.
pub fn send_tx(chain_id: i32, to: &str, value: &str, data: &str) -> Result<String, Status> {
    let tx = serde_json::json!({ "to": to, "value": value, "data": data }).to_string();
    let bytes = output(|p, l| unsafe { ffi::ws_send_tx(chain_id, tx.as_ptr(), tx.len() as i32, p, l) })?;
    String::from_utf8(bytes).map_err(|_| Status(-1))
}

/// A read-only contract call; returns the raw result bytes.
pub fn call_contract(chain_id: i32, to: &str, data: &str) -> Result<Vec<u8>, Status> {
    let call = serde_json::json!({ "to": to, "data": data }).to_string();
    output(|p, l| unsafe { ffi::ws_call_contract(chain_id, call.as_ptr(), call.len() as i32, p, l) })
}

/// Submits a metrics object (JSON) for the processor's `/metrics`.
pub fn submit_metrics(json: &str) -> Result<(), Status> {
    check(unsafe { ffi::ws_submit_metrics(json.as_ptr(), json.len() as i32) })
}

/// The token `mint` goes to: `TOKEN_CONTRACT` from the project env, else the ledger.
fn token() -> String {
    get_env(env::TOKEN_CONTRACT).unwrap_or_else(|| LEDGER_TOKEN.to_string())
}

fn selector(s: [u8; 4]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

/// Mints `amount` token units to `address` through ERC-20 `mint(address,uint256)`.
pub fn mint(address: &str, amount: u128) -> Result<String, Status> {
    let addr = address.trim_start_matches("0x");
    let data = format!("0x{}{:0>64}{:064x}", selector(MINT_SELECTOR), addr, amount);
    send_tx(0, &token(), "0", &data)
}

/// The token balance of `address` (`balanceOf(address)` on the ledger).
pub fn balance_of(address: &str) -> Result<u128, Status> {
    let to = token();
    let data = format!(
        "0x{}{:0>64}",
        selector(BALANCE_OF_SELECTOR),
        address.trim_start_matches("0x")
    );
    let out = call_contract(0, &to, &data)?;
    Ok(out
        .iter()
        .rev()
        .take(16)
        .rev()
        .fold(0u128, |acc, b| (acc << 8) | *b as u128))
}

/// The reading inside an event (DESIGN §2).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Reading {
    pub sensor_reading: f64,
    pub timestamp: u64,
    pub seq: Option<u64>,
    pub window_s: Option<u32>,
    pub energy_wh: Option<f64>,
}

#[derive(Deserialize)]
struct Body {
    data: Reading,
}

/// The verified device behind an event.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub id: String,
    /// `0x` + id: the ledger account.
    pub address: String,
    /// Empty when the device has no owner binding.
    pub owner: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Whether the processor verified signature and registration.
    pub verified: bool,
}

/// One event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rid: i32,
    /// The payload bytes (the envelope body).
    pub payload: Vec<u8>,
    pub reading: Reading,
    pub device: Device,
    /// Seconds of this reading the rewards may pay for, as the processor
    /// decided (`WS_PAID_S`): never more than the time since the device's
    /// previous paid reading, nothing before its registration. Pay by this,
    /// never by the device's own `reading.window_s`; 0 where no processor
    /// says (so nothing is paid).
    pub paid_s: u64,
}

impl Event {
    /// Loads event `rid`: payload, reading and the verified device.
    pub fn load(rid: i32) -> Result<Event, Error> {
        let payload = get_data(rid)?;
        let body: Body = serde_json::from_slice(&payload)
            .map_err(|_| Error::reject(-90, "payload is not a meter envelope"))?;
        let var = |k: &str| get_env(k).unwrap_or_default();
        Ok(Event {
            rid,
            reading: body.data,
            device: Device {
                id: var(env::DEVICE_ID),
                address: var(env::DEVICE_ADDRESS),
                owner: var(env::DEVICE_OWNER),
                status: var(env::DEVICE_STATUS),
                verified: var(env::VERIFIED) == "true",
            },
            paid_s: var(env::PAID_S).parse().unwrap_or(0),
            payload,
        })
    }
}

/// Declares an exported handler `name(rid) -> i32` around a closure taking an
/// [`Event`] and returning `Result<(), Error>`.
#[macro_export]
macro_rules! handler {
    ($name:ident, $body:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(rid: i32) -> i32 {
            $crate::begin_call();
            let run: fn($crate::Event) -> Result<(), $crate::Error> = $body;
            match $crate::Event::load(rid).and_then(run) {
                Ok(()) => 0,
                Err(e) => {
                    $crate::log_error(&e.reason);
                    e.code
                }
            }
        }
    };
}

/// Starts a handler call with an empty heap; [`handler!`] calls it first.
///
/// The processor may keep one instance across a batch's events for an
/// applet deployed `--stateless`. The heap is a bump allocator that never
/// frees, so without this each event would leave its allocations behind and
/// the instance's memory would grow with every call. Resetting is sound
/// because nothing allocated in an earlier call is alive when a handler
/// starts: the handler's values were dropped when it returned, and what the
/// host placed with [`alloc`] belonged to that call. It is not sound for an
/// applet that keeps heap data in a `static` between calls, which is also
/// why such an applet must not be deployed `--stateless`. In a fresh
/// instance (the default) the heap is already empty.
#[doc(hidden)]
pub fn begin_call() {
    #[cfg(target_arch = "wasm32")]
    allocator::reset();
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(target_arch = "wasm32")]
mod allocator {
    /// A bump allocator over linear memory, emptied at the start of each
    /// handler call ([`super::begin_call`]).
    /// The heap starts where the linker put it (`__heap_base`, after the
    /// stack and the data), so an event's allocations fit in the memory the
    /// module starts with: growing it costs the host two `mprotect` calls and
    /// TLB shootdowns on every core per instance (the sustained ingest
    /// profile), where starting at the end of that memory always grew it.
    struct Bump;

    static mut NEXT: usize = 0;

    unsafe extern "C" {
        static __heap_base: u8;
    }

    unsafe impl core::alloc::GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
            // SAFETY: single-threaded wasm; NEXT is only touched here, and
            // `__heap_base` is a linker symbol whose address is all we read.
            unsafe {
                if NEXT == 0 {
                    NEXT = core::ptr::addr_of!(__heap_base) as usize;
                }
                let start = (NEXT + layout.align() - 1) & !(layout.align() - 1);
                let end = start + layout.size();
                let have = core::arch::wasm32::memory_size(0) * 65536;
                if end > have {
                    let pages = (end - have).div_ceil(65536);
                    if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                        return core::ptr::null_mut();
                    }
                }
                NEXT = end;
                start as *mut u8
            }
        }
        unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
    }

    #[global_allocator]
    static GLOBAL: Bump = Bump;

    /// Forgets every allocation: the next starts at `__heap_base` again.
    pub(super) fn reset() {
        // SAFETY: single-threaded wasm, and no allocation is alive at the
        // start of a handler call (see `begin_call`).
        unsafe { NEXT = 0 }
    }
}
