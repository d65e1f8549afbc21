//! Cost anomalies in daily spend per (account, service).
//!
//! The model is deliberately simple and robust: a trailing window of "clean"
//! history gives a median level and a median ratio per weekday (weekly
//! seasonality); the spread is the MAD of the residuals. A day is anomalous
//! when it is far above the expectation in z-score *and* in dollars *and* in
//! relative terms, so that neither noisy tiny series nor huge stable ones
//! page anyone. Anomalous days enter the history as their expectation, so a
//! persistent shift keeps being reported instead of becoming the new normal.
//!
//! Month-start charges (support plans, Savings Plans, RI fees) are scored
//! against earlier month starts as well; a day is flagged only if both models
//! agree that it is abnormal.
//!
//! The score of day *t* uses only days before *t* (online, no look-ahead).

use std::collections::{BTreeMap, VecDeque};

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{AccountId, Finding, FindingKind, Fingerprint, Severity};
use crate::sources::CostPoint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// Days of history the baseline is computed from.
    pub window_days: usize,
    /// Days of history a series needs before it is scored at all.
    pub min_history_days: usize,
    /// Robust z-score above which a day may be anomalous.
    pub z_threshold: f64,
    /// Minimum daily dollars above expectation for a day to count.
    pub min_excess_usd: f64,
    /// Minimum increase relative to expectation (0.3 = +30 %).
    pub min_relative_change: f64,
    /// A run of at least this many anomalous days is a level shift, shorter runs are spikes.
    pub level_shift_min_days: usize,
    /// Average daily spend a new service must reach to be reported.
    pub new_service_min_daily_usd: f64,
    /// Series never reported: service names (or `tag:key=value` series).
    pub ignore_services: Vec<String>,
    /// Accounts whose cost is never reported.
    pub ignore_accounts: Vec<String>,
    /// Planned work: anomalies starting inside a window are not reported.
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

/// A planned change during which cost anomalies are expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// First day, inclusive.
    pub start: NaiveDate,
    /// Last day, inclusive.
    pub end: NaiveDate,
    /// Accounts it applies to; empty means all.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Why (shown in `draco config check`).
    #[serde(default)]
    pub reason: Option<String>,
}

impl MaintenanceWindow {
    fn covers(&self, account: &AccountId, day: NaiveDate) -> bool {
        (self.start..=self.end).contains(&day)
            && (self.accounts.is_empty() || self.accounts.iter().any(|a| a == account.as_str()))
    }
}

