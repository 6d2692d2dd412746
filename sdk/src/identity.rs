//! A device's identity: its P-256 signing key, the public key it publishes, and the
//! device id derived from that public key (see the crate docs for the derivation).

use p256::ecdsa::{SigningKey, VerifyingKey, signature::Signer};
use p256::elliptic_curve::Generate;
use sha2::{Digest, Sha256};

use crate::envelope::envelope_body;
use crate::error::EnvelopeError;
use crate::reading::Reading;
use crate::signature::Signature;

/// The 20-byte device id: SHA-256 of the uncompressed public key, truncated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 20]);

impl DeviceId {
    /// Parses 40 hex characters, with or without a `0x` prefix.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.strip_prefix("0x").unwrap_or(text);
        let mut out = [0u8; 20];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(DeviceId(out))
    }

    /// The id as a ledger account address, `0x` followed by the 40 hex characters.
    pub fn address(&self) -> String {
        format!("0x{self}")
    }

    /// The first 8 hex characters, for small screens and log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// A validated P-256 public key (a point on the curve), kept with its
/// uncompressed SEC1 bytes, which the fast verifier and the device id use.
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    uncompressed: [u8; 65],
}

impl PublicKey {
    /// Accepts SEC1 bytes: uncompressed (65 bytes, `04..`) or compressed (33 bytes, `02..`/`03..`).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        match (bytes.len(), bytes.first()) {
            (65, Some(0x04)) | (33, Some(0x02 | 0x03)) => {}
            _ => {
                return Err(EnvelopeError::WrongLength {
                    field: "public_key",
                    expected: "130 (04..) or 66 (02../03..)",
                    got: bytes.len() * 2,
                });
            }
        }
        let key = VerifyingKey::from_sec1_bytes(bytes).map_err(|_| EnvelopeError::PointNotOnCurve)?;
        Ok(Self::from_verifying_key(key))
    }

    /// Parses SEC1 hex of either case (see [`PublicKey::from_sec1`]).
    pub fn from_hex(text: &str) -> Result<Self, EnvelopeError> {
        let mut buf = [0u8; 65];
        let n = text.len() / 2;
        if !text.len().is_multiple_of(2) || (n != 65 && n != 33) {
            return Err(EnvelopeError::WrongLength {
                field: "public_key",
                expected: "130 (04..) or 66 (02../03..)",
                got: text.len(),
            });
        }
        hex::decode_to_slice(text, &mut buf[..n]).map_err(|_| EnvelopeError::NotHex("public_key"))?;
        Self::from_sec1(&buf[..n])
    }

    fn from_verifying_key(key: VerifyingKey) -> Self {
        let point = key.to_sec1_point(false);
        let mut uncompressed = [0u8; 65];
        uncompressed.copy_from_slice(point.as_bytes());
        PublicKey { key, uncompressed }
    }

    /// The uncompressed SEC1 encoding, `04 || X || Y`.
    pub fn uncompressed(&self) -> &[u8; 65] {
        &self.uncompressed
    }

    /// Lowercase hex of the uncompressed encoding (130 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.uncompressed)
    }

    /// The device id derived from this key.
    pub fn device_id(&self) -> DeviceId {
        let digest = Sha256::digest(self.uncompressed);
        let mut id = [0u8; 20];
        id.copy_from_slice(&digest[..20]);
        DeviceId(id)
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.uncompressed == other.uncompressed
    }
}

impl Eq for PublicKey {}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// A device's private signing key. Its `Debug` output never shows the secret,
/// and the secret is zeroed when the key is dropped.
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
    public: PublicKey,
}

impl DeviceKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate())
    }

    /// A key from a raw 32-byte scalar (tests and tools; devices use [`DeviceKey::generate`]).
    pub fn from_bytes(secret: &[u8]) -> Option<Self> {
        SigningKey::from_slice(secret).ok().map(Self::from_signing_key)
    }

    pub(crate) fn from_signing_key(signing: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*signing.verifying_key());
        DeviceKey { signing, public }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The device id of this key's public half.
    pub fn device_id(&self) -> DeviceId {
        self.public.device_id()
    }

    /// Signs `message` (ECDSA P-256, SHA-256, deterministic nonces per RFC 6979).
    pub fn sign(&self, message: &[u8]) -> Signature {
        let sig: p256::ecdsa::Signature = self.signing.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Signature(out)
    }

    /// Serialises `reading` as the `data` JSON, signs those bytes and returns the
    /// envelope body.
    pub fn sign_reading(&self, reading: &Reading) -> String {
        let data = reading.to_json();
        envelope_body(&data, &self.sign(data.as_bytes()), &self.public)
    }

    /// Signs an already serialised `data` object after checking it against the
    /// envelope rules (required fields, a finite non-negative reading). The signed
    /// bytes are `data` exactly as given.
    pub fn sign_data(&self, data: &str) -> Result<String, EnvelopeError> {
        Reading::parse(data)?;
        Ok(envelope_body(data, &self.sign(data.as_bytes()), &self.public))
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey(device {}, secret hidden)", self.device_id())
    }
}
