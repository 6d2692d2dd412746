//! The few WASI preview 1 calls a TinyGo or wasi-libc applet makes, answered
//! without a file system, network or real clock: stdout and stderr go to the
//! applet log (info and error), `random_get` is a SplitMix64 stream seeded per
//! event and `clock_time_get` answers the event's time, so a replay computes
//! the same; everything else is `EBADF` or `ENOSYS`.

use wasmtime::Linker;
use wattstream_abi::Level;
use wattstream_abi::imports::WASI;

use super::memory::{C, READ_MAX, memory, read, write, write_u32};
use crate::applets::state::HostState;

const EBADF: i32 = 8;
const ENOSYS: i32 = 52;
/// Most iovecs one `fd_write` may pass.
const IOVS_MAX: i32 = 1024;
/// Most random bytes one `random_get` fills.
const RANDOM_MAX: i32 = 1 << 16;

fn fd_write(mut c: C<'_>, fd: i32, iovs: i32, n: i32, written: i32) -> i32 {
    let level = match fd {
        1 => Level::Info,
        2 => Level::Error,
        _ => return EBADF,
    };
    let Some(mem) = memory(&mut c) else { return EBADF };
    let mut total = 0u32;
    for i in 0..n.clamp(0, IOVS_MAX) {
        let Some(iov) = read(&mut c, iovs.wrapping_add(i * 8), 8, 8) else {
            return EBADF;
        };
        let (ptr, len) = (
            i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]),
            i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]),
        );
        let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
            return EBADF;
        };
        total += bytes.len() as u32;
        c.data_mut()
            .log(level.name(), bytes.strip_suffix(b"\n").unwrap_or(&bytes));
    }
    if write_u32(&mut c, &mem, written, total) {
        0
    } else {
        EBADF
    }
}

fn random_get(mut c: C<'_>, buf: i32, len: i32) -> i32 {
    let Some(mem) = memory(&mut c) else { return EBADF };
    let mut bytes = vec![0u8; len.clamp(0, RANDOM_MAX) as usize];
    for b in bytes.iter_mut() {
        // SplitMix64 seeded per event: deterministic, so replays agree.
        let s = &mut c.data_mut().rng;
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        *b = ((*s ^ (*s >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 56) as u8;
    }
    if write(&mut c, &mem, buf, &bytes) {
        0
    } else {
        EBADF
    }
}

pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(WASI, "fd_write", fd_write)?;
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
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: C<'_>, _id: i32, _precision: i64, out: i32| -> i32 {
            let Some(mem) = memory(&mut c) else { return EBADF };
            let t = c.data().event.time_ns;
            if write(&mut c, &mem, out, &t.to_le_bytes()) {
                0
            } else {
                EBADF
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

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, wat};
    use super::*;

    #[test]
    fn stdout_and_stderr_become_log_lines_and_other_fds_are_ebadf() {
        // iovec at 0: ptr 16, len 6 ("hello\n").
        let iov = [16u8, 0, 0, 0, 6, 0, 0, 0];
        let mut g = Guest::new(
            &wat(&[(WASI, "fd_write", 4)], &[(0, &iov), (16, b"hello\n")]),
            link,
        );
        assert_eq!(g.call("fd_write", &[1, 0, 1, 200]), 0);
        assert_eq!(g.u32_at(200), 6);
        assert_eq!(g.call("fd_write", &[2, 0, 1, 200]), 0);
        assert_eq!(g.call("fd_write", &[3, 0, 1, 200]), EBADF);
        assert_eq!(g.call("fd_write", &[1, 65535, 1, 200]), EBADF);
        let logs: Vec<(&str, &str)> = g
            .state()
            .effects
            .logs
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(logs, [("info", "hello"), ("error", "hello")]);
    }

    #[test]
    fn random_is_deterministic_per_seed_and_bounded() {
        let run = || {
            let mut g = Guest::new(&wat(&[(WASI, "random_get", 2)], &[]), link);
            assert_eq!(g.call("random_get", &[0, 32]), 0);
            assert_eq!(g.call("random_get", &[65530, 32]), EBADF);
            g.bytes(0, 32)
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert!(a.iter().any(|x| *x != 0));
    }
}
