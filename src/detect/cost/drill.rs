//! Root cause: which services or tag values carried an anomaly's excess.
//!
//! Every scored series keeps what its model expected on each day, so the
//! excess of any series over any set of days is `actual - expected` summed.
//! An anomaly in one series is explained by the series of the other
//! partitions of the same account (services, tag values) that had the
//! largest excess on the same days.

use serde::Serialize;

use super::model::{Anomaly, DayScore};
use super::series::{Level, Series};
use super::{Thresholds, rounded};

/// How many contributors a finding lists per dimension.
const MAX_CONTRIBUTORS: usize = 5;

/// A series after scoring, with its model's expectation for each day.
pub struct Scored<'a> {
    pub series: &'a Series,
    pub thresholds: Thresholds,
    pub anomalies: Vec<Anomaly>,
    /// Table index of the first billed day.
    pub appeared: usize,
    /// Billed for the first time once the data already had a history: all of its spend is new.
    pub is_new: bool,
    /// Per table index: the model's expectation, where it had one.
    expected: Vec<Option<f64>>,
}

impl<'a> Scored<'a> {
    pub fn new(
        series: &'a Series,
        thresholds: Thresholds,
        appeared: usize,
        is_new: bool,
        scores: &[DayScore],
        anomalies: Vec<Anomaly>,
    ) -> Self {
        let mut expected = vec![None; series.values.len()];
        // Scores start at `appeared + warm-up` and are consecutive from there.
        let offset = series.values.len() - scores.len();
        for (slot, score) in expected[offset..].iter_mut().zip(scores) {
            *slot = Some(score.expected);
        }
        Scored {
            series,
            thresholds,
            anomalies,
            appeared,
            is_new,
            expected,
        }
    }

    /// Dollars above expectation on the given table indices. Days the model
    /// had no opinion on count as normal, except for a new series, whose
    /// every dollar is new.
    pub fn excess_on(&self, days: &[usize]) -> f64 {
        days.iter()
            .filter_map(|&i| {
                let actual = *self.series.values.get(i)?;
                let expected = match self.expected[i] {
                    Some(e) => e,
                    None if self.is_new && i >= self.appeared => 0.0,
                    None => actual,
                };
                Some(actual - expected)
            })
            .sum()
    }
}

/// One series' part in an anomaly's excess.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributor {
    pub dimension: &'static str,
    pub name: String,
    pub excess_usd: f64,
    /// Fraction of the anomaly's excess (other series may have fallen, so
    /// shares can add up to more than 1).
    pub share: f64,
}

/// The series of `level` in the same account (in any account, for the
/// organization total) that carried most of the excess on `days`.
pub fn contributors(
    all: &[Scored<'_>],
    of: &Series,
    level: Level,
    days: &[usize],
    total_excess: f64,
) -> Vec<Contributor> {
    let mut found: Vec<Contributor> = all
        .iter()
        .filter(|s| s.series.level == level && s.series.name != of.name)
        .filter(|s| of.owner().is_none() || s.series.owner() == of.owner())
        .filter_map(|s| {
            let excess = s.excess_on(days);
            (excess > 0.005).then(|| Contributor {
                dimension: level.dimension(),
                name: display_name(s.series, of),
                excess_usd: rounded(excess, 2),
                share: if total_excess > 0.0 {
                    rounded(excess / total_excess, 3)
                } else {
                    0.0
                },
            })
        })
        .collect();
    found.sort_by(|a, b| b.excess_usd.total_cmp(&a.excess_usd));
    found.truncate(MAX_CONTRIBUTORS);
    found
}

/// How a contributor is named in a drill-down: tags without their prefix,
/// account totals by their account, and, across accounts, with the account.
fn display_name(series: &Series, of: &Series) -> String {
    let name = series.name.strip_prefix("tag:").unwrap_or(&series.name);
    match (series.level, of.owner()) {
        (Level::AccountTotal, _) => series.account.to_string(),
        (_, None) => format!("{name} ({})", series.account),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::detect::cost::CostConfig;
    use crate::domain::AccountId;

    fn series(name: &str, values: Vec<f64>) -> Series {
        Series {
            account: AccountId::parse("111111111111").unwrap(),
            name: name.into(),
            level: Level::of(name),
            values,
            estimated_from: None,
        }
    }

    fn flat_scores(expected: f64, n: usize) -> Vec<DayScore> {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        (0..n)
            .map(|_| DayScore {
                day,
                actual: expected,
                expected,
                z: 0.0,
                scale: 1.0,
                anomalous: false,
                history_days: 28,
            })
            .collect()
    }

    #[test]
    fn contributors_rank_by_excess_and_skip_the_series_itself_and_other_levels() {
        let thresholds = Thresholds::of(&CostConfig::default());
        let total = series("(account total)", vec![30.0, 30.0, 90.0]);
        let ec2 = series("Amazon EC2", vec![10.0, 10.0, 60.0]);
        let s3 = series("Amazon S3", vec![10.0, 10.0, 15.0]);
        let rds = series("Amazon RDS", vec![10.0, 10.0, 5.0]);
        let team = series("tag:team=ml", vec![0.0, 0.0, 50.0]);
        let scored: Vec<Scored> = [&total, &ec2, &s3, &rds, &team]
            .into_iter()
            .map(|s| {
                let is_new = s.level == Level::Tag;
                let appeared = s.first_billed().unwrap();
                let scores = if is_new { vec![] } else { flat_scores(10.0, 3) };
                Scored::new(s, thresholds, appeared, is_new, &scores, vec![])
            })
            .collect();
        let services = contributors(&scored, &total, Level::Service, &[2], 60.0);
        assert_eq!(
            services
                .iter()
                .map(|c| (c.name.as_str(), c.excess_usd))
                .collect::<Vec<_>>(),
            vec![("Amazon EC2", 50.0), ("Amazon S3", 5.0)]
        );
        assert_eq!(services[0].share, 0.833);
        let tags = contributors(&scored, &total, Level::Tag, &[2], 60.0);
        assert_eq!(tags.len(), 1);
        assert_eq!(
            (tags[0].name.as_str(), tags[0].excess_usd),
            ("team=ml", 50.0)
        );
    }
}
