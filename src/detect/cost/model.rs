//! The statistical model of one daily cost series.
//!
//! A trailing window of "clean" history gives a median level and a median
//! ratio per weekday (weekly seasonality); the spread is the MAD of the
//! residuals. A day is anomalous when it is far above the expectation in
//! z-score *and* in dollars *and* in relative terms, so that neither noisy
//! tiny series nor huge stable ones page anyone. Anomalous days enter the
//! history as their expectation, so a persistent shift keeps being reported
//! instead of becoming the new normal.
//!
//! Month-start charges (support plans, Savings Plans, RI fees) are scored
//! against earlier month starts as well; a day is flagged only if both models
//! agree that it is abnormal.
//!
//! The score of day *t* uses only days before *t* (online, no look-ahead),
//! and memory is bounded by the window, not by the history.

use std::collections::VecDeque;

use chrono::{Datelike, Duration, NaiveDate};

use super::{CostConfig, Thresholds};

/// Spread never drops below these, so flat series do not turn every cent into a z of 100.
const SCALE_FLOOR_RELATIVE: f64 = 0.05;
const SCALE_FLOOR_USD: f64 = 1.0;
/// Ordinary-looking days that end an established level shift.
const SHIFT_GAP_DAYS: usize = 3;
/// Normal-consistent MAD.
const MAD_TO_SIGMA: f64 = 1.4826;

/// One scored day of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayScore {
    pub day: NaiveDate,
    pub actual: f64,
    pub expected: f64,
    pub z: f64,
    pub anomalous: bool,
    /// Days of history the expectation rests on (at most the window).
    pub history_days: usize,
}

/// A run of consecutive anomalous days.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub days: Vec<DayScore>,
    /// Still anomalous on the last day of the data.
    pub ongoing: bool,
}

impl Anomaly {
    pub fn start(&self) -> NaiveDate {
        self.days[0].day
    }
    pub fn end(&self) -> NaiveDate {
        self.days[self.days.len() - 1].day
    }
    pub fn excess_usd(&self) -> f64 {
        self.days.iter().map(|d| d.actual - d.expected).sum()
    }
    pub fn mean_actual(&self) -> f64 {
        self.days.iter().map(|d| d.actual).sum::<f64>() / self.days.len() as f64
    }
    pub fn mean_expected(&self) -> f64 {
        self.days.iter().map(|d| d.expected).sum::<f64>() / self.days.len() as f64
    }
}

/// Scores a dense daily series (index 0 = `first_day`) and returns its anomalies.
pub fn score_series(
    first_day: NaiveDate,
    values: &[f64],
    config: &CostConfig,
    thresholds: &Thresholds,
) -> (Vec<DayScore>, Vec<Anomaly>) {
    let mut history: VecDeque<(u32, f64)> = VecDeque::with_capacity(config.window_days + 1);
    let mut month_starts: VecDeque<f64> = VecDeque::with_capacity(12);
    let mut scores = Vec::with_capacity(values.len());
    let mut anomalies = Vec::new();
    let mut run: Vec<DayScore> = Vec::new();
    let mut gap = 0usize;

    for (i, &actual) in values.iter().enumerate() {
        let day = first_day + Duration::days(i as i64);
        let weekday = day.weekday().num_days_from_monday();
        let is_month_start = day.day() == 1;

        let mut scored = None;
        if history.len() >= config.min_history_days {
            let (expected, scale) = weekly_expectation(&history, weekday);
            let mut z = (actual - expected) / scale;
            let mut expected_used = expected;
            if is_month_start && !month_starts.is_empty() {
                let (ms_expected, ms_scale) = month_start_expectation(&month_starts);
                let ms_z = (actual - ms_expected) / ms_scale;
                if ms_z < z {
                    z = ms_z;
                    expected_used = ms_expected;
                }
            }
            let excess = actual - expected_used;
            let anomalous = z >= thresholds.z
                && excess >= thresholds.min_excess_usd
                && excess >= thresholds.min_relative_change * expected_used.max(0.0);
            scored = Some(DayScore {
                day,
                actual,
                expected: expected_used,
                z,
                anomalous,
                history_days: history.len(),
            });
        }

        let anomalous = scored.is_some_and(|s| s.anomalous);
        // An established shift survives a few ordinary-looking days (a quiet
        // weekend, noise): those stay part of it instead of splitting it.
        let in_shift = run.len() >= config.level_shift_min_days;
        if scored.is_some() {
            gap = if anomalous || !in_shift { 0 } else { gap + 1 };
        }
        let holding = anomalous || (in_shift && gap > 0 && gap < SHIFT_GAP_DAYS);
        if is_month_start {
            month_starts.push_back(actual);
            if month_starts.len() > 12 {
                month_starts.pop_front();
            }
        } else {
            // Anomalous days enter the history as what was expected, so the
            // baseline does not drift towards the anomaly.
            let clean = match scored {
                Some(s) if holding => s.expected,
                _ => actual,
            };
            history.push_back((weekday, clean));
            if history.len() > config.window_days {
                history.pop_front();
            }
        }

        if let Some(s) = scored {
            scores.push(s);
            if anomalous {
                run.push(s);
            } else if !run.is_empty() && !holding {
                anomalies.push(Anomaly {
                    days: std::mem::take(&mut run),
                    ongoing: false,
                });
            }
        }
    }
    if !run.is_empty() {
        anomalies.push(Anomaly {
            days: run,
            ongoing: true,
        });
    }
    (scores, anomalies)
}

