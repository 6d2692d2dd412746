//! # wattstream-sdk
//!
//! The pieces of WattStream that both ends of the wire share: a meter's identity
//! (a P-256 key and the device id derived from it), the signed envelope a meter
//! sends (DESIGN §2), and the verification of that envelope.
//!
//! It deliberately depends on no async runtime, no WebAssembly engine and no
//! hardware abstraction, so that the meter, the processor, tools and tests can all
//! use it.
//!
//! ## The device id
//! A device id is the first 20 bytes of SHA-256 over the **uncompressed** SEC1
//! encoding of the device's public key (`04 || X || Y`, 65 bytes), written as 40
//! lowercase hex characters. A compressed key (`02`/`03 || X`) is decompressed
//! first, so both encodings of one key give the same id. The same 20 bytes,
//! prefixed with `0x`, are the device's account address in the rewards ledger
//! (the `address` argument of ERC-20 `mint`).
//!
//! ## Signing and verifying
//! ```
//! use wattstream_sdk::{DeviceKey, Envelope, Reading, VerifyPath};
//!
//! let key = DeviceKey::generate();
//! let reading = Reading::new(4.21, 1_795_514_493).with_seq(1042);
//! let body = key.sign_reading(&reading);
//!
//! let envelope = Envelope::parse(body.as_bytes()).unwrap();
//! envelope.verify(VerifyPath::Fast).unwrap();
//! assert_eq!(envelope.device_id(), key.device_id());
//! assert_eq!(envelope.reading().seq, Some(1042));
//! ```
//!
//! Two verification paths sit behind one API ([`VerifyPath`]): `Reference` uses the
//! pure-Rust `p256` crate, `Fast` uses `ring`. They agree on every case the tests
//! know (Wycheproof, property tests, the shared vectors); the processor's hot path
//! uses `Fast`.

pub mod binding;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "config")]
pub mod config;
mod envelope;
mod error;
pub mod fsutil;
mod identity;
mod keyfile;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "systemd")]
pub mod notify;
pub mod proof;
mod reading;
mod signature;
pub mod state;
pub mod time;
#[cfg(feature = "client")]
pub mod tls;
mod verify;
pub mod wire;

pub use envelope::{Envelope, envelope_body};
pub use error::{EnvelopeError, KeyError};
pub use identity::{DeviceId, DeviceKey, PublicKey};
pub use keyfile::{insecure_mode, load_key, save_key};
pub use reading::Reading;
pub use signature::Signature;
pub use verify::VerifyPath;
