//! A definition's spending limit: USD a day, counted over the UTC day.
//!
//! - **A day** is a UTC day (from 00:00 to 24:00 UTC); the local run may
//!   make it shorter ([`SpendingDay::length_ms`]), so a soak sees days turn.
//! - **What counts** is each attempt's cost ([`crate::cost`]), toward the
//!   day it ended. A job in flight when the limit is reached runs to its
//!   end and counts then: the day's spend may pass the limit by what the
//!   jobs in flight cost.
//! - **What waits**: a job of the definition about to launch once the
//!   day's spend has reached the limit. It is held, `ACCEPTED` with the
//!   reason, and launched once the next day begins (the sweep puts it back
//!   on the queue). Nothing is rejected or lost for the limit.

use crate::cost::usd;
use crate::text::span;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Every held job's reason starts so: the sweep knows a held job by it.
pub const HELD_PREFIX: &str = "spending limit ";

/// The largest limit a definition may set, USD a day.
pub const MAX_DAILY_LIMIT_USD: f64 = 1_000_000.0;

/// What a day is: its length, and how far the clock is moved (tests move
/// it to see a day turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendingDay {
    pub length_ms: i64,
    pub offset_ms: i64,
}

impl Default for SpendingDay {
    fn default() -> Self {
        Self {
            length_ms: DAY_MS,
            offset_ms: 0,
        }
    }
}

impl SpendingDay {
    /// Now on this day's clock.
    pub fn now(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(self.offset_ms)
    }

    /// When the day of `now_ms` began (epoch ms, on this day's clock).
    pub fn start(&self, now_ms: i64) -> i64 {
        let length = self.length_ms.max(1);
        self.now(now_ms).div_euclid(length) * length
    }

    /// When the next day begins.
    pub fn next_start(&self, now_ms: i64) -> i64 {
        self.start(now_ms) + self.length_ms.max(1)
    }

    /// Whether a job held at `held_ms` (as the store keeps times, on no
    /// moved clock) may go now: a day has begun since.
    pub fn released(&self, held_ms: i64, now_ms: i64) -> bool {
        let unmoved = Self {
            offset_ms: 0,
            ..*self
        };
        self.start(now_ms) > unmoved.start(held_ms)
    }
}

/// Whether a job of a definition with `limit` (USD a day) waits, the day
/// having cost `spent` so far.
pub fn reached(limit: Option<f64>, spent: f64) -> bool {
    limit.is_some_and(|limit| spent >= limit)
}

/// The reason a held job gives (it starts with [`HELD_PREFIX`]).
pub fn held_reason(limit: f64, spent: f64, day: &SpendingDay, now_ms: i64) -> String {
    let left = day.next_start(now_ms) - day.now(now_ms);
    let what_day = if day.length_ms == DAY_MS {
        "UTC day"
    } else {
        "day"
    };
    format!(
        "{HELD_PREFIX}{}/day reached ({} spent this {what_day}); the next day starts in {}",
        usd(limit),
        usd(spent),
        span(left)
    )
}

/// Whether `reason` is a held job's.
pub fn is_held(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.starts_with(HELD_PREFIX))
}

/// A limit a definition may set: a number of USD above 0, at most
/// [`MAX_DAILY_LIMIT_USD`].
pub fn valid_limit(limit: f64) -> Result<(), String> {
    if limit.is_finite() && limit > 0.0 && limit <= MAX_DAILY_LIMIT_USD {
        Ok(())
    } else {
        Err(format!(
            "must be a number of USD above 0 and at most {MAX_DAILY_LIMIT_USD}, found {limit}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T00:00:00Z.
    const DEC_1: i64 = 1_796_083_200_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_day_is_a_utc_day_unless_made_shorter_or_moved() {
        let day = SpendingDay::default();
        let at_9 = DEC_1 + 9 * HOUR;
        assert_eq!(day.start(at_9), DEC_1);
        assert_eq!(day.next_start(at_9), DEC_1 + DAY_MS);
        assert_eq!(day.start(DEC_1), DEC_1, "midnight begins a day");
        assert!(!day.released(at_9, DEC_1 + DAY_MS - 1));
        assert!(day.released(at_9, DEC_1 + DAY_MS));
        // Moved a day on: what was held yesterday goes.
        let moved = SpendingDay {
            offset_ms: DAY_MS,
            ..day
        };
        assert_eq!(moved.start(at_9), DEC_1 + DAY_MS);
        assert!(moved.released(at_9, at_9), "held today, seen tomorrow");
        assert!(!day.released(at_9, at_9));
        // A two-minute day (a soak's).
        let short = SpendingDay {
            length_ms: 120_000,
            offset_ms: 0,
        };
        assert_eq!(short.start(DEC_1 + 130_000), DEC_1 + 120_000);
    }

    #[test]
    fn the_limit_holds_once_reached_and_says_when_the_day_turns() {
        assert!(!reached(None, 1e9));
        assert!(!reached(Some(0.05), 0.049));
        assert!(reached(Some(0.05), 0.05));
        let day = SpendingDay::default();
        let reason = held_reason(20.0, 20.41, &day, DEC_1 + 21 * HOUR);
        assert_eq!(
            reason,
            "spending limit $20.00/day reached ($20.41 spent this UTC day); the next day starts in 3 h 0 min"
        );
        assert!(is_held(Some(&reason)));
        assert!(!is_held(Some("EC2 has no room")));
        assert!(!is_held(None));
        assert!(valid_limit(0.05).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(valid_limit(bad).is_err(), "{bad}");
        }
    }
}
