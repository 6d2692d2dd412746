//! # wattstream-abi
//!
//! The applet contract, written once. The processor's host functions
//! (`processor/src/applets/abi/`) and the Rust applet SDK (`applets/sdk`) both
//! import it, so the two sides cannot drift apart: a status code, a log level, a
//! reserved environment key or the ledger token address means the same thing on
//! both. `no_std` and without dependencies, so it builds for wasm32 guests.
//!
//! The numbers are W3bstream v1's (DESIGN §4): status codes from its
//! `ResultStatusCode` (plus 8 and 9 of later v1 releases), log levels from its
//! logrus-style `conflog.Level` (0 panic … 6 trace; `@w3bstream/wasm-sdk` logs
//! info as 4). The tests at the bottom pin them.

#![no_std]

/// The status every host import returns (W3bstream v1 `ResultStatusCode`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok = 0,
    /// The handler the host was asked to call is not exported.
    UnexportedHandler = 1,
    /// No such resource id, key or row.
    NotFound = 2,
    ImportNotFound = 3,
    ImportCallFailed = 4,
    /// Copying into the module failed (no `alloc`, or `alloc` returned a bad address).
    ToVmFailed = 5,
    /// Reading from the module failed (a pointer or length outside its memory).
    FromVmFailed = 6,
    HostInternal = 7,
    /// `ws_get_env`: the key is not set.
    EnvKeyMissing = 8,
    /// `ws_*_sql_db`: the project has no SQL database.
    NoDbContext = 9,
    /// The call failed for another reason (logged by the host).
    Failed = -1,
}

impl Status {
    /// Every status, for tables and tests.
    pub const ALL: [Status; 11] = [
        Status::Ok,
        Status::UnexportedHandler,
        Status::NotFound,
        Status::ImportNotFound,
        Status::ImportCallFailed,
        Status::ToVmFailed,
        Status::FromVmFailed,
        Status::HostInternal,
        Status::EnvKeyMissing,
        Status::NoDbContext,
        Status::Failed,
    ];

    /// The i32 an import returns.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The status behind a returned i32, `None` for a number the ABI does not define.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// `ws_log` levels (W3bstream v1's logrus-style `conflog.Level`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Panic = 0,
    Fatal = 1,
    Error = 2,
    Warn = 3,
    Info = 4,
    Debug = 5,
    Trace = 6,
}

impl Level {
    /// The level a guest passes; numbers outside 0..=6 are treated as W3bstream
    /// treats them (its logger's default branch): trace.
    pub fn from_code(code: i32) -> Level {
        match code {
            0 => Level::Panic,
            1 => Level::Fatal,
            2 => Level::Error,
            3 => Level::Warn,
            4 => Level::Info,
            5 => Level::Debug,
            _ => Level::Trace,
        }
    }

