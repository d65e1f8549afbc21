//! Turning a scored anomaly into a finding: kind, impact, confidence,
//! severity, and the evidence an on-call engineer reads.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::drill::{Contributor, Scored};
use super::model::{Anomaly, AnomalyState, median};
use super::series::{Level, Series};
use super::{CostConfig, Thresholds, rounded};
use crate::domain::{AccountId, Finding, FindingKind, Fingerprint, Severity};

/// Evidence accumulates over days; beyond this many, more days add nothing.
const CONFIDENCE_DAYS_CAP: f64 = 4.0;
/// Confidence of a one-day anomaly exactly at the z threshold is `1 - BASE`.
const CONFIDENCE_BASE: f64 = 0.4;
/// Every anomalous day may still be restated by Cost Explorer.
const ESTIMATED_PENALTY: f64 = 0.85;

/// How sure the detector is that this is a real change in spend, in [0, 1].
///
/// A monotone heuristic, not a probability: it grows with how far above the
/// threshold the typical anomalous day is, with the number of anomalous days
/// (up to four), with the history behind the expectation, and drops when
/// every day is still an estimate. One day exactly at the threshold with a
/// full window of history scores 0.6; twice the threshold, 0.84.
pub fn confidence(
    anomaly: &Anomaly,
    thresholds: &Thresholds,
    config: &CostConfig,
    series: &Series,
) -> f64 {
    let typical_z = median(anomaly.days.iter().map(|d| d.z).collect());
    let days = (anomaly.days.len() as f64).min(CONFIDENCE_DAYS_CAP);
    let strength = (typical_z / thresholds.z).max(0.0) * days.sqrt();
    let statistical = 1.0 - CONFIDENCE_BASE.powf(strength);
    let history = (anomaly.days[0].history_days as f64 / config.window_days.max(1) as f64).min(1.0);
    let estimated = if anomaly.days.iter().all(|d| series.is_estimated(d.day)) {
        ESTIMATED_PENALTY
    } else {
        1.0
    };
    let c = statistical * (0.5 + 0.5 * history) * estimated;
    rounded(c.clamp(0.0, 1.0), 2)
}

/// Severity of the impact one can expect: dollars weighted by confidence.
pub fn severity(impact_usd: f64, confidence: f64) -> Severity {
    Severity::for_monthly_cost(impact_usd * confidence)
}

pub fn series_resource(series: &Series) -> String {
    match series.level {
        Level::Service => format!("service:{}", series.name),
        Level::Tag => series.name.clone(),
        Level::AccountTotal => "account-total".to_owned(),
        Level::Organization => "organization-total".to_owned(),
    }
}

fn subject(series: &Series) -> String {
    match series.level {
        Level::Service => format!("{} in account {}", series.name, series.account),
        Level::Tag => format!(
            "Spend tagged {} in account {}",
            series.name.trim_start_matches("tag:"),
            series.account
        ),
        Level::AccountTotal => format!("Total spend of account {}", series.account),
        Level::Organization => "Total spend of all accounts".to_owned(),
    }
}

pub fn new_service(series: &Series, appeared: NaiveDate, last_day: NaiveDate) -> Option<Finding> {
    let since = &series.values[series.first_billed()?..];
    let mean_daily = since.iter().sum::<f64>() / since.len() as f64;
    let monthly = mean_daily * 30.0;
    let service = &series.name;
    let account = &series.account;
    Some(Finding {
        kind: FindingKind::CostNewService,
        severity: Severity::for_monthly_cost(monthly),
        title: format!(
            "New service {service} in account {account} since {appeared}: ${mean_daily:.2}/day"
        ),
        resource: series_resource(series),
        account: account.clone(),
        region: None,
        expected: Some(0.0),
        actual: Some(rounded(mean_daily, 2)),
        impact_usd_monthly: Some(rounded(monthly, 2)),
        evidence: json!({
            "series": { "account": account, "service": service },
            "first_billed": appeared,
            "last_day": last_day,
            "days_billed": since.len(),
            "total_usd": rounded(since.iter().sum(), 2),
            "mean_daily_usd": rounded(mean_daily, 2),
            "relative_change": None::<f64>,
            "confidence": 1.0,
        }),
        fingerprint: Fingerprint::of(&[
            FindingKind::CostNewService.as_str(),
            account.as_str(),
            service,
        ]),
    })
}

/// The drill-down of one anomaly, by dimension.
pub struct DrillDown {
    pub accounts: Vec<Contributor>,
    pub services: Vec<Contributor>,
    pub tags: Vec<Contributor>,
}

