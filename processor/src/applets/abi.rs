//! The host side of the W3bstream v1 applet ABI (DESIGN §4): every import an
//! applet may use, with W3bstream's status codes and the `alloc` out-pointer
//! protocol, plus the few WASI preview 1 calls a TinyGo applet makes (stdout and
//! stderr go to the applet log; no files, no network).
//!
//! Every pointer and length an applet passes is checked against its memory: a
//! bad one gets a status code (5: copying into the applet failed, 6: reading from
//! it failed), never a host panic. Nothing here needs `unsafe`.

use wasmtime::{Caller, Extern, Linker, Memory};

use super::db::SqlRequest;
use super::evm::{self, LedgerCall};
use super::state::{Credit, HostState};

pub const OK: i32 = 0;
pub const NOT_FOUND: i32 = 2;
pub const TO_VM_FAILED: i32 = 5;
pub const FROM_VM_FAILED: i32 = 6;
pub const ENV_MISSING: i32 = 8;
pub const FAILED: i32 = -1;

/// Largest single read from applet memory (a SQL statement, a transaction...).
const READ_MAX: usize = 1 << 20;

type C<'a> = Caller<'a, HostState>;

fn memory(caller: &mut C<'_>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// Copies `len` bytes at `ptr` out of the applet, or `None` when out of bounds.
fn read(caller: &mut C<'_>, ptr: i32, len: i32, max: usize) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > max {
        return None;
    }
    mem.data(&caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

fn write_u32(caller: &mut C<'_>, mem: &Memory, at: i32, value: u32) -> bool {
    let at = at as u32 as usize;
    match mem.data_mut(caller).get_mut(at..at + 4) {
        Some(slot) => {
            slot.copy_from_slice(&value.to_le_bytes());
            true
        }
        None => false,
    }
}

/// The out-pointer protocol: `alloc(len)` in the applet, copy the bytes there,
/// write address and length (u32 little-endian) at the two out pointers.
fn write_out(caller: &mut C<'_>, bytes: &[u8], out_ptr: i32, out_len: i32) -> wasmtime::Result<i32> {
    let Some(mem) = memory(caller) else {
        return Ok(TO_VM_FAILED);
    };
    let Some(alloc) = caller.get_export("alloc").and_then(Extern::into_func) else {
        return Ok(TO_VM_FAILED);
    };
    let Ok(alloc) = alloc.typed::<i32, i32>(&caller) else {
        return Ok(TO_VM_FAILED);
    };
    let addr = alloc.call(&mut *caller, bytes.len() as i32)? as u32 as usize;
    let fits = match mem
        .data_mut(&mut *caller)
        .get_mut(addr..addr.saturating_add(bytes.len()))
    {
        Some(dst) if addr.checked_add(bytes.len()).is_some() => {
            dst.copy_from_slice(bytes);
            true
        }
        _ => false,
    };
    if !fits
        || !write_u32(caller, &mem, out_ptr, addr as u32)
        || !write_u32(caller, &mem, out_len, bytes.len() as u32)
    {
        return Ok(TO_VM_FAILED);
    }
    Ok(OK)
}

fn level_name(level: i32) -> &'static str {
    match level {
        ..=1 => "trace",
        2 => "debug",
        3 | 4 => "info",
        5 => "warn",
        _ => "error",
    }
}

/// An AssemblyScript string: UTF-16LE, byte length in the u32 before it.
fn as_string(caller: &mut C<'_>, ptr: i32) -> String {
    if ptr < 4 {
        return String::new();
    }
    let len = read(caller, ptr - 4, 4, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
    let bytes = len
        .and_then(|len| read(caller, ptr, len.min(8192) as i32, 8192))
        .unwrap_or_default();
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Adds every import to `linker`.
pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "ws_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> i32 {
            // Read at most what may still be logged; a bad range is status 6.
            let mem_ok = memory(&mut c).is_some_and(|m| {
                let (start, n) = (ptr as u32 as usize, len as u32 as usize);
                start.checked_add(n).is_some_and(|end| end <= m.data_size(&c))
            });
            if !mem_ok {
                return FROM_VM_FAILED;
            }
            let take = (len as u32 as usize).min(4096);
            let message = read(&mut c, ptr, take as i32, 4096).unwrap_or_default();
            let dropped = len as u32 as usize - take;
            c.data_mut().log(level_name(level), &message);
            c.data_mut().effects.dropped_log_bytes += dropped;
            OK
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_get_data",
        |mut c: C<'_>, rid: i32, out_ptr: i32, out_len: i32| {
            if rid != c.data().event.rid {
                return Ok(NOT_FOUND);
            }
            let payload = c.data().event.payload.clone();
            write_out(&mut c, &payload, out_ptr, out_len)
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_set_data",
        |mut c: C<'_>, rid: i32, ptr: i32, len: i32| -> i32 {
            if rid != c.data().event.rid {
                return NOT_FOUND;
            }
            match read(&mut c, ptr, len, READ_MAX) {
                Some(b) => {
                    c.data_mut().effects.response = Some(String::from_utf8_lossy(&b).into_owned());
                    OK
                }
                None => FROM_VM_FAILED,
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_get_event_type",
        |mut c: C<'_>, rid: i32, out_ptr: i32, out_len: i32| {
            if rid != c.data().event.rid {
                return Ok(NOT_FOUND);
            }
            let t = c.data().event.event_type.clone();
            write_out(&mut c, t.as_bytes(), out_ptr, out_len)
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_get_db",
        |mut c: C<'_>, kptr: i32, klen: i32, out_ptr: i32, out_len: i32| {
            let Some(key) = read(&mut c, kptr, klen, READ_MAX) else {
                return Ok(FROM_VM_FAILED);
            };
            match c.data().db.kv_get(&key) {
                Ok(Some(v)) => write_out(&mut c, &v, out_ptr, out_len),
                Ok(None) => Ok(NOT_FOUND),
                Err(_) => Ok(FAILED),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_set_db",
        |mut c: C<'_>, kptr: i32, klen: i32, vptr: i32, vlen: i32| -> i32 {
            let (Some(key), Some(value)) = (
                read(&mut c, kptr, klen, READ_MAX),
                read(&mut c, vptr, vlen, READ_MAX),
            ) else {
                return FROM_VM_FAILED;
            };
            match c.data().db.kv_set(&key, &value) {
                Ok(()) => OK,
                Err(_) => FAILED,
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_get_env",
        |mut c: C<'_>, kptr: i32, klen: i32, out_ptr: i32, out_len: i32| {
            let Some(key) = read(&mut c, kptr, klen, 4096) else {
                return Ok(FROM_VM_FAILED);
            };
            let value = c.data().event.env.get(&*String::from_utf8_lossy(&key)).cloned();
            match value {
                Some(v) => write_out(&mut c, v.as_bytes(), out_ptr, out_len),
                None => Ok(ENV_MISSING),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_set_sql_db",
        |mut c: C<'_>, ptr: i32, len: i32| -> i32 {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return FROM_VM_FAILED;
            };
            let Ok(req) = SqlRequest::parse(&bytes) else {
                c.data_mut().log("error", b"ws_set_sql_db: not a SQL request");
                return FAILED;
            };
            let result = c.data_mut().db.exec(&req);
            match result {
                Ok(n) => {
                    c.data_mut().effects.sql.push((req.statement, n));
                    OK
                }
                Err(e) => {
                    c.data_mut()
                        .log("error", format!("ws_set_sql_db: {e}").as_bytes());
                    FAILED
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_get_sql_db",
        |mut c: C<'_>, ptr: i32, len: i32, out_ptr: i32, out_len: i32| {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return Ok(FROM_VM_FAILED);
            };
            let Ok(req) = SqlRequest::parse(&bytes) else {
                return Ok(FAILED);
            };
            let result = c.data_mut().db.query(&req);
            match result {
                Ok(rows) => write_out(&mut c, &rows, out_ptr, out_len),
                Err(e) => {
                    c.data_mut()
                        .log("error", format!("ws_get_sql_db: {e}").as_bytes());
                    Ok(FAILED)
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_send_tx",
        |mut c: C<'_>, _chain: i32, ptr: i32, len: i32, out_ptr: i32, out_len: i32| {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return Ok(FROM_VM_FAILED);
            };
            let token = c.data().event.token.clone();
            match evm::decode(&bytes, &token) {
                Ok(LedgerCall::Mint { address, amount }) => {
                    let state = c.data_mut();
                    let n = state.effects.credits.len();
                    state.effects.credits.push(Credit {
                        address: format!("0x{}", hex::encode(address)),
                        amount,
                    });
                    let id = format!("0x{:016x}{:016x}", state.event.seed, n);
                    write_out(&mut c, id.as_bytes(), out_ptr, out_len)
                }
                Ok(LedgerCall::BalanceOf { .. }) => Ok(FAILED),
                Err(e) => {
                    c.data_mut().log("error", format!("ws_send_tx: {e}").as_bytes());
                    Ok(FAILED)
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_call_contract",
        |mut c: C<'_>, _chain: i32, ptr: i32, len: i32, out_ptr: i32, out_len: i32| {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return Ok(FROM_VM_FAILED);
            };
            let token = c.data().event.token.clone();
            match evm::decode(&bytes, &token) {
                Ok(LedgerCall::BalanceOf { address }) => {
                    let word = evm::uint256(c.data().balance(&address));
                    write_out(&mut c, &word, out_ptr, out_len)
                }
                Ok(LedgerCall::Mint { .. }) => Ok(FAILED),
                Err(e) => {
                    c.data_mut()
                        .log("error", format!("ws_call_contract: {e}").as_bytes());
                    Ok(FAILED)
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "ws_api_call",
        |mut c: C<'_>, _ptr: i32, _len: i32, _op: i32, _ol: i32| -> i32 {
            c.data_mut().log(
                "error",
                b"ws_api_call: W3bstream's internal API is not offered by WattStream",
            );
            FAILED
        },
    )?;

    linker.func_wrap(
        "stat",
        "ws_submit_metrics",
        |mut c: C<'_>, ptr: i32, len: i32| -> i32 {
            let Some(bytes) = read(&mut c, ptr, len, 64 << 10) else {
                return FROM_VM_FAILED;
            };
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) if v.is_object() => {
                    c.data_mut().effects.metrics.push(v);
                    OK
                }
                _ => FAILED,
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "abort",
        |mut c: C<'_>, msg: i32, file: i32, line: i32, col: i32| -> wasmtime::Result<()> {
            let (msg, file) = (as_string(&mut c, msg), as_string(&mut c, file));
            Err(wasmtime::Error::msg(format!(
                "abort: {msg} at {file}:{line}:{col}"
            )))
        },
    )?;

    link_wasi(linker)
}

const WASI: &str = "wasi_snapshot_preview1";
const EBADF: i32 = 8;
const ENOSYS: i32 = 52;

fn link_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, written: i32| -> i32 {
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            let Some(mem) = memory(&mut c) else { return EBADF };
            let mut total = 0u32;
            for i in 0..n.clamp(0, 1024) {
                let Some(iov) = read(&mut c, iovs + i * 8, 8, 8) else {
                    return EBADF;
                };
                let (ptr, len) = (
                    i32::from_le_bytes(iov[..4].try_into().expect("4")),
                    i32::from_le_bytes(iov[4..].try_into().expect("4")),
                );
                let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                    return EBADF;
                };
                total += bytes.len() as u32;
                let level = if fd == 1 { "info" } else { "error" };
                c.data_mut()
                    .log(level, bytes.strip_suffix(b"\n").unwrap_or(&bytes));
            }
            if write_u32(&mut c, &mem, written, total) {
                0
            } else {
                EBADF
            }
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |_: C<'_>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!("proc_exit({code})")))
    })?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(WASI, name, |mut c: C<'_>, count: i32, size: i32| -> i32 {
            let Some(mem) = memory(&mut c) else { return EBADF };
            if write_u32(&mut c, &mem, count, 0) && write_u32(&mut c, &mem, size, 0) {
                0
            } else {
                EBADF
            }
        })?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: C<'_>, _: i32, _: i32| -> i32 { 0 })?;
    }
    linker.func_wrap(WASI, "random_get", |mut c: C<'_>, buf: i32, len: i32| -> i32 {
        let Some(mem) = memory(&mut c) else { return EBADF };
        let mut bytes = vec![0u8; len.clamp(0, 1 << 16) as usize];
        for b in bytes.iter_mut() {
            // SplitMix64 seeded per event: deterministic, so replays agree.
            let s = &mut c.data_mut().rng;
            *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *b = ((*s ^ (*s >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 56) as u8;
        }
        match mem
            .data_mut(&mut c)
            .get_mut(buf as u32 as usize..buf as u32 as usize + bytes.len())
        {
            Some(dst) => {
                dst.copy_from_slice(&bytes);
                0
            }
            None => EBADF,
        }
    })?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: C<'_>, _id: i32, _precision: i64, out: i32| -> i32 {
            let Some(mem) = memory(&mut c) else { return EBADF };
            let t = c.data().event.time_ns;
            let at = out as u32 as usize;
            match mem.data_mut(&mut c).get_mut(at..at + 8) {
                Some(slot) => {
                    slot.copy_from_slice(&t.to_le_bytes());
                    0
                }
                None => EBADF,
            }
        },
    )?;
    linker.func_wrap(WASI, "fd_close", |_: C<'_>, _: i32| -> i32 { EBADF })?;
    linker.func_wrap(WASI, "fd_fdstat_get", |_: C<'_>, _: i32, _: i32| -> i32 { EBADF })?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |_: C<'_>, _: i32, _: i64, _: i32, _: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        WASI,
        "fd_read",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(WASI, "sched_yield", |_: C<'_>| -> i32 { 0 })?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> i32 { ENOSYS },
    )?;
    Ok(())
}
