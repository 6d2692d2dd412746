//! Paid time: how many seconds of a reading the rewards may pay for. Money
//! never depends on what the device claims about time (DESIGN §5): the owner
//! of a device can sign any `window_s` and any timestamps, so the processor
//! decides, from the order it stores readings in:
//!
//! - at most the claimed window (5 s when none is claimed), and at most
//!   `max_window_s`;
//! - at most the time since the device's latest paid reading, and nothing for
//!   a reading that is not newer;
//! - nothing for a reading from before the device's registration (less
//!   `skew_s`, the clock difference a meter is allowed).
//!
//! So whatever order and timestamps a device chooses, the seconds it is paid
//! for add up to at most the span from `registered_at - skew_s` to its newest
//! reading — which the processor accepts only up to `skew_s` into its own
//! future — that is: wall time since registration plus twice the skew.

/// The rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaidTime {
    /// Longest window paid for (`limits.max_window_s`).
    pub max_window_s: u64,
    /// Clock difference allowed between a meter and the processor
    /// (`limits.max_future_s`).
    pub skew_s: u64,
}

/// The window a reading claims when it claims none.
pub const DEFAULT_WINDOW_S: u64 = 5;

impl PaidTime {
    /// Seconds paid for a reading at `timestamp` claiming `window_s`, for a
    /// device registered at `registered_at` whose latest paid reading is
    /// `last_paid` (`None`: none yet). Returns the seconds and the device's new
    /// latest paid timestamp.
    pub fn pay(
        &self,
        window_s: Option<u64>,
        timestamp: u64,
        registered_at: u64,
        last_paid: Option<u64>,
    ) -> (u64, Option<u64>) {
        let floor = last_paid.unwrap_or_else(|| registered_at.saturating_sub(self.skew_s));
        if timestamp <= floor {
            return (0, last_paid);
        }
        let window = window_s.unwrap_or(DEFAULT_WINDOW_S).min(self.max_window_s);
        (window.min(timestamp - floor), Some(timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULE: PaidTime = PaidTime {
        max_window_s: 60,
        skew_s: 300,
    };
    const REG: u64 = 1_795_515_000;

    #[test]
    fn the_rule_case_by_case() {
        // An honest meter: 5 s windows, 5 s apart.
        let (p, last) = RULE.pay(Some(5), REG + 5, REG, None);
        assert_eq!((p, last), (5, Some(REG + 5)));
        assert_eq!(RULE.pay(Some(5), REG + 10, REG, last), (5, Some(REG + 10)));
        // A huge claimed window is cut to max_window_s, then to the time since the last.
        assert_eq!(
            RULE.pay(Some(u32::MAX as u64), REG + 1000, REG, Some(REG + 999))
                .0,
            1
        );
        assert_eq!(RULE.pay(Some(u32::MAX as u64), REG + 1000, REG, Some(REG)).0, 60);
        // No window claimed: 5 s.
        assert_eq!(RULE.pay(None, REG + 100, REG, Some(REG)).0, 5);
        // The same timestamp again, or an older one: nothing, and the last stays.
        assert_eq!(
            RULE.pay(Some(5), REG + 10, REG, Some(REG + 10)),
            (0, Some(REG + 10))
        );
        assert_eq!(
            RULE.pay(Some(5), REG + 3, REG, Some(REG + 10)),
            (0, Some(REG + 10))
        );
        // Before registration, less the skew: nothing.
        assert_eq!(RULE.pay(Some(5), REG - 301, REG, None), (0, None));
        // Within the skew: paid, bounded by the time since registration - skew.
        assert_eq!(RULE.pay(Some(5), REG - 298, REG, None).0, 2);
    }

    proptest! {
        /// Whatever windows and timestamps a device signs, in whatever order,
        /// its paid seconds stay within its newest timestamp minus
        /// (registration - skew), and no reading is paid more than max_window_s.
        #[test]
        fn paid_time_is_bounded_by_wall_time(
            readings in proptest::collection::vec((any::<Option<u32>>(), 0u64..20_000), 1..200)
        ) {
            let (mut last, mut total, mut newest) = (None, 0u64, 0u64);
            for (window, offset) in readings {
                let ts = REG - 2_000 + offset;
                let (paid, next) = RULE.pay(window.map(u64::from), ts, REG, last);
                prop_assert!(paid <= RULE.max_window_s);
                total += paid;
                newest = newest.max(ts);
                last = next;
            }
            let span = newest.saturating_sub(REG - RULE.skew_s);
            prop_assert!(total <= span, "paid {} s over a span of {} s", total, span);
        }
    }
}
