//! The one place that touches guest memory. Every pointer and length an applet
//! passes goes through these functions: a range outside the module's memory is
//! `None`/`false` (the import then answers `FromVmFailed` or `ToVmFailed`),
//! never a host panic, and reads are capped so a guest cannot make the host
//! copy gigabytes. Outputs use W3bstream's out-pointer protocol
//! ([`write_out`]). Nothing here needs `unsafe`.

use wasmtime::{Caller, Extern, Memory};
use wattstream_abi::Status;
use wattstream_abi::imports::{EXPORT_ALLOC, EXPORT_MEMORY};

use crate::applets::state::HostState;

/// The caller every host function gets.
pub type C<'a> = Caller<'a, HostState>;

/// Largest single read from applet memory (a SQL statement, a transaction...).
pub const READ_MAX: usize = 1 << 20;

/// The module's exported memory.
pub fn memory(caller: &mut C<'_>) -> Option<Memory> {
    match caller.data().exports.memory {
        Some(m) => Some(m),
        // Before the instance is complete (a start function's host calls).
        None => caller.get_export(EXPORT_MEMORY).and_then(Extern::into_memory),
    }
}

/// Guest `(ptr, len)` as a host range, `None` when it overflows.
fn range(ptr: i32, len: usize) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    Some(start..start.checked_add(len)?)
}

/// Whether `len` bytes at `ptr` lie inside the module's memory.
pub fn in_bounds(caller: &mut C<'_>, ptr: i32, len: i32) -> bool {
    let Some(mem) = memory(caller) else {
        return false;
    };
    range(ptr, len as u32 as usize).is_some_and(|r| r.end <= mem.data_size(&caller))
}

/// Copies `len` bytes at `ptr` out of the applet, or `None` when out of bounds
/// or longer than `max`.
pub fn read(caller: &mut C<'_>, ptr: i32, len: i32, max: usize) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let len = len as u32 as usize;
    if len > max {
        return None;
    }
    mem.data(&caller).get(range(ptr, len)?).map(<[u8]>::to_vec)
}

