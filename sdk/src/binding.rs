//! Device-to-owner bindings: the exact bytes each side signs, so the meter
//! (which makes the request), the processor (which checks it) and anyone
//! re-verifying the records offline agree on them without sharing code paths
//! beyond this file.
//!
//! Three signed things:
//! - **The owner message** ([`claim_message`], [`transfer_message`]): plain
//!   text, one `name: value` per line, that the owner's wallet signs with
//!   EIP-191 `personal_sign`. Addresses are written in lowercase hex, so the
//!   meter needs no Keccak to write them. Checking the wallet's signature needs
//!   secp256k1 recovery and lives in the processor.
//! - **The device signature**: ECDSA P-256/SHA-256 by the device key over
//!   [`DEVICE_DOMAIN`] followed by the owner message. The prefix keeps a binding
//!   signature from ever being read as a signed reading (whose bytes are a
//!   JSON object).
//! - **A maker certificate** ([`MakerCertificate`]): a maker key's P-256
//!   signature over [`MAKER_DOMAIN`], the device's uncompressed public key in
//!   hex and a newline.
//!
//! Replay: every request carries a random 128-bit nonce and the time it was
//! made. The processor keeps every nonce it accepted and refuses requests
//! older than its configured age, so one request binds at most once.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{DeviceKey, EnvelopeError, PublicKey, Signature, VerifyPath};

/// Prefix of the bytes a device signs: `DEVICE_DOMAIN || owner message`.
pub const DEVICE_DOMAIN: &str = "wattstream-binding-device-v1\n";
/// Prefix of the bytes a maker signs: `MAKER_DOMAIN || public key hex || "\n"`.
pub const MAKER_DOMAIN: &str = "wattstream-maker-certificate-v1\n";

/// Why a binding document is refused before any wallet signature is checked.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BindingError {
    #[error("`{field}` is not an EVM address (0x and 40 hex characters): {value}")]
    BadAddress { field: &'static str, value: String },
    #[error("`nonce` must be 32 hex characters (128 random bits)")]
    BadNonce,
    #[error("`device_id` {given} is not the id of `public_key` ({derived})")]
    IdMismatch { given: String, derived: String },
    #[error("`owner_message` is not the message the request's fields give")]
    MessageMismatch,
    #[error("the device signature does not match the request and the device key")]
    DeviceSignature,
    #[error("the maker certificate is not a valid signature over this device's key")]
    MakerCertificate,
    #[error("{0}")]
    Key(#[from] EnvelopeError),
}

impl BindingError {
    /// A stable reason code for answers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            BindingError::BadAddress { .. } | BindingError::BadNonce | BindingError::Key(_) => "malformed",
            BindingError::IdMismatch { .. } => "device_id_mismatch",
            BindingError::MessageMismatch => "owner_message_mismatch",
            BindingError::DeviceSignature => "bad_device_signature",
            BindingError::MakerCertificate => "bad_maker_certificate",
        }
    }
}

/// `0x` + 40 hex characters, in any case; returned in lowercase.
pub fn normalize_address(field: &'static str, value: &str) -> Result<String, BindingError> {
    let hex = value.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BindingError::BadAddress {
            field,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(format!("0x{}", hex.to_ascii_lowercase()))
}

/// A fresh random nonce (32 lowercase hex characters).
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the OS random source");
    hex::encode(bytes)
}

fn check_nonce(nonce: &str) -> Result<(), BindingError> {
    if nonce.len() == 32 && nonce.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(BindingError::BadNonce)
    }
}

/// A maker's certificate for one device key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakerCertificate {
    pub maker_public_key: String,
    pub device_public_key: String,
    /// r‖s, 128 hex characters.
    pub signature: String,
}

impl MakerCertificate {
    fn message(device: &PublicKey) -> Vec<u8> {
        format!("{MAKER_DOMAIN}{}\n", device.to_hex()).into_bytes()
    }

    /// The maker `maker` certifies `device`.
    pub fn issue(maker: &DeviceKey, device: &PublicKey) -> Self {
        MakerCertificate {
            maker_public_key: maker.public_key().to_hex(),
            device_public_key: device.to_hex(),
            signature: maker.sign(&Self::message(device)).to_hex(),
        }
    }

