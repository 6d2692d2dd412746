//! The project's key-value store: `ws_get_db` and `ws_set_db`, kept in the
//! project database (so its writes share the call's savepoint).

use wasmtime::Linker;
use wattstream_abi::Status;
use wattstream_abi::imports::{ENV, WS_GET_DB, WS_SET_DB};

use super::memory::{C, READ_MAX, read, write_out};
use crate::applets::state::HostState;

pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        ENV,
        WS_GET_DB,
        |mut c: C<'_>, kptr: i32, klen: i32, out_ptr: i32, out_len: i32| {
            let Some(key) = read(&mut c, kptr, klen, READ_MAX) else {
                return Ok(Status::FromVmFailed.code());
            };
            match c.data().db().kv_get(&key) {
                Ok(Some(v)) => write_out(&mut c, &v, out_ptr, out_len),
                Ok(None) => Ok(Status::NotFound.code()),
                Err(_) => Ok(Status::Failed.code()),
            }
        },
    )?;

    linker.func_wrap(
        ENV,
        WS_SET_DB,
        |mut c: C<'_>, kptr: i32, klen: i32, vptr: i32, vlen: i32| -> i32 {
            let (Some(key), Some(value)) = (
                read(&mut c, kptr, klen, READ_MAX),
                read(&mut c, vptr, vlen, READ_MAX),
            ) else {
                return Status::FromVmFailed.code();
            };
            match c.data().db().kv_set(&key, &value) {
                Ok(()) => Status::Ok.code(),
                Err(_) => Status::Failed.code(),
            }
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, wat};
    use super::*;

    #[test]
    fn set_then_get_round_trips_and_a_missing_key_is_not_found() {
        let mut g = Guest::new(
            &wat(
                &[(ENV, WS_GET_DB, 4), (ENV, WS_SET_DB, 4)],
                &[(0, b"k1"), (8, b"value")],
            ),
            link,
        );
        assert_eq!(g.call(WS_GET_DB, &[0, 2, 100, 104]), Status::NotFound.code());
        assert_eq!(g.call(WS_SET_DB, &[0, 2, 8, 5]), 0);
        assert_eq!(g.call(WS_GET_DB, &[0, 2, 100, 104]), 0);
        assert_eq!(g.out(), b"value");
        assert_eq!(g.call(WS_SET_DB, &[0, 2, 65535, 5]), Status::FromVmFailed.code());
        assert_eq!(
            g.call(WS_GET_DB, &[65535, 2, 100, 104]),
            Status::FromVmFailed.code()
        );
    }
}