/// Writes `bytes` at `at`, or `false` when out of bounds.
pub fn write(caller: &mut C<'_>, mem: &Memory, at: i32, bytes: &[u8]) -> bool {
    let Some(r) = range(at, bytes.len()) else {
        return false;
    };
    match mem.data_mut(caller).get_mut(r) {
        Some(slot) => {
            slot.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// Writes a little-endian u32 at `at`.
pub fn write_u32(caller: &mut C<'_>, mem: &Memory, at: i32, value: u32) -> bool {
    write(caller, mem, at, &value.to_le_bytes())
}

/// The out-pointer protocol: `alloc(len)` in the applet, copy the bytes there,
/// write address and length (u32 little-endian) at the two out pointers. A
/// module without a usable `alloc` gets `ToVmFailed`, as on W3bstream.
pub fn write_out(caller: &mut C<'_>, bytes: &[u8], out_ptr: i32, out_len: i32) -> wasmtime::Result<i32> {
    const FAILED: i32 = Status::ToVmFailed.code();
    let Some(mem) = memory(caller) else {
        return Ok(FAILED);
    };
    let alloc = match caller.data().exports.alloc.clone() {
        Some(alloc) => alloc,
        None => {
            let Some(alloc) = caller.get_export(EXPORT_ALLOC).and_then(Extern::into_func) else {
                return Ok(FAILED);
            };
            let Ok(alloc) = alloc.typed::<i32, i32>(&caller) else {
                return Ok(FAILED);
            };
            alloc
        }
    };
    let addr = alloc.call(&mut *caller, bytes.len() as i32)?;
    if !write(caller, &mem, addr, bytes)
        || !write_u32(caller, &mem, out_ptr, addr as u32)
        || !write_u32(caller, &mem, out_len, bytes.len() as u32)
    {
        return Ok(FAILED);
    }
    Ok(Status::Ok.code())
}

/// An AssemblyScript string: UTF-16LE, byte length in the u32 before it
/// (at most 8 KiB are read).
pub fn as_string(caller: &mut C<'_>, ptr: i32) -> String {
    if ptr < 4 {
        return String::new();
    }
    let len = read(caller, ptr - 4, 4, 4).and_then(|b| Some(u32::from_le_bytes(b.try_into().ok()?)));
    let bytes = len
        .and_then(|len| read(caller, ptr, len.min(8192) as i32, 8192))
        .unwrap_or_default();
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, wat};
    use super::*;
    use wasmtime::Linker;

    /// Host functions that expose the guards to a test module.
    fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
        l.func_wrap("t", "read", |mut c: C<'_>, p: i32, n: i32| -> i32 {
            read(&mut c, p, n, 16).map_or(-1, |b| b.len() as i32)
        })?;
        l.func_wrap("t", "out", |mut c: C<'_>, p: i32, n: i32| {
            write_out(&mut c, b"hello", p, n)
        })?;
        l.func_wrap("t", "as_string", |mut c: C<'_>, p: i32| -> i32 {
            as_string(&mut c, p).len() as i32
        })?;
        Ok(())
    }

    #[test]
    fn reads_inside_memory_and_refuses_outside_or_over_the_cap() {
        let mut g = Guest::new(&wat(&[("t", "read", 2)], &[]), link);
        assert_eq!(g.call("read", &[0, 16]), 16);
        assert_eq!(g.call("read", &[65536 - 4, 4]), 4);
        assert_eq!(g.call("read", &[65536 - 3, 4]), -1, "one byte past the end");
        assert_eq!(g.call("read", &[-1, 2]), -1, "ptr 0xffffffff");
        assert_eq!(g.call("read", &[0, 17]), -1, "over the cap");
        assert_eq!(g.call("read", &[0, -1]), -1, "len 0xffffffff");
    }

    #[test]
    fn write_out_allocates_copies_and_fills_both_out_pointers() {
        let mut g = Guest::new(&wat(&[("t", "out", 2)], &[]), link);
        assert_eq!(g.call("out", &[100, 104]), Status::Ok.code());
        let (addr, len) = (g.u32_at(100), g.u32_at(104));
        assert_eq!(len, 5);
        assert_eq!(g.bytes(addr, 5), b"hello");
        // An out pointer past the end of memory.
        assert_eq!(g.call("out", &[65534, 104]), Status::ToVmFailed.code());
    }

    #[test]
    fn write_out_without_alloc_is_to_vm_failed() {
        let module = r#"(module
            (import "t" "out" (func $f (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "out") (param i32 i32) (result i32) local.get 0 local.get 1 call $f))"#;
        let mut g = Guest::new(module, link);
        assert_eq!(g.call("out", &[100, 104]), Status::ToVmFailed.code());
        assert_eq!(g.u32_at(100), 0, "nothing written");
    }

    #[test]
    fn write_out_with_a_lying_alloc_is_to_vm_failed() {
        let module = r#"(module
            (import "t" "out" (func $f (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 65534)
            (func (export "out") (param i32 i32) (result i32) local.get 0 local.get 1 call $f))"#;
        let mut g = Guest::new(module, link);
        assert_eq!(g.call("out", &[100, 104]), Status::ToVmFailed.code());
    }

    #[test]
    fn assemblyscript_strings_are_read_with_their_length_prefix() {
        // "hi" in UTF-16LE with its byte length 4 before it.
        let mut g = Guest::new(
            &wat(&[("t", "as_string", 1)], &[(60, b"\x04\x00\x00\x00h\x00i\x00")]),
            link,
        );
        assert_eq!(g.call("as_string", &[64]), 2);
        assert_eq!(g.call("as_string", &[2]), 0, "a pointer below 4");
        assert_eq!(g.call("as_string", &[65535]), 0, "a length outside memory");
    }
}