impl CostConfig {
    fn suppressed(&self, account: &AccountId, service: &str, start: NaiveDate) -> bool {
        self.ignore_accounts.iter().any(|a| a == account.as_str())
            || self.ignore_services.iter().any(|s| s == service)
            || self
                .maintenance_windows
                .iter()
                .any(|w| w.covers(account, start))
    }
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            window_days: 28,
            min_history_days: 14,
            z_threshold: 6.0,
            min_excess_usd: 10.0,
            min_relative_change: 0.3,
            level_shift_min_days: 3,
            new_service_min_daily_usd: 5.0,
            ignore_services: Vec::new(),
            ignore_accounts: Vec::new(),
            maintenance_windows: Vec::new(),
        }
    }
}

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
            let anomalous = z >= config.z_threshold
                && excess >= config.min_excess_usd
                && excess >= config.min_relative_change * expected_used.max(0.0);
            scored = Some(DayScore {
                day,
                actual,
                expected: expected_used,
                z,
                anomalous,
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

fn median(mut values: Vec<f64>) -> f64 {
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

struct Series {
    values: Vec<f64>,
    estimated_from: Option<NaiveDate>,
}

/// Finds spikes, level shifts and new services across all series.
pub fn detect(points: &[CostPoint], config: &CostConfig) -> Vec<Finding> {
    let Some(first_day) = points.iter().map(|p| p.day).min() else {
        return Vec::new();
    };
    let last_day = points.iter().map(|p| p.day).max().unwrap_or(first_day);
    let len = (last_day - first_day).num_days() as usize + 1;

    // Cost Explorer omits services with no spend on a day: absent means zero.
    let mut series: BTreeMap<(AccountId, String), Series> = BTreeMap::new();
    for p in points {
        let s = series
            .entry((p.account.clone(), p.service.clone()))
            .or_insert_with(|| Series {
                values: vec![0.0; len],
                estimated_from: None,
            });
        s.values[(p.day - first_day).num_days() as usize] += p.amount_usd;
        if p.estimated {
            s.estimated_from = Some(s.estimated_from.map_or(p.day, |d| d.min(p.day)));
        }
    }

    let mut findings = Vec::new();
    for ((account, service), s) in &series {
        let Some(first_billed) = s.values.iter().position(|&v| v > 0.0) else {
            continue;
        };
        let appeared = first_day + Duration::days(first_billed as i64);
        // Billed only after the history already had `min_history_days`: it was
        // new when it appeared (a historical fact, like a closed spike).
        let is_new = first_billed >= config.min_history_days;
        if is_new && !config.suppressed(account, service, appeared) {
            let since = &s.values[first_billed..];
            let mean_daily = since.iter().sum::<f64>() / since.len() as f64;
            if mean_daily >= config.new_service_min_daily_usd {
                findings.push(new_service_finding(
                    account, service, appeared, last_day, mean_daily, since,
                ));
            }
        }
        let (_, anomalies) = score_series(appeared, &s.values[first_billed..], config);
        for anomaly in anomalies {
            if config.suppressed(account, service, anomaly.start()) {
                continue;
            }
            findings.push(anomaly_finding(
                account,
                service,
                &anomaly,
                config,
                s.estimated_from,
            ));
        }
    }
    findings
}

fn series_resource(service: &str) -> String {
    format!("service:{service}")
}

fn new_service_finding(
    account: &AccountId,
    service: &str,
    appeared: NaiveDate,
    last_day: NaiveDate,
    mean_daily: f64,
    since: &[f64],
) -> Finding {
    let monthly = mean_daily * 30.0;
    Finding {
        kind: FindingKind::CostNewService,
        severity: Severity::for_monthly_cost(monthly),
        title: format!(
            "New service {service} in account {account} since {appeared}: ${mean_daily:.2}/day"
        ),
        resource: series_resource(service),
        account: account.clone(),
        region: None,
        expected: Some(0.0),
        actual: Some(round_cents(mean_daily)),
        impact_usd_monthly: Some(round_cents(monthly)),
        evidence: json!({
            "series": { "account": account, "service": service },
            "first_billed": appeared,
            "last_day": last_day,
            "days_billed": since.len(),
            "total_usd": round_cents(since.iter().sum()),
            "mean_daily_usd": round_cents(mean_daily),
        }),
        fingerprint: Fingerprint::of(&[
            FindingKind::CostNewService.as_str(),
            account.as_str(),
            service,
        ]),
    }
}

fn anomaly_finding(
    account: &AccountId,
    service: &str,
    anomaly: &Anomaly,
    config: &CostConfig,
    estimated_from: Option<NaiveDate>,
) -> Finding {
    let is_shift = anomaly.days.len() >= config.level_shift_min_days;
    let expected = anomaly.mean_expected();
    let actual = anomaly.mean_actual();
    let excess = anomaly.excess_usd();
    let relative = if expected > 0.0 {
        (actual - expected) / expected
    } else {
        f64::INFINITY
    };
    let (kind, impact, title) = if is_shift {
        let monthly = (actual - expected) * 30.0;
        (
            FindingKind::CostLevelShift,
            monthly,
            format!(
                "{service} in account {account} shifted from ${expected:.2} to ${actual:.2} a day since {}",
                anomaly.start()
            ),
        )
    } else {
        (
            FindingKind::CostSpike,
            excess,
            format!(
                "{service} in account {account} spiked on {}: ${actual:.2} against ${expected:.2} expected",
                anomaly.start()
            ),
        )
    };
    let days: Vec<_> = anomaly
        .days
        .iter()
        .map(|d| {
            json!({
                "day": d.day,
                "actual_usd": round_cents(d.actual),
                "expected_usd": round_cents(d.expected),
                "z": (d.z * 10.0).round() / 10.0,
                "estimated": estimated_from.is_some_and(|e| d.day >= e),
            })
        })
        .collect();
    Finding {
        kind,
        severity: Severity::for_monthly_cost(impact),
        title,
        resource: series_resource(service),
        account: account.clone(),
        region: None,
        expected: Some(round_cents(expected)),
        actual: Some(round_cents(actual)),
        impact_usd_monthly: Some(round_cents(impact)),
        evidence: json!({
            "series": { "account": account, "service": service },
            "start": anomaly.start(),
            "end": if anomaly.ongoing { None } else { Some(anomaly.end()) },
            "ongoing": anomaly.ongoing,
            "excess_usd": round_cents(excess),
            "relative_change": if relative.is_finite() { Some((relative * 1000.0).round() / 1000.0) } else { None },
            "days": days,
        }),
        // Kind is left out on purpose: a spike that lasts becomes a level
        // shift, and must stay the same finding.
        fingerprint: Fingerprint::of(&[
            "cost_anomaly",
            account.as_str(),
            service,
            &anomaly.start().to_string(),
        ]),
    }
}

fn round_cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (scores, anomalies) = score_series(start, &weekly(120, start), &CostConfig::default());
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!(scores.len(), 120 - 14);
    }

    #[test]
    fn one_day_spike_is_a_closed_single_day_anomaly() {
        let start = day("2026-01-05");
        let mut values = weekly(90, start);
        values[60] = 400.0;
        let (_, anomalies) = score_series(start, &values, &CostConfig::default());
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
        let (_, anomalies) = score_series(start, &values, &CostConfig::default());
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
        let (_, anomalies) = score_series(start, &values, &CostConfig::default());
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    fn point(day: NaiveDate, amount: f64) -> CostPoint {
        CostPoint {
            day,
            account: AccountId::parse("123456789012").unwrap(),
            service: "Amazon EC2".into(),
            amount_usd: amount,
            estimated: false,
        }
    }

    fn spiky_points() -> Vec<CostPoint> {
        let start = day("2026-01-05");
        let mut values = weekly(90, start);
        values[60] = 400.0;
        values
            .iter()
            .enumerate()
            .map(|(i, v)| point(start + Duration::days(i as i64), *v))
            .collect()
    }

    #[test]
    fn suppression_rules_silence_what_they_name_and_nothing_else() {
        let points = spiky_points();
        assert_eq!(detect(&points, &CostConfig::default()).len(), 1);
        let ignored = CostConfig {
            ignore_services: vec!["Amazon EC2".into()],
            ..CostConfig::default()
        };
        assert!(detect(&points, &ignored).is_empty());
        let spike_day = day("2026-01-05") + Duration::days(60);
        let window = |accounts: Vec<String>| CostConfig {
            maintenance_windows: vec![MaintenanceWindow {
                start: spike_day,
                end: spike_day,
                accounts,
                reason: Some("instance migration".into()),
            }],
            ..CostConfig::default()
        };
        assert!(detect(&points, &window(vec![])).is_empty());
        assert!(detect(&points, &window(vec!["123456789012".into()])).is_empty());
        assert_eq!(
            detect(&points, &window(vec!["999999999999".into()])).len(),
            1
        );
    }

    #[test]
    fn small_dollar_jumps_are_ignored() {
        let start = day("2026-01-05");
        let mut values = vec![1.0; 60];
        values[40] = 5.0; // +400 % but only $4
        let (_, anomalies) = score_series(start, &values, &CostConfig::default());
        assert!(anomalies.is_empty());
    }
}
