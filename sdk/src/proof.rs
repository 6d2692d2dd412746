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
