//! Signature verification behind one API with two implementations: the pure-Rust
//! `p256` reference and `ring`, about four times faster, for the processor's hot
//! path. Differential tests keep the two in agreement.

use p256::ecdsa::signature::Verifier;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

use crate::error::EnvelopeError;
use crate::identity::PublicKey;
use crate::signature::Signature;

/// Which implementation checks a signature. Both accept high-S and low-S
/// signatures and reject everything else the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyPath {
    /// RustCrypto `p256`: pure Rust, the reference.
    Reference,
    /// `ring`: assembly-optimised P-256.
    #[default]
    Fast,
}

impl VerifyPath {
    /// Verifies `signature` over SHA-256(`message`) under `key`.
    pub fn verify(self, key: &PublicKey, message: &[u8], signature: &Signature) -> Result<(), EnvelopeError> {
        let ok = match self {
            VerifyPath::Reference => p256::ecdsa::Signature::from_slice(&signature.0)
                .map(|sig| key.verifying_key().verify(message, &sig).is_ok())
                .unwrap_or(false),
            VerifyPath::Fast => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.uncompressed())
                .verify(message, &signature.0)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(EnvelopeError::SignatureMismatch)
        }
    }

    /// Both paths, by name, for tools and benchmarks.
    pub const ALL: [VerifyPath; 2] = [VerifyPath::Reference, VerifyPath::Fast];

    /// `reference` or `fast`.
    pub fn name(self) -> &'static str {
        match self {
            VerifyPath::Reference => "reference (p256)",
            VerifyPath::Fast => "fast (ring)",
        }
    }
}
