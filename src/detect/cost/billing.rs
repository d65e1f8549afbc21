//! Billing cycles: when a series counts as billed, and when a series that
//! appears in the history is really new.
//!
//! Many charges do not post daily: tax, support plans, reserved-instance and
//! Savings Plans fees, Route 53 hosted zones and marketplace subscriptions
//! post once a month, on the 1st or on a fixed day of their own (the
//! purchase or subscription anniversary). Seeing such a charge for the first
//! time says nothing unless the history covers the day it would have posted
//! a month earlier. So a series is new only if the stored history holds a
//! full billing cycle *before* its first billed day in which it could have
//! been billed and was not:
//!
//! - a series billed on most days from the start (at least
//!   [`DAILY_MIN_BILLED`] of its first [`CADENCE_DAYS`] days) is usage billed
//!   daily: its cycle is a day, and `min_history_days` of unbilled history
//!   before it suffice (the rule for usage since the detector was written);
//! - any other series (billed once so far, or on a few days) may post
//!   monthly: the history must begin at least one calendar month plus
//!   [`POSTING_GRACE_DAYS`] before its first billed day, so that the same
//!   day of the previous month, give or take the days AWS takes to post, was
//!   in the history and had no charge.
//!
//! The decision only ever turns from "not new" to "new" as days are added
//! (a daily series reveals itself within its first week), never back, so a
//! daily scan never retracts a new-service finding it made.

use chrono::{Duration, Months, NaiveDate};

use super::CostConfig;

/// Amounts below half a cent round to $0.00 on an invoice: they are
/// residues (credits leave `-0.0000000092`), not a charge. A day is billed
/// when its amount is at least this much; credits and refunds (negative
/// amounts) never make a series billed.
pub const BILLED_MIN_USD: f64 = 0.005;
/// The first days of a series that show its cadence.
pub const CADENCE_DAYS: usize = 7;
/// Billed days among the first [`CADENCE_DAYS`] that make a series daily usage.
pub const DAILY_MIN_BILLED: usize = 3;
/// Monthly charges post on their day or up to this many days later.
pub const POSTING_GRACE_DAYS: i64 = 3;

/// Whether a day's amount is a charge (see [`BILLED_MIN_USD`]).
pub fn is_billed(amount_usd: f64) -> bool {
    amount_usd >= BILLED_MIN_USD
}

/// Whether the series `values` (index 0 = `first_day`, the first day of
/// the stored history), first billed at index `appeared`, is a new series.
pub fn is_new(values: &[f64], appeared: usize, first_day: NaiveDate, config: &CostConfig) -> bool {
    if appeared < config.min_history_days.max(1) {
        return false;
    }
    let cadence = &values[appeared..values.len().min(appeared + CADENCE_DAYS)];
    let billed = cadence.iter().filter(|&&v| is_billed(v)).count();
    if billed >= DAILY_MIN_BILLED {
        return true;
    }
    let appeared_on = first_day + Duration::days(appeared as i64);
    appeared_on
        .checked_sub_months(Months::new(1))
        .map(|month_before| month_before - Duration::days(POSTING_GRACE_DAYS))
        .is_some_and(|cycle_start| first_day <= cycle_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A series over `first..=last` billed `amount` on the given days.
    fn series(first: &str, last: &str, billed: impl Fn(NaiveDate) -> bool) -> Vec<f64> {
        let (first, last) = (day(first), day(last));
        (0..=(last - first).num_days())
            .map(|i| {
                if billed(first + Duration::days(i)) {
                    400.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn new_in(first: &str, values: &[f64]) -> bool {
        let appeared = values.iter().position(|&v| is_billed(v)).unwrap();
        is_new(values, appeared, day(first), &CostConfig::default())
    }

    #[test]
    fn a_monthly_charge_is_new_only_after_a_full_month_without_it() {
        use chrono::Datelike;
        for (first, new) in [
            ("2026-08-02", false),
            ("2026-08-20", false),
            ("2026-07-31", false),
            ("2026-07-29", true),
            ("2026-06-15", true),
        ] {
            let values = series(first, "2026-11-30", |d| {
                d.day() == 1 && d >= day("2026-09-01")
            });
            assert_eq!(new_in(first, &values), new, "history from {first}");
        }
        // A charge on the 17th (a subscription anniversary), history from the 20th.
        let values = series("2026-08-20", "2026-11-30", |d| d.day() == 17);
        assert!(!new_in("2026-08-20", &values));
    }

    #[test]
    fn daily_usage_is_new_after_min_history_days() {
        let values = series("2026-08-02", "2026-09-30", |d| d >= day("2026-08-20"));
        assert!(new_in("2026-08-02", &values));
        let values = series("2026-08-02", "2026-09-30", |d| d >= day("2026-08-10"));
        assert!(!new_in("2026-08-02", &values));
        // Billed once so far, on the last day: it may be a monthly charge.
        let values = series("2026-08-02", "2026-08-25", |d| d == day("2026-08-25"));
        assert!(!new_in("2026-08-02", &values));
    }

    #[test]
    fn residues_and_credits_are_not_billing() {
        assert!(!is_billed(-0.000_000_009_2));
        assert!(!is_billed(0.000_000_009_2));
        assert!(!is_billed(-120.0));
        assert!(is_billed(0.01));
    }
}
