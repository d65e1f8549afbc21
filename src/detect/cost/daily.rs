//! Row-by-row scores for one daily series, for `draco detect` on data with
//! a one-day interval: the scan's cost model ([`super::model`]) instead of
//! the streaming detector, which is built for minute-level metrics and
//! knows neither weekdays nor month starts.
//!
//! Online: the score of a row uses only the rows before it.

use chrono::NaiveDate;

use super::model::SeriesModel;
use super::{CostConfig, Thresholds};

/// Rows flagged anomalous score at least this; rows not flagged score below it.
pub const DAILY_FLAG_SCORE: f64 = 0.5;

/// The score of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyScore {
    pub day: NaiveDate,
    pub value: f64,
    /// What the model expected; `None` while it has less than
    /// `min_history_days` of history.
    pub expected: Option<f64>,
    /// In [0, 1]: `1 - 2^(-z / z_threshold)` for a day above its expectation
    /// (0.5 at the z threshold, 0.75 at twice it), 0 for a day at or below it
    /// or without history; below [`DAILY_FLAG_SCORE`] whenever the dollar or
    /// relative minimum is not met.
    pub score: f64,
    /// The cost model's decision: far above expectation in z, in dollars and
    /// in relative terms (the thresholds of `config`, amounts in dollars).
    pub anomalous: bool,
}

/// Scores `days` in the order given (one row per day is expected; repeated
/// or backward days are scored as they come, their weekday and day of month
/// taken from the date). A lasting shift is re-baselined as in the scan,
/// so later anomalies in the same series are flagged on their own.
pub fn score_daily(days: &[(NaiveDate, f64)], config: &CostConfig) -> Vec<DailyScore> {
    let thresholds = Thresholds::of(config);
    let mut model = SeriesModel::new(config, thresholds);
    days.iter()
        .map(|&(day, value)| {
            let value_or_zero = if value.is_finite() { value } else { 0.0 };
            match model.push(day, value_or_zero) {
                Some(s) => {
                    let raw = if s.z > 0.0 && thresholds.z > 0.0 {
                        1.0 - (-s.z / thresholds.z).exp2()
                    } else {
                        0.0
                    };
                    let score = if s.anomalous {
                        raw.max(DAILY_FLAG_SCORE)
                    } else {
                        raw.min(DAILY_FLAG_SCORE - 0.001)
                    };
                    DailyScore {
                        day,
                        value,
                        expected: Some(s.expected),
                        score: score.clamp(0.0, 1.0),
                        anomalous: s.anomalous,
                    }
                }
                None => DailyScore {
                    day,
                    value,
                    expected: None,
                    score: 0.0,
                    anomalous: false,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_spike_scores_high_and_ordinary_days_low_without_look_ahead() {
        let start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let mut days: Vec<(NaiveDate, f64)> = (0..60)
            .map(|i| (start + Duration::days(i), 100.0 + (i % 3) as f64))
            .collect();
        days[45].1 = 400.0;
        let scores = score_daily(&days, &CostConfig::default());
        assert_eq!(scores.len(), days.len());
        assert!(scores[..14].iter().all(|s| s.expected.is_none()));
        let flagged: Vec<usize> = (0..60).filter(|&i| scores[i].anomalous).collect();
        assert_eq!(flagged, vec![45]);
        assert!(scores[45].score >= DAILY_FLAG_SCORE && scores[45].score <= 1.0);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(&s.score)));
        assert!(
            scores
                .iter()
                .enumerate()
                .all(|(i, s)| i == 45 || s.score < DAILY_FLAG_SCORE)
        );
        // No look-ahead: the first 46 scores do not change with what follows.
        let prefix = score_daily(&days[..46], &CostConfig::default());
        assert_eq!(prefix[..], scores[..46]);
    }
}
