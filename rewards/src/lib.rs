//! # wattstream-rewards
//!
//! The rewards ledger: applets' mints become credits, credits become entries of
//! an append-only hash chain, and each epoch is sealed with a Merkle root over
//! every device's epoch total and cumulative balance, signed by the processor.
//! Anyone with the entries and the seals can recompute everything
//! ([`verify_ledger`]); a meter checks its own balance with a proof
//! ([`wattstream_sdk::proof::verify`]).
//!
//! ## Formats
//! **Entry.** Its canonical bytes are the UTF-8 text
//! `wattstream-entry-v1\n{seq}\n{epoch}\n{address}\n{amount}\n{event_id}\n{applet}\n{applet_hash}\n{idx}\n`
//! (`address` as `0x` + 40 lowercase hex, `amount` in token units, decimal).
//! `hash = SHA-256(prev_hash || canonical bytes)`; the first entry's
//! `prev_hash` is 32 zero bytes.
//!
//! **Accrual.** A credit for event `e` lands in epoch `floor(e.timestamp / epoch_s)`,
//! or, when that epoch is already sealed, in the oldest epoch still open. A
//! device earns at most `cap` units per epoch: a credit above what is left is
//! clipped (to zero when nothing is left; zero entries are not written). The
//! same credit (event, applet, index) is never entered twice.
//!
//! **Leaf, node, seal.** See [`wattstream_sdk::proof`]: leaves are sorted by
//! address; the seal signs `epoch`, the last entry it covers (`upto_seq`), the
//! chain head at that entry and the root.

mod book;
mod ledger;
mod merkle;
pub mod paid;
mod verify;

pub use book::{Book, CreditKey, Needs, leaves};
pub use ledger::{Credit, Entry, Ledger, Seal, sign_seal};
pub use merkle::{Leaf, Tree};
pub use paid::PaidTime;
pub use verify::{Checkpoint, Finished, Tamper, Verifier, verify_ledger};