    /// Checks the signature and that it is for `device`; returns the maker's
    /// key (whether that maker is trusted is the caller's policy).
    pub fn verify(&self, device: &PublicKey) -> Result<PublicKey, BindingError> {
        let bad = |_| BindingError::MakerCertificate;
        let maker = PublicKey::from_hex(&self.maker_public_key).map_err(bad)?;
        let named = PublicKey::from_hex(&self.device_public_key).map_err(bad)?;
        if &named != device {
            return Err(BindingError::MakerCertificate);
        }
        let sig = Signature::from_hex(&self.signature).map_err(bad)?;
        VerifyPath::Fast
            .verify(&maker, &Self::message(device), &sig)
            .map_err(bad)?;
        Ok(maker)
    }
}

/// What `power-meter bind` prints: a device asks to be bound to `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub version: u32,
    pub device_id: String,
    pub public_key: String,
    /// The owner's EVM address, lowercase.
    pub owner: String,
    pub chain_id: u64,
    pub nonce: String,
    /// Unix seconds.
    pub issued_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maker_certificate: Option<MakerCertificate>,
    /// The device's signature over [`DEVICE_DOMAIN`] + `owner_message`.
    pub device_signature: String,
    /// The exact text the owner's wallet signs (EIP-191 `personal_sign`).
    pub owner_message: String,
}

/// The owner message of a claim.
pub fn claim_message(
    device_id: &str,
    public_key: &str,
    owner: &str,
    chain_id: u64,
    nonce: &str,
    issued_at: u64,
) -> String {
    format!(
        "WattStream device binding v1\ndevice: {device_id}\npublic key: {public_key}\nowner: {owner}\n\
         chain id: {chain_id}\nnonce: {nonce}\nissued at: {issued_at}"
    )
}

impl ClaimRequest {
    /// A request signed by `key` binding it to `owner`.
    pub fn new(
        key: &DeviceKey,
        owner: &str,
        chain_id: u64,
        issued_at: u64,
        maker_certificate: Option<MakerCertificate>,
    ) -> Result<Self, BindingError> {
        let owner = normalize_address("owner", owner)?;
        let (device_id, public_key, nonce) = (
            key.device_id().to_string(),
            key.public_key().to_hex(),
            new_nonce(),
        );
        let owner_message = claim_message(&device_id, &public_key, &owner, chain_id, &nonce, issued_at);
        let device_signature = key
            .sign(format!("{DEVICE_DOMAIN}{owner_message}").as_bytes())
            .to_hex();
        Ok(ClaimRequest {
            version: 1,
            device_id,
            public_key,
            owner,
            chain_id,
            nonce,
            issued_at,
            maker_certificate,
            device_signature,
            owner_message,
        })
    }

    /// Checks everything that needs no policy and no wallet: the fields'
    /// forms, that the id is the key's, that `owner_message` is the fields'
    /// message, the device signature, and the maker certificate's signature
    /// when there is one (returning the maker's key).
    pub fn verify_device_side(&self) -> Result<(PublicKey, Option<PublicKey>), BindingError> {
        let key = PublicKey::from_hex(&self.public_key)?;
        let derived = key.device_id().to_string();
        if derived != self.device_id {
            return Err(BindingError::IdMismatch {
                given: self.device_id.chars().take(64).collect(),
                derived,
            });
        }
        if normalize_address("owner", &self.owner)? != self.owner {
            return Err(BindingError::MessageMismatch);
        }
        check_nonce(&self.nonce)?;
        let expected = claim_message(
            &self.device_id,
            &key.to_hex(),
            &self.owner,
            self.chain_id,
            &self.nonce,
            self.issued_at,
        );
        if expected != self.owner_message {
            return Err(BindingError::MessageMismatch);
        }
        let sig = Signature::from_hex(&self.device_signature).map_err(|_| BindingError::DeviceSignature)?;
        VerifyPath::Fast
            .verify(
                &key,
                format!("{DEVICE_DOMAIN}{}", self.owner_message).as_bytes(),
                &sig,
            )
            .map_err(|_| BindingError::DeviceSignature)?;
        let maker = match &self.maker_certificate {
            Some(cert) => Some(cert.verify(&key)?),
            None => None,
        };
        Ok((key, maker))
    }
}

/// A move of a device to a new owner (`to`), or an unbinding (`to` absent).
/// The current owner signs `owner_message`, or the processor's admin
/// authorises it; the new owner signs it too, as consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub version: u32,
    pub device_id: String,
    pub from: String,
    #[serde(default)]
    pub to: Option<String>,
    pub chain_id: u64,
    pub nonce: String,
    pub issued_at: u64,
    pub owner_message: String,
}

