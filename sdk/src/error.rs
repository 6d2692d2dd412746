//! Typed errors: every rule of the envelope contract that can fail has its own
//! variant, so a caller can say exactly which one did (and the processor can map
//! each to a stable rejection reason).

use thiserror::Error;

/// Why an envelope, a public key or a signature was refused.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EnvelopeError {
    /// The body (or the `data` value) is not valid JSON.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// A value that must be a JSON object is something else.
    #[error("`{0}` must be a JSON object")]
    NotAnObject(&'static str),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but has the wrong type or an impossible value.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// A hex field holds a character that is not a hex digit.
    #[error("`{0}` is not hex")]
    NotHex(&'static str),
    /// A hex field decodes to the wrong number of bytes.
    #[error("`{field}` has the wrong length: expected {expected}, got {got} hex characters")]
    WrongLength {
        field: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// The public key's bytes do not encode a point on P-256.
    #[error("`public_key` is not a point on the P-256 curve")]
    PointNotOnCurve,
    /// The signature does not match the data and the public key.
    #[error("signature does not match the data and public key")]
    SignatureMismatch,
    /// `sensor_reading` is negative or not finite.
    #[error("`data.sensor_reading` must be finite and >= 0, got {0}")]
    InvalidReading(f64),
}

impl EnvelopeError {
    /// A short stable string for the rule that failed, used as the processor's
    /// rejection reason: `malformed`, `bad_signature`, `bad_public_key` or
    /// `invalid_reading`.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::BadJson(_)
            | EnvelopeError::NotAnObject(_)
            | EnvelopeError::MissingField(_)
            | EnvelopeError::InvalidField { .. } => "malformed",
            EnvelopeError::NotHex("public_key")
            | EnvelopeError::WrongLength {
                field: "public_key", ..
            }
            | EnvelopeError::PointNotOnCurve => "bad_public_key",
            EnvelopeError::NotHex(_)
            | EnvelopeError::WrongLength { .. }
            | EnvelopeError::SignatureMismatch => "bad_signature",
            EnvelopeError::InvalidReading(_) => "invalid_reading",
        }
    }
}

/// Why a key file could not be written or read.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The target exists and overwriting was not asked for.
    #[error("{0} already exists; refusing to overwrite a device key")]
    Exists(std::path::PathBuf),
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a PKCS#8 PEM P-256 private key.
    #[error("{0}: not a PKCS#8 PEM P-256 private key")]
    BadPem(std::path::PathBuf),
}
