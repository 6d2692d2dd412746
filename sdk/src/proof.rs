//! Rewards proofs as a meter checks them: the hashes of the processor's Merkle
//! tree over per-device totals, and the message a seal signs. The processor
//! builds the tree (crate `wattstream-rewards`) with these same functions; the
//! meter verifies an answer against the processor key pinned in its config.
//!
//! Formats (all integers big-endian):
//! - leaf: `SHA-256(0x00 || address[20] || epoch_total u128 || balance u128 || epoch u64)`;
//! - node: `SHA-256(0x01 || left[32] || right[32])`; an odd node at the end of a
//!   level moves up unchanged;
//! - seal message: `"wattstream-seal-v1" || epoch u64 || upto_seq u64 || head[32] || root[32]`,
//!   signed like an envelope (ECDSA P-256, SHA-256, r||s).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::PublicKey;
use crate::signature::Signature;
use crate::verify::VerifyPath;

/// A leaf's hash.
pub fn leaf_hash(address: &[u8; 20], epoch_total: u128, balance: u128, epoch: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(address);
    h.update(epoch_total.to_be_bytes());
    h.update(balance.to_be_bytes());
    h.update(epoch.to_be_bytes());
    h.finalize().into()
}

/// An inner node's hash.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The bytes a seal's signature covers.
pub fn seal_message(epoch: u64, upto_seq: u64, head: &[u8; 32], root: &[u8; 32]) -> Vec<u8> {
    let mut m = b"wattstream-seal-v1".to_vec();
    m.extend(epoch.to_be_bytes());
    m.extend(upto_seq.to_be_bytes());
    m.extend(head);
    m.extend(root);
    m
}

/// One step of a proof: the sibling hash and whether it sits on the left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub sibling: String,
    pub left: bool,
}

/// A sealed epoch, as the API gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealView {
    pub epoch: u64,
    pub upto_seq: u64,
    pub head: String,
    pub root: String,
    pub signature: String,
    pub public_key: String,
}

/// A device's leaf and its path to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofView {
    pub address: String,
    /// Token units credited in the epoch, decimal.
    pub epoch_total: String,
    /// Cumulative balance at the seal, decimal.
    pub balance: String,
    pub steps: Vec<Step>,
}

/// Why a proof does not check.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProofError {
    #[error("the seal is signed by another key than the pinned processor key")]
    WrongKey,
    #[error("the seal's signature does not verify")]
    BadSignature,
    #[error("the proof does not lead to the sealed root")]
    RootMismatch,
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("the proof is for another device's address")]
    NotMine,
    #[error("the seal is of epoch {seal}, more than {max} epochs before the current one ({current})")]
    Stale { seal: u64, current: u64, max: u64 },
}

/// The most epochs a seal may be behind the current one for a meter to call
/// its balance verified.
pub const MAX_SEAL_AGE_EPOCHS: u64 = 2;

/// What a meter checks before it shows "verified": the seal is signed by the
/// pinned processor key, the proof leads to its root, the proof is for
/// `own` (this meter's address, not any device's), and the seal is at most
/// [`MAX_SEAL_AGE_EPOCHS`] behind `current_epoch`. Returns the proven
/// balance (token units, cumulative at the seal).
pub fn verify_own(
    seal: &SealView,
    proof: &ProofView,
    pinned: &PublicKey,
    own: &[u8; 20],
    current_epoch: u64,
) -> Result<u128, ProofError> {
    let mut address = [0u8; 20];
    hex::decode_to_slice(proof.address.trim_start_matches("0x"), &mut address)
        .map_err(|_| ProofError::Malformed("address".into()))?;
    if &address != own {
        return Err(ProofError::NotMine);
    }
    if seal.epoch.saturating_add(MAX_SEAL_AGE_EPOCHS) < current_epoch {
        return Err(ProofError::Stale {
            seal: seal.epoch,
            current: current_epoch,
            max: MAX_SEAL_AGE_EPOCHS,
        });
    }
    verify(seal, proof, pinned)?;
    proof
        .balance
        .parse()
        .map_err(|_| ProofError::Malformed(format!("balance {}", proof.balance)))
}

fn h32(s: &str) -> Result<[u8; 32], ProofError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| ProofError::Malformed(format!("not 32 bytes of hex: {s}")))?;
    Ok(out)
}

/// Folds a leaf hash up a proof.
pub fn fold(leaf: [u8; 32], steps: &[Step]) -> Result<[u8; 32], ProofError> {
    steps.iter().try_fold(leaf, |acc, s| {
        let sib = h32(&s.sibling)?;
        Ok(if s.left {
            node_hash(&sib, &acc)
        } else {
            node_hash(&acc, &sib)
        })
    })
}

/// Checks a seal against the pinned processor key and a device's proof against
/// the seal. `Ok` means the balance is what the processor committed to.
pub fn verify(seal: &SealView, proof: &ProofView, pinned: &PublicKey) -> Result<(), ProofError> {
    let key = PublicKey::from_hex(&seal.public_key).map_err(|e| ProofError::Malformed(e.to_string()))?;
    if &key != pinned {
        return Err(ProofError::WrongKey);
    }
    let (head, root) = (h32(&seal.head)?, h32(&seal.root)?);
    let sig = Signature::from_hex(&seal.signature).map_err(|_| ProofError::BadSignature)?;
    VerifyPath::Fast
        .verify(&key, &seal_message(seal.epoch, seal.upto_seq, &head, &root), &sig)
        .map_err(|_| ProofError::BadSignature)?;
    let mut address = [0u8; 20];
    hex::decode_to_slice(proof.address.trim_start_matches("0x"), &mut address)
        .map_err(|_| ProofError::Malformed("address".into()))?;
    let num = |s: &str| {
        s.parse::<u128>()
            .map_err(|_| ProofError::Malformed(format!("amount {s}")))
    };
    let leaf = leaf_hash(
        &address,
        num(&proof.epoch_total)?,
        num(&proof.balance)?,
        seal.epoch,
    );
    if fold(leaf, &proof.steps)? != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