fn weekly_expectation(history: &VecDeque<(u32, f64)>, weekday: u32) -> (f64, f64) {
    let level = median(history.iter().map(|&(_, v)| v).collect());
    let factor = |w: u32| -> f64 {
        if level <= 0.0 {
            return 1.0;
        }
        let ratios: Vec<f64> = history
            .iter()
            .filter(|&&(d, _)| d == w)
            .map(|&(_, v)| v / level)
            .collect();
        if ratios.len() >= 2 {
            median(ratios)
        } else {
            1.0
        }
    };
    let factors: [f64; 7] = std::array::from_fn(|w| factor(w as u32));
    let residuals: Vec<f64> = history
        .iter()
        .map(|&(w, v)| v - level * factors[w as usize])
        .collect();
    let expected = level * factors[weekday as usize];
    // Seven weekday factors were fitted to these same residuals, which makes
    // them look tighter than the noise really is: correct for the lost degrees of freedom.
    let n = residuals.len() as f64;
    let fitted = factors.iter().filter(|f| **f != 1.0).count() as f64;
    let correction = if n > fitted + 1.0 {
        (n / (n - fitted)).sqrt()
    } else {
        1.0
    };
    (expected, correction * spread(residuals, expected))
}

fn month_start_expectation(month_starts: &VecDeque<f64>) -> (f64, f64) {
    let values: Vec<f64> = month_starts.iter().copied().collect();
    let expected = median(values.clone());
    let residuals = values.iter().map(|v| v - expected).collect();
    // Few samples: be twice as tolerant as for daily values.
    (expected, 2.0 * spread(residuals, expected))
}

fn spread(residuals: Vec<f64>, expected: f64) -> f64 {
    let center = median(residuals.clone());
    let mad = median(residuals.iter().map(|r| (r - center).abs()).collect());
    (MAD_TO_SIGMA * mad)
        .max(SCALE_FLOOR_RELATIVE * expected.abs())
        .max(SCALE_FLOOR_USD)
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(start: NaiveDate, values: &[f64]) -> (Vec<DayScore>, Vec<Anomaly>) {
        let config = CostConfig::default();
        score_series(start, values, &config, &Thresholds::of(&config))
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// Weekday 100, weekend 70, with a deterministic ±2 % wobble.
    fn weekly(n: usize, start: NaiveDate) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let d = start + Duration::days(i as i64);
                let base = if d.weekday().num_days_from_monday() >= 5 {
                    70.0
                } else {
                    100.0
                };
                base * (1.0 + 0.02 * ((i * 7 % 5) as f64 - 2.0) / 2.0)
            })
            .collect()
    }

    #[test]
    fn weekly_seasonality_alone_raises_nothing() {
        let start = day("2026-01-05");
        let (scores, anomalies) = score(start, &weekly(120, start));
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!(scores.len(), 120 - 14);
    }

    #[test]
    fn one_day_spike_is_a_closed_single_day_anomaly() {
        let start = day("2026-01-05");
        let mut values = weekly(90, start);
        values[60] = 400.0;
        let (_, anomalies) = score(start, &values);
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].start(), start + Duration::days(60));
        assert_eq!(anomalies[0].days.len(), 1);
        assert!(!anomalies[0].ongoing);
    }

    #[test]
    fn persistent_shift_stays_ongoing() {
        let start = day("2026-01-05");
        let mut values = weekly(90, start);
        for v in &mut values[70..] {
            *v *= 2.5;
        }
        let (_, anomalies) = score(start, &values);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].days.len(), 20);
        assert!(anomalies[0].ongoing);
    }

    #[test]
    fn month_start_billing_is_not_an_anomaly() {
        let start = day("2026-01-01");
        let values: Vec<f64> = (0..150)
            .map(|i| {
                let d = start + Duration::days(i);
                if d.day() == 1 { 900.0 } else { 0.0 }
            })
            .collect();
        let (_, anomalies) = score(start, &values);
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn small_dollar_jumps_are_ignored() {
        let start = day("2026-01-05");
        let mut values = vec![1.0; 60];
        values[40] = 5.0; // +400 % but only $4
        let (_, anomalies) = score(start, &values);
        assert!(anomalies.is_empty());
    }
}