pub fn anomaly(
    scored: &Scored<'_>,
    anomaly: &Anomaly,
    config: &CostConfig,
    drill_down: DrillDown,
) -> Finding {
    let series = scored.series;
    // The organization total belongs to no account: the finding is filed
    // under the account that carried most of the excess.
    let account = drill_down
        .accounts
        .first()
        .and_then(|top| AccountId::parse(&top.name).ok())
        .filter(|_| series.owner().is_none())
        .unwrap_or_else(|| series.account.clone());
    let account = &account;
    let is_shift = anomaly.days.len() >= config.level_shift_min_days;
    let expected = anomaly.mean_expected();
    let actual = anomaly.mean_actual();
    let excess = anomaly.excess_usd();
    let relative = (expected > 0.0).then(|| (actual - expected) / expected);
    let confidence = confidence(anomaly, &scored.thresholds, config, series);
    let who = subject(series);
    let (kind, impact, title) = if is_shift {
        (
            FindingKind::CostLevelShift,
            (actual - expected) * 30.0,
            format!(
                "{who} shifted from ${expected:.2} to ${actual:.2} a day since {}",
                anomaly.start()
            ),
        )
    } else {
        (
            FindingKind::CostSpike,
            excess,
            format!(
                "{who} spiked on {}: ${actual:.2} against ${expected:.2} expected",
                anomaly.start()
            ),
        )
    };
    let days: Vec<Value> = anomaly
        .days
        .iter()
        .map(|d| {
            json!({
                "day": d.day,
                "actual_usd": rounded(d.actual, 2),
                "expected_usd": rounded(d.expected, 2),
                "z": rounded(d.z, 1),
                "estimated": series.is_estimated(d.day),
            })
        })
        .collect();
    Finding {
        kind,
        severity: severity(impact, confidence),
        title,
        resource: series_resource(series),
        account: account.clone(),
        region: None,
        expected: Some(rounded(expected, 2)),
        actual: Some(rounded(actual, 2)),
        impact_usd_monthly: Some(rounded(impact, 2)),
        evidence: json!({
            "series": { "account": series.owner(), "service": series.name },
            "start": anomaly.start(),
            "end": if anomaly.ongoing() { None } else { Some(anomaly.end()) },
            "ongoing": anomaly.ongoing(),
            "state": anomaly.state.as_str(),
            "rebaselined_from": match anomaly.state {
                AnomalyState::Rebaselined { from } => Some(from),
                _ => None,
            },
            "excess_usd": rounded(excess, 2),
            "relative_change": relative.map(|r| rounded(r, 3)),
            "confidence": confidence,
            "thresholds": {
                "z": scored.thresholds.z,
                "min_excess_usd": scored.thresholds.min_excess_usd,
                "min_relative_change": scored.thresholds.min_relative_change,
            },
            "drill_down": {
                "accounts": drill_down.accounts,
                "services": drill_down.services,
                "tags": drill_down.tags,
            },
            "days": days,
        }),
        // Kind is left out on purpose: a spike that lasts becomes a level
        // shift, and must stay the same finding.
        fingerprint: Fingerprint::of(&[
            "cost_anomaly",
            series.owner().map_or("organization", AccountId::as_str),
            &series.name,
            &anomaly.start().to_string(),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::cost::model::DayScore;
    use crate::domain::AccountId;

    fn anomaly_of(zs: &[f64], history_days: usize) -> Anomaly {
        let start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        Anomaly {
            days: zs
                .iter()
                .enumerate()
                .map(|(i, &z)| DayScore {
                    day: start + chrono::Duration::days(i as i64),
                    actual: 200.0,
                    expected: 100.0,
                    z,
                    scale: 10.0,
                    anomalous: true,
                    history_days,
                })
                .collect(),
            state: AnomalyState::Ended,
        }
    }

    fn ec2(estimated_from: Option<NaiveDate>) -> Series {
        Series {
            account: AccountId::parse("111111111111").unwrap(),
            name: "Amazon EC2".into(),
            level: Level::Service,
            values: vec![],
            estimated_from,
        }
    }

    #[test]
    fn confidence_grows_with_z_duration_and_history_and_drops_for_estimates() {
        let config = CostConfig::default();
        let t = Thresholds::of(&config);
        let c = |zs: &[f64], history: usize, est: Option<NaiveDate>| {
            confidence(&anomaly_of(zs, history), &t, &config, &ec2(est))
        };
        assert_eq!(c(&[6.0], 28, None), 0.6);
        assert_eq!(c(&[12.0], 28, None), 0.84);
        assert!(c(&[6.0, 6.0, 6.0], 28, None) > c(&[6.0], 28, None));
        assert!(c(&[6.0], 14, None) < c(&[6.0], 28, None));
        let estimated = NaiveDate::from_ymd_opt(2026, 3, 1);
        assert!(c(&[6.0], 28, estimated) < c(&[6.0], 28, None));
        assert!(c(&[60.0, 60.0, 60.0, 60.0, 60.0], 28, None) <= 1.0);
    }

    #[test]
    fn severity_weighs_impact_by_confidence() {
        assert_eq!(severity(1500.0, 1.0), Severity::High);
        assert_eq!(severity(1500.0, 0.6), Severity::Medium);
    }
}