/// The owner message of a transfer (`to` = `none` unbinds).
pub fn transfer_message(
    device_id: &str,
    from: &str,
    to: Option<&str>,
    chain_id: u64,
    nonce: &str,
    issued_at: u64,
) -> String {
    format!(
        "WattStream device transfer v1\ndevice: {device_id}\nfrom: {from}\nto: {}\n\
         chain id: {chain_id}\nnonce: {nonce}\nissued at: {issued_at}",
        to.unwrap_or("none")
    )
}

impl TransferRequest {
    pub fn new(
        device_id: &str,
        from: &str,
        to: Option<&str>,
        chain_id: u64,
        issued_at: u64,
    ) -> Result<Self, BindingError> {
        let from = normalize_address("from", from)?;
        let to = to.map(|t| normalize_address("to", t)).transpose()?;
        let nonce = new_nonce();
        let owner_message = transfer_message(device_id, &from, to.as_deref(), chain_id, &nonce, issued_at);
        Ok(TransferRequest {
            version: 1,
            device_id: device_id.to_string(),
            from,
            to,
            chain_id,
            nonce,
            issued_at,
            owner_message,
        })
    }

    /// Forms and that `owner_message` is the fields' message.
    pub fn check_form(&self) -> Result<(), BindingError> {
        let id_ok = self.device_id.len() == 40
            && self
                .device_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !id_ok {
            return Err(BindingError::Key(EnvelopeError::InvalidField {
                field: "device_id",
                reason: "40 lowercase hex characters".into(),
            }));
        }
        let from_ok = normalize_address("from", &self.from)? == self.from;
        let to_ok = match &self.to {
            Some(t) => &normalize_address("to", t)? == t,
            None => true,
        };
        check_nonce(&self.nonce)?;
        let expected = transfer_message(
            &self.device_id,
            &self.from,
            self.to.as_deref(),
            self.chain_id,
            &self.nonce,
            self.issued_at,
        );
        if !from_ok || !to_ok || expected != self.owner_message {
            return Err(BindingError::MessageMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

    #[test]
    fn a_claim_verifies_and_any_changed_field_does_not() {
        let key = DeviceKey::generate();
        let req = ClaimRequest::new(&key, OWNER, 1337, 1_800_000_000, None).unwrap();
        assert_eq!(req.owner, OWNER.to_ascii_lowercase());
        assert!(req.owner_message.contains("chain id: 1337\n"));
        req.verify_device_side().unwrap();

        let mut other = req.clone();
        other.chain_id = 1;
        assert_eq!(other.verify_device_side(), Err(BindingError::MessageMismatch));
        // The message rewritten to match, but the device never signed it.
        other.owner_message = claim_message(
            &other.device_id,
            &other.public_key,
            &other.owner,
            1,
            &other.nonce,
            other.issued_at,
        );
        assert_eq!(other.verify_device_side(), Err(BindingError::DeviceSignature));

        let mut foreign = req.clone();
        let thief = DeviceKey::generate();
        foreign.public_key = thief.public_key().to_hex();
        assert_eq!(
            foreign.verify_device_side().unwrap_err().code(),
            "device_id_mismatch"
        );
    }

    #[test]
    fn a_maker_certificate_holds_only_for_the_key_it_names() {
        let maker = DeviceKey::generate();
        let device = DeviceKey::generate();
        let cert = MakerCertificate::issue(&maker, device.public_key());
        assert_eq!(cert.verify(device.public_key()).unwrap(), *maker.public_key());
        let other = DeviceKey::generate();
        assert_eq!(
            cert.verify(other.public_key()),
            Err(BindingError::MakerCertificate)
        );
        let mut forged = cert.clone();
        forged.device_public_key = other.public_key().to_hex();
        assert_eq!(
            forged.verify(other.public_key()),
            Err(BindingError::MakerCertificate)
        );
    }

    #[test]
    fn a_transfer_message_names_every_field_and_none_unbinds() {
        let t = TransferRequest::new(&"ab".repeat(20), OWNER, None, 5, 7).unwrap();
        assert!(t.owner_message.contains("\nto: none\n"));
        t.check_form().unwrap();
        let mut changed = t.clone();
        changed.to = Some(OWNER.to_ascii_lowercase());
        assert_eq!(changed.check_form(), Err(BindingError::MessageMismatch));
        assert_eq!(normalize_address("to", "0x1234").unwrap_err().code(), "malformed");
    }
}
