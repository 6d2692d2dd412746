//! What an applet reports: `ws_log` lines (levels as W3bstream v1 numbers them,
//! mapped once in `wattstream-abi`), `ws_submit_metrics` objects, and
//! AssemblyScript's `abort`, which fails the call with its message.

use wasmtime::Linker;
use wattstream_abi::imports::{ABORT, ENV, STAT, WS_LOG, WS_SUBMIT_METRICS};
use wattstream_abi::{Level, Status};

use super::memory::{C, as_string, in_bounds, read};
use crate::applets::state::{Effect, HostState};

/// Longest line read from the guest; the rest is counted as dropped.
const LINE_MAX: usize = 4096;
/// Largest metrics object.
const METRICS_MAX: usize = 64 << 10;

pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        ENV,
        WS_LOG,
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> i32 {
            // A bad range is status 6; of a good one, read at most a line.
            if !in_bounds(&mut c, ptr, len) {
                return Status::FromVmFailed.code();
            }
            let take = (len as u32 as usize).min(LINE_MAX);
            let message = read(&mut c, ptr, take as i32, LINE_MAX).unwrap_or_default();
            c.data_mut().log(Level::from_code(level).name(), &message);
            c.data_mut().effects.dropped_log_bytes += len as u32 as usize - take;
            Status::Ok.code()
        },
    )?;

    linker.func_wrap(
        STAT,
        WS_SUBMIT_METRICS,
        |mut c: C<'_>, ptr: i32, len: i32| -> i32 {
            let Some(bytes) = read(&mut c, ptr, len, METRICS_MAX) else {
                return Status::FromVmFailed.code();
            };
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) if v.is_object() && c.data_mut().room_for(Effect::Metrics) => {
                    c.data_mut().effects.metrics.push(v);
                    Status::Ok.code()
                }
                _ => Status::Failed.code(),
            }
        },
    )?;

    linker.func_wrap(
        ENV,
        ABORT,
        |mut c: C<'_>, msg: i32, file: i32, line: i32, col: i32| -> wasmtime::Result<()> {
            let (msg, file) = (as_string(&mut c, msg), as_string(&mut c, file));
            Err(wasmtime::Error::msg(format!(
                "abort: {msg} at {file}:{line}:{col}"
            )))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, wat};
    use super::*;

    fn guest(data: &[(u32, &[u8])]) -> Guest {
        Guest::new(
            &wat(&[(ENV, WS_LOG, 3), (STAT, WS_SUBMIT_METRICS, 2)], data),
            link,
        )
    }

    #[test]
    fn levels_are_stored_as_w3bstream_numbers_them() {
        let mut g = guest(&[(0, b"hello")]);
        for level in [2, 3, 4, 5, 6] {
            assert_eq!(g.call(WS_LOG, &[level, 0, 5]), 0);
        }
        let levels: Vec<&str> = g.state().effects.logs.iter().map(|l| l.level).collect();
        assert_eq!(levels, ["error", "warn", "info", "debug", "trace"]);
        assert_eq!(g.state().effects.logs[0].message, "hello");
    }

    #[test]
    fn a_bad_range_is_from_vm_failed_and_a_long_line_is_cut_and_counted() {
        let mut g = guest(&[]);
        assert_eq!(g.call(WS_LOG, &[4, 65530, 10]), Status::FromVmFailed.code());
        assert!(g.state().effects.logs.is_empty());
        assert_eq!(g.call(WS_LOG, &[4, 0, 5000]), 0);
        assert_eq!(g.state().effects.logs[0].message.len(), LINE_MAX);
        assert_eq!(g.state().effects.dropped_log_bytes, 5000 - LINE_MAX);
    }

    #[test]
    fn metrics_must_be_a_json_object() {
        let mut g = guest(&[(0, br#"{"kwh":1}"#), (32, b"[1,2]")]);
        assert_eq!(g.call(WS_SUBMIT_METRICS, &[0, 9]), 0);
        assert_eq!(g.call(WS_SUBMIT_METRICS, &[32, 5]), Status::Failed.code());
        assert_eq!(
            g.call(WS_SUBMIT_METRICS, &[65535, 9]),
            Status::FromVmFailed.code()
        );
        assert_eq!(g.state().effects.metrics, vec![serde_json::json!({"kwh": 1})]);
    }
}
