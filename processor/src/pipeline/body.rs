//! Stage 1: the request body. Checks the nesting depth with a byte scan before
//! any parser recurses into it, then splits a batch into its envelopes without
//! copying them (each stays a slice of the body, so signatures are checked over
//! the bytes the client sent).

use serde_json::value::RawValue;

/// A body split into envelopes.
pub enum Body<'a> {
    /// One envelope (the body is an object, or at least not an array).
    Single(&'a [u8]),
    /// An array of envelopes.
    Batch(Vec<&'a RawValue>),
}

/// Why a whole body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    #[error("empty body")]
    Empty,
    #[error("body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("JSON nesting deeper than {max}")]
    TooDeep { max: usize },
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("batch of {got} envelopes is larger than {max}")]
    BatchTooLarge { got: usize, max: usize },
}

impl BodyError {
    /// The stable reason code and HTTP status for this refusal.
    pub fn reason(&self) -> (&'static str, u16) {
        match self {
            BodyError::TooLarge { .. } | BodyError::BatchTooLarge { .. } => ("too_large", 413),
            _ => ("malformed", 400),
        }
    }
}

/// The deepest nesting of arrays and objects in `bytes`, stopping early once it
/// passes `max`. Brackets inside strings do not count.
pub fn depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Splits `bytes` into envelopes within the limits.
pub fn split(bytes: &[u8], max_depth: usize, max_batch: usize) -> Result<Body<'_>, BodyError> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(BodyError::Empty)?;
    if depth_exceeds(bytes, max_depth) {
        return Err(BodyError::TooDeep { max: max_depth });
    }
    if bytes[start] != b'[' {
        return Ok(Body::Single(bytes));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
    if items.len() > max_batch {
        return Err(BodyError::BatchTooLarge {
            got: items.len(),
            max: max_batch,
        });
    }
    Ok(Body::Batch(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert!(!depth_exceeds(br#"{"a":"[[[[[[[[[[{{{{{{"}"#, 2));
        assert!(!depth_exceeds(br#"{"a":"\"[[[["}"#, 1));
        assert!(depth_exceeds(b"[[[", 2));
        assert!(!depth_exceeds(b"[[]]", 2));
    }

    #[test]
    fn hundred_thousand_deep_is_refused_without_recursion() {
        let body = "[".repeat(100_000);
        assert_eq!(
            split(body.as_bytes(), 32, 1000).err(),
            Some(BodyError::TooDeep { max: 32 })
        );
    }

    #[test]
    fn batches_are_split_and_bounded() {
        match split(br#" [{"a":1}, {"b":[2]}] "#, 8, 10).ok().unwrap() {
            Body::Batch(items) => {
                assert_eq!(items.len(), 2);
                assert_eq!(items[1].get(), r#"{"b":[2]}"#);
            }
            Body::Single(_) => panic!("an array is a batch"),
        }
        assert_eq!(
            split(b"[1,2,3]", 8, 2).err(),
            Some(BodyError::BatchTooLarge { got: 3, max: 2 })
        );
        assert_eq!(split(b"  \n", 8, 2).err(), Some(BodyError::Empty));
        assert!(matches!(split(b"[1,2", 8, 2), Err(BodyError::NotJson(_))));
    }
}