    /// The name the host stores and shows (`panic` and `fatal` are errors
    /// here: an applet cannot stop the processor).
    pub const fn name(self) -> &'static str {
        match self {
            Level::Panic | Level::Fatal | Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// The rewards ledger's token address: an ERC-20 `mint` sent here credits the
/// processor's ledger, unless a project sets [`env::TOKEN_CONTRACT`].
pub const LEDGER_TOKEN: &str = "0x0000000000000000000000000000000000000001";

/// ERC-20 `mint(address,uint256)`.
pub const MINT_SELECTOR: [u8; 4] = [0x40, 0xc1, 0x0f, 0x19];
/// ERC-20 `balanceOf(address)`.
pub const BALANCE_OF_SELECTOR: [u8; 4] = [0x70, 0xa0, 0x82, 0x31];

/// Environment keys: the reserved `WS_*` keys the processor sets for each event
/// (a project may not set them) and the project keys the SDK reads.
pub mod env {
    /// Every key starting with this is reserved for the processor.
    pub const RESERVED_PREFIX: &str = "WS_";
    /// `"true"` when the processor verified signature and registration.
    pub const VERIFIED: &str = "WS_VERIFIED";
    /// 40 lowercase hex characters.
    pub const DEVICE_ID: &str = "WS_DEVICE_ID";
    /// `0x` + device id: the device's ledger account.
    pub const DEVICE_ADDRESS: &str = "WS_DEVICE_ADDRESS";
    /// The owner bound at registration, empty when none.
    pub const DEVICE_OWNER: &str = "WS_DEVICE_OWNER";
    /// `active` or `revoked`.
    pub const DEVICE_STATUS: &str = "WS_DEVICE_STATUS";
    /// The stored event's id.
    pub const EVENT_ID: &str = "WS_EVENT_ID";
    /// Seconds of this reading the rewards may pay for, decided by the
    /// processor (never the device's own `window_s`): decimal.
    pub const PAID_S: &str = "WS_PAID_S";
    /// Every reserved key, in the order the host sets them.
    pub const RESERVED: [&str; 7] = [
        VERIFIED,
        DEVICE_ID,
        DEVICE_ADDRESS,
        DEVICE_OWNER,
        DEVICE_STATUS,
        EVENT_ID,
        PAID_S,
    ];
    /// Project key: the token `mint` goes to instead of [`crate::LEDGER_TOKEN`].
    pub const TOKEN_CONTRACT: &str = "TOKEN_CONTRACT";

    /// Whether a project may not set `key`.
    pub fn is_reserved(key: &str) -> bool {
        key.starts_with(RESERVED_PREFIX)
    }
}

/// Import module and function names.
pub mod imports {
    /// The module of every W3bstream import but metrics.
    pub const ENV: &str = "env";
    /// The module of `ws_submit_metrics`.
    pub const STAT: &str = "stat";
    /// WASI preview 1, for the few calls TinyGo and wasi-libc applets make.
    pub const WASI: &str = "wasi_snapshot_preview1";

    pub const WS_LOG: &str = "ws_log";
    pub const WS_GET_DATA: &str = "ws_get_data";
    pub const WS_SET_DATA: &str = "ws_set_data";
    pub const WS_GET_EVENT_TYPE: &str = "ws_get_event_type";
    pub const WS_GET_DB: &str = "ws_get_db";
    pub const WS_SET_DB: &str = "ws_set_db";
    pub const WS_GET_ENV: &str = "ws_get_env";
    pub const WS_SET_SQL_DB: &str = "ws_set_sql_db";
    pub const WS_GET_SQL_DB: &str = "ws_get_sql_db";
    pub const WS_SEND_TX: &str = "ws_send_tx";
    pub const WS_CALL_CONTRACT: &str = "ws_call_contract";
    pub const WS_API_CALL: &str = "ws_api_call";
    pub const WS_SUBMIT_METRICS: &str = "ws_submit_metrics";
    /// AssemblyScript's abort hook.
    pub const ABORT: &str = "abort";

    /// Exports the host looks up in a module.
    pub const EXPORT_MEMORY: &str = "memory";
    pub const EXPORT_ALLOC: &str = "alloc";
    /// The default handler.
    pub const DEFAULT_HANDLER: &str = "start";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The W3bstream v1 numbers: a guest built against W3bstream's SDKs depends on them.
    #[test]
    fn status_codes_are_w3bstream_v1() {
        let pinned = [
            (Status::Ok, 0),
            (Status::UnexportedHandler, 1),
            (Status::NotFound, 2),
            (Status::ImportNotFound, 3),
            (Status::ImportCallFailed, 4),
            (Status::ToVmFailed, 5),
            (Status::FromVmFailed, 6),
            (Status::HostInternal, 7),
            (Status::EnvKeyMissing, 8),
            (Status::NoDbContext, 9),
            (Status::Failed, -1),
        ];
        for (s, n) in pinned {
            assert_eq!(s.code(), n, "{s:?}");
            assert_eq!(Status::from_code(n), Some(s));
        }
        assert_eq!(Status::from_code(10), None);
        assert_eq!(Status::from_code(-2), None);
    }

    #[test]
    fn log_levels_are_w3bstream_v1() {
        let pinned = [
            (0, "error"),
            (1, "error"),
            (2, "error"),
            (3, "warn"),
            (4, "info"),
            (5, "debug"),
            (6, "trace"),
            (7, "trace"),
            (-3, "trace"),
        ];
        for (n, name) in pinned {
            assert_eq!(Level::from_code(n).name(), name, "level {n}");
        }
        // The guest side sends these numbers.
        assert_eq!(
            [Level::Error, Level::Warn, Level::Info, Level::Debug, Level::Trace].map(|l| l as i32),
            [2, 3, 4, 5, 6]
        );
        assert_eq!(Level::from_code(Level::Warn as i32), Level::Warn);
    }

    #[test]
    fn reserved_keys_share_the_prefix() {
        for k in env::RESERVED {
            assert!(env::is_reserved(k), "{k}");
        }
        assert!(!env::is_reserved(env::TOKEN_CONTRACT));
        assert_eq!(LEDGER_TOKEN.len(), 42);
    }
}
