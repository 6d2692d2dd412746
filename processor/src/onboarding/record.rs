//! Binding records: what the processor keeps of every claim, transfer and
//! unbinding, and the offline check anyone can run on them
//! (`wattstream device verify-bindings`).
//!
//! A device's records form a hash chain: `hash = SHA-256(prev || canonical)`,
//! with `prev` the previous record's hash (zeros for the first) and the
//! canonical bytes of [`Record::canonical`]. Each record carries the signed
//! request and both signatures, so [`verify_chain`] re-checks every step
//! without trusting the processor: the device's P-256 signature and the
//! owner's wallet signature on a claim; the current owner's (or, marked as
//! such, the admin's) and the new owner's on a transfer. What it cannot check
//! offline is the admin's word: records authorised by the admin say so.
//!
//! Ownership by epoch: a record takes effect from `effective_epoch`. A claim
//! of a device nobody owned takes effect in the epoch it is made; every other
//! change from the next epoch, so tokens earned in an epoch stay with the
//! owner of that epoch.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wattstream_sdk::binding::{ClaimRequest, TransferRequest};

use super::wallet;

/// What a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Claim,
    Transfer,
    Unbind,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Claim => "claim",
            Kind::Transfer => "transfer",
            Kind::Unbind => "unbind",
        }
    }
}

/// Who authorised a transfer or unbinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Authority {
    /// The device and its new owner (claims) or the current owner (transfers).
    Owner,
    /// The processor's administrator, in place of the current owner.
    Admin,
}

/// One binding record, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the device's chain, from 0.
    pub seq: u64,
    pub device_id: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferRequest>,
    /// The (new) owner's wallet signature over the owner message; none on an
    /// unbinding.
    pub owner_signature: Option<String>,
    /// The current owner's wallet signature over a transfer's message; none on
    /// claims and when the admin authorised it.
    pub from_signature: Option<String>,
    pub authorized_by: Authority,
    /// The owner from `effective_epoch` on (none: unbound).
    pub owner: Option<String>,
    pub effective_epoch: u64,
    /// When the processor accepted it, Unix seconds.
    pub at: u64,
    pub prev: String,
    pub hash: String,
}

fn or_none(v: Option<&str>) -> &str {
    v.unwrap_or("none")
}

impl Record {
    /// The owner message the record's signatures are over.
    pub fn owner_message(&self) -> &str {
        match (&self.claim, &self.transfer) {
            (Some(c), _) => &c.owner_message,
            (None, Some(t)) => &t.owner_message,
            (None, None) => "",
        }
    }

    /// The bytes the hash covers (after the previous hash).
    pub fn canonical(&self) -> Vec<u8> {
        let (device_sig, maker) = match &self.claim {
            Some(c) => (
                Some(c.device_signature.as_str()),
                c.maker_certificate
                    .as_ref()
                    .map(|m| format!("{} {}", m.maker_public_key, m.signature)),
            ),
            None => (None, None),
        };
        let message = self.owner_message();
        format!(
            "wattstream-binding-record-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.seq,
            self.device_id,
            self.kind.as_str(),
            or_none(self.owner.as_deref()),
            self.effective_epoch,
            self.at,
            match self.authorized_by {
                Authority::Owner => "owner",
                Authority::Admin => "admin",
            },
            or_none(device_sig),
            or_none(maker.as_deref()),
            or_none(self.owner_signature.as_deref()),
            or_none(self.from_signature.as_deref()),
            message.len(),
            message
        )
        .into_bytes()
    }

    /// `SHA-256(prev || canonical)`, hex.
    pub fn compute_hash(&self) -> String {
        let prev = hex::decode(&self.prev).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(&prev);
        h.update(self.canonical());
        hex::encode(h.finalize())
    }
}

/// The hash before a device's first record.
pub fn genesis() -> String {
    "00".repeat(32)
}

/// Who owns a device from an epoch on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from_epoch: u64,
    pub owner: Option<String>,
}

/// The owner in force in `epoch` (none before the first claim).
pub fn owner_in(spans: &[Span], epoch: u64) -> Option<String> {
    spans
        .iter()
        .rev()
        .find(|s| s.from_epoch <= epoch)
        .and_then(|s| s.owner.clone())
}

/// Why a chain of records does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {reason}")]
pub struct ChainError {
    pub seq: u64,
    pub reason: String,
}

