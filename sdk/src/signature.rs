//! The fixed-size `r || s` signature of DESIGN §2, parsed from hex of either case.

use crate::error::EnvelopeError;

/// A P-256 ECDSA signature in fixed-size (IEEE P1363) form: 32-byte `r` then 32-byte `s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Takes exactly 64 bytes; any other length is a [`EnvelopeError::WrongLength`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let arr: [u8; 64] = bytes.try_into().map_err(|_| EnvelopeError::WrongLength {
            field: "signature",
            expected: "128",
            got: bytes.len() * 2,
        })?;
        Ok(Signature(arr))
    }

    /// Parses 128 hex characters (upper or lower case).
    pub fn from_hex(text: &str) -> Result<Self, EnvelopeError> {
        if text.len() != 128 {
            return Err(EnvelopeError::WrongLength {
                field: "signature",
                expected: "128",
                got: text.len(),
            });
        }
        let mut out = [0u8; 64];
        hex::decode_to_slice(text, &mut out).map_err(|_| EnvelopeError::NotHex("signature"))?;
        Ok(Signature(out))
    }

    /// Lowercase hex, 128 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}
