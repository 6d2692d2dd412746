//! The `data` object of an envelope: one meter window (DESIGN §2). Only
//! `sensor_reading` and `timestamp` are required, so the W3bstream demo's compact
//! format `{"sensor_reading":134.7,"timestamp":1677091161}` is a valid reading.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::EnvelopeError;

/// One window's reading. Field order here is the order of the serialised JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// Average power over the window, watts (finite, >= 0).
    pub sensor_reading: f64,
    /// Unix seconds of the window's end.
    pub timestamp: u64,
    /// Per-device counter that survives restarts; duplicates are detected by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Window length, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u32>,
    /// Energy over the window, watt-hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_wh: Option<f64>,
    /// Lowest sampled power in the window, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_w: Option<f64>,
    /// Highest sampled power in the window, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_w: Option<f64>,
    /// Average bus voltage, volts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voltage_v: Option<f64>,
    /// Average current, amperes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_a: Option<f64>,
    /// Number of samples averaged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    /// Samples the window should have had but could not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<u32>,
}

/// Every known field as an unparsed slice, so each can be checked with an error
/// that names it. Unknown fields are ignored (they stay in the signed bytes).
#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(borrow)]
    sensor_reading: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    seq: Option<&'a RawValue>,
    #[serde(borrow)]
    window_s: Option<&'a RawValue>,
    #[serde(borrow)]
    energy_wh: Option<&'a RawValue>,
    #[serde(borrow)]
    min_w: Option<&'a RawValue>,
    #[serde(borrow)]
    max_w: Option<&'a RawValue>,
    #[serde(borrow)]
    voltage_v: Option<&'a RawValue>,
    #[serde(borrow)]
    current_a: Option<&'a RawValue>,
    #[serde(borrow)]
    samples: Option<&'a RawValue>,
    #[serde(borrow)]
    missed: Option<&'a RawValue>,
}

fn field<T: for<'de> Deserialize<'de>>(
    name: &'static str,
    raw: Option<&RawValue>,
) -> Result<Option<T>, EnvelopeError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|e| EnvelopeError::InvalidField {
                field: name,
                reason: strip_position(&e),
            }),
    }
}

fn required<T: for<'de> Deserialize<'de>>(
    name: &'static str,
    raw: Option<&RawValue>,
) -> Result<T, EnvelopeError> {
    field(name, raw)?.ok_or(EnvelopeError::MissingField(name))
}

/// serde_json's message without its " at line 1 column 3" tail, which points into
/// the field's own slice and would only confuse.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl Reading {
    /// A reading with only the two required fields.
    pub fn new(sensor_reading: f64, timestamp: u64) -> Self {
        Reading {
            sensor_reading,
            timestamp,
            seq: None,
            window_s: None,
            energy_wh: None,
            min_w: None,
            max_w: None,
            voltage_v: None,
            current_a: None,
            samples: None,
            missed: None,
        }
    }

    /// The same reading with `seq` set.
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// Compact JSON, the bytes a meter signs.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a reading always serialises")
    }

    /// Parses and checks a `data` object.
    pub fn parse(data: &str) -> Result<Self, EnvelopeError> {
        if !data.trim_start().starts_with('{') {
            return match serde_json::from_str::<serde::de::IgnoredAny>(data) {
                Ok(_) => Err(EnvelopeError::NotAnObject("data")),
                Err(e) => Err(EnvelopeError::BadJson(e.to_string())),
            };
        }
        let raw: RawFields = serde_json::from_str(data).map_err(|e| EnvelopeError::BadJson(e.to_string()))?;
        let sensor_reading: f64 = required("data.sensor_reading", raw.sensor_reading)?;
        if !sensor_reading.is_finite() || sensor_reading < 0.0 {
            return Err(EnvelopeError::InvalidReading(sensor_reading));
        }
        Ok(Reading {
            sensor_reading,
            timestamp: required("data.timestamp", raw.timestamp)?,
            seq: field("data.seq", raw.seq)?,
            window_s: field("data.window_s", raw.window_s)?,
            energy_wh: field("data.energy_wh", raw.energy_wh)?,
            min_w: field("data.min_w", raw.min_w)?,
            max_w: field("data.max_w", raw.max_w)?,
            voltage_v: field("data.voltage_v", raw.voltage_v)?,
            current_a: field("data.current_a", raw.current_a)?,
            samples: field("data.samples", raw.samples)?,
            missed: field("data.missed", raw.missed)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_format_is_a_valid_reading() {
        let r = Reading::parse(r#"{"sensor_reading":134.7,"timestamp":1677091161}"#).unwrap();
        assert_eq!(r.sensor_reading, 134.7);
        assert_eq!(r.timestamp, 1677091161);
        assert_eq!(r.seq, None);
    }

    #[test]
    fn full_reading_round_trips() {
        let mut r = Reading::new(4.21, 1795514493).with_seq(1042);
        r.window_s = Some(5);
        r.energy_wh = Some(0.00585);
        r.samples = Some(50);
        let json = r.to_json();
        assert!(json.starts_with(r#"{"sensor_reading":4.21,"timestamp":1795514493,"seq":1042,"window_s":5"#));
        assert_eq!(Reading::parse(&json).unwrap(), r);
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let cases: &[(&str, EnvelopeError)] = &[
            (
                r#"{"timestamp":1}"#,
                EnvelopeError::MissingField("data.sensor_reading"),
            ),
            (
                r#"{"sensor_reading":1}"#,
                EnvelopeError::MissingField("data.timestamp"),
            ),
            (
                r#"{"sensor_reading":-0.5,"timestamp":1}"#,
                EnvelopeError::InvalidReading(-0.5),
            ),
            (r#"[1,2]"#, EnvelopeError::NotAnObject("data")),
        ];
        for (input, want) in cases {
            assert_eq!(&Reading::parse(input).unwrap_err(), want, "{input}");
        }
        assert!(matches!(
            Reading::parse(r#"{"sensor_reading":"5","timestamp":1}"#),
            Err(EnvelopeError::InvalidField {
                field: "data.sensor_reading",
                ..
            })
        ));
        assert!(matches!(
            Reading::parse(r#"{"sensor_reading":5,"timestamp":-1}"#),
            Err(EnvelopeError::InvalidField {
                field: "data.timestamp",
                ..
            })
        ));
        assert!(matches!(
            Reading::parse(r#"{"sensor_reading":5,"#),
            Err(EnvelopeError::BadJson(_))
        ));
        // JSON has no NaN or infinity; an overflowing number is refused, not clamped.
        assert!(matches!(
            Reading::parse(r#"{"sensor_reading":1e999,"timestamp":1}"#),
            Err(EnvelopeError::InvalidField {
                field: "data.sensor_reading",
                ..
            })
        ));
    }

    #[test]
    fn a_repeated_field_is_refused() {
        // Two values for one field would let the signer and a reader disagree.
        assert!(Reading::parse(r#"{"sensor_reading":1,"timestamp":1,"sensor_reading":900}"#).is_err());
    }
}
