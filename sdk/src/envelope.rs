//! The signed envelope of DESIGN §2: `{"data": {...}, "signature": HEX, "public_key": HEX}`.
//!
//! The signature covers the exact bytes of the `data` value as they appear in the
//! body, so parsing keeps `data` as a raw slice of the body and never
//! re-serialises it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::EnvelopeError;
use crate::identity::{DeviceId, PublicKey};
use crate::reading::Reading;
use crate::signature::Signature;
use crate::verify::VerifyPath;

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    public_key: Option<Cow<'a, str>>,
}

/// A parsed envelope whose fields passed every structural rule. The signature
/// is **not yet verified**: call [`Envelope::verify`].
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    data: &'a str,
    signature: Signature,
    public_key: PublicKey,
    reading: Reading,
}

impl<'a> Envelope<'a> {
    /// Parses a body: JSON object, the three fields, hex and lengths, a point on
    /// the curve, and the reading rules. Unknown top-level fields are ignored.
    pub fn parse(body: &'a [u8]) -> Result<Self, EnvelopeError> {
        let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::BadJson(e.to_string()))?;
        if !text.trim_start().starts_with('{') {
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(EnvelopeError::NotAnObject("envelope")),
                Err(e) => Err(EnvelopeError::BadJson(e.to_string())),
            };
        }
        let raw: RawEnvelope<'a> =
            serde_json::from_str(text).map_err(|e| EnvelopeError::BadJson(e.to_string()))?;
        let data = raw.data.ok_or(EnvelopeError::MissingField("data"))?.get();
        let signature = raw.signature.ok_or(EnvelopeError::MissingField("signature"))?;
        let public_key = raw.public_key.ok_or(EnvelopeError::MissingField("public_key"))?;
        let public_key = PublicKey::from_hex(&public_key)?;
        let signature = Signature::from_hex(&signature)?;
        let reading = Reading::parse(data)?;
        Ok(Envelope {
            data,
            signature,
            public_key,
            reading,
        })
    }

    /// Checks the signature over the raw `data` bytes with the chosen path.
    pub fn verify(&self, path: VerifyPath) -> Result<(), EnvelopeError> {
        path.verify(&self.public_key, self.data.as_bytes(), &self.signature)
    }

    /// The exact signed bytes.
    pub fn data(&self) -> &'a str {
        self.data
    }

    /// The parsed reading.
    pub fn reading(&self) -> &Reading {
        &self.reading
    }

    /// The signer's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The signature as sent.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The device id of the signer.
    pub fn device_id(&self) -> DeviceId {
        self.public_key.device_id()
    }
}

