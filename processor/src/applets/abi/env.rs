//! What an applet sees of its event: the payload (`ws_get_data`), its type
//! (`ws_get_event_type`), the response it may set (`ws_set_data`), the project
//! environment with the processor's reserved `WS_*` keys (`ws_get_env`), and
//! `ws_api_call`, W3bstream's internal API, which WattStream does not offer.

use wasmtime::Linker;
use wattstream_abi::imports::{ENV, WS_API_CALL, WS_GET_DATA, WS_GET_ENV, WS_GET_EVENT_TYPE, WS_SET_DATA};
use wattstream_abi::{Level, Status};

use super::memory::{C, READ_MAX, read, write_out};
use crate::applets::state::HostState;

/// Longest environment key.
const KEY_MAX: usize = 4096;

pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        ENV,
        WS_GET_DATA,
        |mut c: C<'_>, rid: i32, out_ptr: i32, out_len: i32| {
            if rid != c.data().event.rid {
                return Ok(Status::NotFound.code());
            }
            let payload = c.data().event.payload.clone();
            write_out(&mut c, &payload, out_ptr, out_len)
        },
    )?;

    linker.func_wrap(
        ENV,
        WS_SET_DATA,
        |mut c: C<'_>, rid: i32, ptr: i32, len: i32| -> i32 {
            if rid != c.data().event.rid {
                return Status::NotFound.code();
            }
            match read(&mut c, ptr, len, READ_MAX) {
                Some(b) => {
                    c.data_mut().effects.response = Some(String::from_utf8_lossy(&b).into_owned());
                    Status::Ok.code()
                }
                None => Status::FromVmFailed.code(),
            }
        },
    )?;

    linker.func_wrap(
        ENV,
        WS_GET_EVENT_TYPE,
        |mut c: C<'_>, rid: i32, out_ptr: i32, out_len: i32| {
            if rid != c.data().event.rid {
                return Ok(Status::NotFound.code());
            }
            let t = c.data().event.event_type.clone();
            write_out(&mut c, t.as_bytes(), out_ptr, out_len)
        },
    )?;

    linker.func_wrap(
        ENV,
        WS_GET_ENV,
        |mut c: C<'_>, kptr: i32, klen: i32, out_ptr: i32, out_len: i32| {
            let Some(key) = read(&mut c, kptr, klen, KEY_MAX) else {
                return Ok(Status::FromVmFailed.code());
            };
            let value = c.data().event.env.get(&*String::from_utf8_lossy(&key)).cloned();
            match value {
                Some(v) => write_out(&mut c, v.as_bytes(), out_ptr, out_len),
                None => Ok(Status::EnvKeyMissing.code()),
            }
        },
    )?;

    linker.func_wrap(
        ENV,
        WS_API_CALL,
        |mut c: C<'_>, _ptr: i32, _len: i32, _op: i32, _ol: i32| -> i32 {
            c.data_mut().log(
                Level::Error.name(),
                b"ws_api_call: W3bstream's internal API is not offered by WattStream",
            );
            Status::Failed.code()
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, event, wat};
    use super::*;

    fn guest() -> Guest {
        Guest::new(
            &wat(
                &[
                    (ENV, WS_GET_DATA, 3),
                    (ENV, WS_SET_DATA, 3),
                    (ENV, WS_GET_EVENT_TYPE, 3),
                    (ENV, WS_GET_ENV, 4),
                    (ENV, WS_API_CALL, 4),
                ],
                &[(0, b"COLOR"), (16, b"NOPE"), (32, b"ok!")],
            ),
            link,
        )
    }

    #[test]
    fn the_event_comes_only_for_its_own_resource_id() {
        let mut g = guest();
        assert_eq!(g.call(WS_GET_DATA, &[7, 100, 104]), 0);
        assert_eq!(g.out(), event().payload);
        assert_eq!(g.call(WS_GET_DATA, &[8, 100, 104]), Status::NotFound.code());
        assert_eq!(g.call(WS_GET_EVENT_TYPE, &[7, 100, 104]), 0);
        assert_eq!(g.out(), b"DATA");
        assert_eq!(g.call(WS_GET_EVENT_TYPE, &[0, 100, 104]), Status::NotFound.code());
    }

    #[test]
    fn set_data_keeps_the_response_of_its_event() {
        let mut g = guest();
        assert_eq!(g.call(WS_SET_DATA, &[8, 32, 3]), Status::NotFound.code());
        assert_eq!(g.call(WS_SET_DATA, &[7, 65535, 3]), Status::FromVmFailed.code());
        assert_eq!(g.state().effects.response, None);
        assert_eq!(g.call(WS_SET_DATA, &[7, 32, 3]), 0);
        assert_eq!(g.state().effects.response.as_deref(), Some("ok!"));
    }

    #[test]
    fn env_keys_are_found_or_env_key_missing() {
        let mut g = guest();
        assert_eq!(g.call(WS_GET_ENV, &[0, 5, 100, 104]), 0);
        assert_eq!(g.out(), b"green");
        assert_eq!(
            g.call(WS_GET_ENV, &[16, 4, 100, 104]),
            Status::EnvKeyMissing.code()
        );
        assert_eq!(
            g.call(WS_GET_ENV, &[65535, 5, 100, 104]),
            Status::FromVmFailed.code()
        );
    }

    #[test]
    fn api_call_fails_with_a_log_line() {
        let mut g = guest();
        assert_eq!(g.call(WS_API_CALL, &[0, 1, 100, 104]), Status::Failed.code());
        assert!(g.state().effects.logs[0].message.contains("not offered"));
    }
}