/// Re-checks a device's records from the first (see the module docs) and
/// returns who owns it from which epoch, one span per record.
pub fn verify_chain(device_id: &str, records: &[Record]) -> Result<Vec<Span>, ChainError> {
    let mut prev = genesis();
    let mut owner: Option<String> = None;
    let mut last_epoch = 0;
    let mut nonces = HashSet::new();
    let mut spans = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let fail = |reason: String| ChainError { seq: r.seq, reason };
        if r.seq != i as u64 {
            return Err(fail(format!("out of order: expected record {i}")));
        }
        if r.device_id != device_id {
            return Err(fail(format!("is for device {}", r.device_id)));
        }
        if r.prev != prev {
            return Err(fail("does not follow the previous record (prev hash)".into()));
        }
        if r.compute_hash() != r.hash {
            return Err(fail("its hash does not match its contents".into()));
        }
        if r.effective_epoch < last_epoch {
            return Err(fail("takes effect before the previous record".into()));
        }
        let signer = |sig: &Option<String>, who: &str| -> Result<String, ChainError> {
            let sig = sig
                .as_deref()
                .ok_or_else(|| fail(format!("has no {who} signature")))?;
            wallet::signer(r.owner_message(), sig).map_err(|e| fail(format!("{who} signature: {e}")))
        };
        let nonce = match (r.kind, &r.claim, &r.transfer) {
            (Kind::Claim, Some(c), None) => {
                c.verify_device_side().map_err(|e| fail(e.to_string()))?;
                if c.device_id != device_id || owner.is_some() {
                    return Err(fail("claims a device that is not free".into()));
                }
                if signer(&r.owner_signature, "owner")? != c.owner || r.owner.as_ref() != Some(&c.owner) {
                    return Err(fail("the owner signature is not by the owner it names".into()));
                }
                &c.nonce
            }
            (Kind::Transfer | Kind::Unbind, None, Some(t)) => {
                t.check_form().map_err(|e| fail(e.to_string()))?;
                if t.device_id != device_id || owner.as_ref() != Some(&t.from) {
                    return Err(fail(format!(
                        "moves the device from {}, who does not own it",
                        t.from
                    )));
                }
                match r.authorized_by {
                    Authority::Owner if signer(&r.from_signature, "current owner")? != t.from => {
                        return Err(fail("the current owner's signature is by another wallet".into()));
                    }
                    Authority::Admin if r.from_signature.is_some() => {
                        return Err(fail("says admin but carries an owner signature".into()));
                    }
                    _ => {}
                }
                match (&t.to, r.kind) {
                    (Some(to), Kind::Transfer) => {
                        if &signer(&r.owner_signature, "new owner")? != to || r.owner.as_ref() != Some(to) {
                            return Err(fail("the new owner's signature is by another wallet".into()));
                        }
                    }
                    (None, Kind::Unbind) if r.owner.is_none() => {}
                    _ => return Err(fail("its kind does not match its request".into())),
                }
                &t.nonce
            }
            _ => return Err(fail("its kind does not match its request".into())),
        };
        if !nonces.insert(nonce.clone()) {
            return Err(fail("reuses an earlier record's nonce".into()));
        }
        owner = r.owner.clone();
        last_epoch = r.effective_epoch;
        prev = r.hash.clone();
        spans.push(Span {
            from_epoch: r.effective_epoch,
            owner: r.owner.clone(),
        });
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_an_epoch_is_the_last_change_in_force_by_then() {
        let spans = vec![
            Span {
                from_epoch: 10,
                owner: Some("a".into()),
            },
            Span {
                from_epoch: 12,
                owner: Some("b".into()),
            },
            Span {
                from_epoch: 12,
                owner: Some("c".into()),
            },
            Span {
                from_epoch: 15,
                owner: None,
            },
        ];
        assert_eq!(owner_in(&spans, 9), None);
        assert_eq!(owner_in(&spans, 10).as_deref(), Some("a"));
        assert_eq!(owner_in(&spans, 11).as_deref(), Some("a"));
        assert_eq!(owner_in(&spans, 12).as_deref(), Some("c"));
        assert_eq!(owner_in(&spans, 14).as_deref(), Some("c"));
        assert_eq!(owner_in(&spans, 15), None);
    }
}