/// Assembles an envelope body from already signed `data` bytes.
pub fn envelope_body(data: &str, signature: &Signature, public_key: &PublicKey) -> String {
    let mut body = String::with_capacity(data.len() + 300);
    body.push_str("{\"data\":");
    body.push_str(data);
    body.push_str(",\"signature\":\"");
    body.push_str(&signature.to_hex());
    body.push_str("\",\"public_key\":\"");
    body.push_str(&public_key.to_hex());
    body.push_str("\"}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;

    fn key() -> DeviceKey {
        DeviceKey::from_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn data_is_kept_byte_for_byte() {
        let data = "{ \"timestamp\" : 1795514493 ,\n \"sensor_reading\":4.210 }";
        let body = key().sign_data(data).unwrap();
        let env = Envelope::parse(body.as_bytes()).unwrap();
        assert_eq!(env.data(), data);
        env.verify(VerifyPath::Reference).unwrap();
        env.verify(VerifyPath::Fast).unwrap();
    }

    #[test]
    fn reserialised_data_does_not_verify() {
        // Same JSON value, different bytes: the signature is over bytes.
        let body = key()
            .sign_data(r#"{"sensor_reading":4.210,"timestamp":1}"#)
            .unwrap();
        let tampered = body.replace("4.210", "4.21");
        let env = Envelope::parse(tampered.as_bytes()).unwrap();
        assert_eq!(
            env.verify(VerifyPath::Fast),
            Err(EnvelopeError::SignatureMismatch)
        );
        assert_eq!(
            env.verify(VerifyPath::Reference),
            Err(EnvelopeError::SignatureMismatch)
        );
    }

    #[test]
    fn upper_case_hex_and_compressed_keys_are_accepted() {
        let k = key();
        let data = r#"{"sensor_reading":1.5,"timestamp":2}"#;
        let sig = k.sign(data.as_bytes());
        let point = p256::ecdsa::VerifyingKey::from(k.signing_key()).to_sec1_point(true);
        let body = format!(
            r#"{{"data":{data},"signature":"{}","public_key":"{}"}}"#,
            sig.to_hex().to_uppercase(),
            hex::encode_upper(point.as_bytes())
        );
        let env = Envelope::parse(body.as_bytes()).unwrap();
        env.verify(VerifyPath::Fast).unwrap();
        env.verify(VerifyPath::Reference).unwrap();
        assert_eq!(
            env.device_id(),
            k.device_id(),
            "compressed and uncompressed keys give one id"
        );
    }

    #[test]
    fn high_s_verifies_and_der_does_not() {
        let k = key();
        let data = r#"{"sensor_reading":1.5,"timestamp":2}"#;
        let sig = p256::ecdsa::Signature::from_slice(&k.sign(data.as_bytes()).0).unwrap();
        // Flip s to n - s: the other valid signature for the same message.
        let flipped = p256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let mut high = [0u8; 64];
        high.copy_from_slice(&flipped.to_bytes());
        let body = envelope_body(data, &Signature(high), k.public_key());
        let env = Envelope::parse(body.as_bytes()).unwrap();
        env.verify(VerifyPath::Fast).unwrap();
        env.verify(VerifyPath::Reference).unwrap();

        let der = hex::encode(sig.to_der().as_bytes());
        let body = format!(
            r#"{{"data":{data},"signature":"{der}","public_key":"{}"}}"#,
            k.public_key().to_hex()
        );
        assert!(matches!(
            Envelope::parse(body.as_bytes()),
            Err(EnvelopeError::WrongLength {
                field: "signature",
                ..
            })
        ));
    }

    #[test]
    fn structural_errors_name_the_rule() {
        let k = key();
        let good = k.sign_data(r#"{"sensor_reading":1,"timestamp":2}"#).unwrap();
        let pk = k.public_key().to_hex();
        let sig = k.sign(b"x").to_hex();
        let good_sig = Envelope::parse(good.as_bytes()).unwrap().signature().to_hex();
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "malformed"),
            ("[1]".into(), "malformed"),
            (good[..good.len() - 1].to_string(), "malformed"),
            (
                format!(r#"{{"signature":"{sig}","public_key":"{pk}"}}"#),
                "malformed",
            ),
            (
                format!(r#"{{"data":{{"sensor_reading":1,"timestamp":2}},"public_key":"{pk}"}}"#),
                "malformed",
            ),
            (good.replace(&pk, &pk[..128]), "bad_public_key"),
            (good.replace(&pk, &format!("zz{}", &pk[2..])), "bad_public_key"),
            (good.replace(&pk, &format!("{}00", &pk[..128])), "bad_public_key"),
            (
                good.replacen("\"signature\":\"", "\"signature\":\"0", 1),
                "bad_signature",
            ),
            (
                good.replace(&good_sig, &format!("g{}", &good_sig[1..])),
                "bad_signature",
            ),
            (
                good.replace("\"sensor_reading\":1", "\"sensor_reading\":-1"),
                "invalid_reading",
            ),
        ];
        for (body, code) in cases {
            let err = Envelope::parse(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), code, "{body}: {err}");
        }
    }

    #[test]
    fn a_point_off_the_curve_is_named() {
        let k = key();
        let mut point = *k.public_key().uncompressed();
        point[64] ^= 1;
        let body = k
            .sign_data(r#"{"sensor_reading":1,"timestamp":2}"#)
            .unwrap()
            .replace(&k.public_key().to_hex(), &hex::encode(point));
        assert_eq!(
            Envelope::parse(body.as_bytes()).unwrap_err(),
            EnvelopeError::PointNotOnCurve
        );
    }
}
