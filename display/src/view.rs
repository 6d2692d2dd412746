//! What the screen should show, decided from the meter's state file: live values,
//! the same values marked stale when the file stops changing, or a "no data"
//! screen when it is missing or unreadable. Reading never fails: every problem
//! becomes something to show.

use std::path::Path;

use wattstream_sdk::state::MeterState;

/// The screen to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// Fresh values (`stale_s` is `None`) or values `stale_s` seconds old.
    Live {
        state: Box<MeterState>,
        stale_s: Option<u64>,
    },
    /// Nothing to show, and why.
    NoData { reason: String },
}

/// Reads `path` and decides. `now` is Unix seconds; a state older than
/// `stale_after_s` is stale.
pub fn load(path: &Path, now: u64, stale_after_s: u64) -> Screen {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Screen::NoData {
            reason: "meter not running".into(),
        },
        Err(_) => Screen::NoData {
            reason: "state file unreadable".into(),
        },
        Ok(bytes) => from_bytes(&bytes, now, stale_after_s),
    }
}

/// Decides from the bytes of a state file.
pub fn from_bytes(bytes: &[u8], now: u64, stale_after_s: u64) -> Screen {
    match MeterState::parse(bytes) {
        Err(_) => Screen::NoData {
            reason: "state file corrupt".into(),
        },
        Ok(state) => {
            let age = now.saturating_sub(state.time);
            Screen::Live {
                state: Box::new(state),
                stale_s: (age > stale_after_s).then_some(age),
            }
        }
    }
}

/// The main figure: one decimal below 100 W, none from 100 W, at most four
/// digits; `true` when the value is above what four digits hold.
pub fn format_power(watts: f64) -> (String, bool) {
    if !watts.is_finite() || watts < 0.0 {
        return ("--".into(), false);
    }
    let tenths = (watts * 10.0).round() / 10.0;
    if tenths < 100.0 {
        return (format!("{tenths:.1}"), false);
    }
    let whole = watts.round();
    if whole <= 9999.0 {
        (format!("{whole:.0}"), false)
    } else {
        ("9999".into(), true)
    }
}

/// A compact number for small text: up to about six characters.
pub fn format_amount(x: f64) -> String {
    match x.abs() {
        v if v < 1000.0 => format!("{x:.2}"),
        v if v < 1_000_000.0 => format!("{:.1}k", x / 1000.0),
        v if v < 1e9 => format!("{:.1}M", x / 1e6),
        _ => format!("{:.1e}", x),
    }
}

/// `HH:MM:SS` of a Unix time, UTC.
pub fn clock(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_never_needs_more_than_four_digits() {
        let cases = [
            (0.0, "0.0"),
            (4.21, "4.2"),
            (99.94, "99.9"),
            (99.96, "100"),
            (100.0, "100"),
            (1234.4, "1234"),
            (9999.4, "9999"),
        ];
        for (w, text) in cases {
            assert_eq!(format_power(w), (text.to_string(), false), "{w}");
        }
        assert_eq!(format_power(9999.6), ("9999".to_string(), true));
        assert_eq!(format_power(f64::NAN).0, "--");
        for i in 0..100_000 {
            let (text, _) = format_power(i as f64 * 0.1);
            assert!(text.len() <= 4, "{text}");
        }
    }

    #[test]
    fn missing_corrupt_and_stale_files_are_screens_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(matches!(load(&path, 100, 30), Screen::NoData { .. }));
        std::fs::write(&path, "{\"version\":").unwrap();
        assert_eq!(
            load(&path, 100, 30),
            Screen::NoData {
                reason: "state file corrupt".into()
            }
        );
        std::fs::write(
            &path,
            r#"{"version":1,"time":100,"device_id":"ab","power_w":1,"window_w":1,"window_s":5,"energy_today_wh":0,"history_w":[]}"#,
        )
        .unwrap();
        assert!(matches!(load(&path, 110, 30), Screen::Live { stale_s: None, .. }));
        assert!(matches!(
            load(&path, 145, 30),
            Screen::Live {
                stale_s: Some(45),
                ..
            }
        ));
    }

    #[test]
    fn clock_and_amounts() {
        assert_eq!(clock(1_795_514_493), "10:01:33"); // 2026-11-24T10:01:33Z
        assert_eq!(format_amount(12.345), "12.35");
        assert_eq!(format_amount(12_345.0), "12.3k");
    }
}
