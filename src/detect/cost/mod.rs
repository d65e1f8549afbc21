//! Cost anomalies in daily spend: per (account, service), per tag value,
//! and per account total.
//!
//! Each series is scored by [`model`] on its own. Service series are the
//! primary unit of alerting; a tag-value or account-total anomaly is reported
//! only when the service anomalies of the same account on the same days do
//! not already explain most of its excess, so one incident pages once. Every
//! reported anomaly carries a drill-down of the series that carried its
//! excess ([`drill`]), a confidence and a severity weighted by it ([`finding`]).

pub mod billing;
#[cfg(test)]
mod break_cases;
mod daily;
mod drill;
mod finding;
mod model;
mod series;
mod told;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use daily::{DAILY_FLAG_SCORE, DailyScore, score_daily};
pub use drill::Contributor;
pub use model::{
    Anomaly, AnomalyState, DayScore, REBASELINE_MAX_DAYS, REBASELINE_STEADY_DAYS, SeriesModel,
    score_series,
};
pub use series::ACCOUNT_TOTAL;

use crate::domain::{AccountId, Finding};
use crate::sources::CostPoint;
use drill::Scored;
use series::{Level, Table};
use told::{Remainder, Told};

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
    /// Thresholds for one account, one service (or tag series, or
    /// `(account total)`), or one service in one account.
    pub overrides: Vec<ThresholdOverride>,
}

/// Alert thresholds that differ from the global ones for some series.
/// The most specific match wins: account and service, then service, then account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdOverride {
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub z_threshold: Option<f64>,
    #[serde(default)]
    pub min_excess_usd: Option<f64>,
    #[serde(default)]
    pub min_relative_change: Option<f64>,
}

impl ThresholdOverride {
    /// How specifically this override names the series; `None` if it does not apply.
    fn specificity(&self, account: Option<&AccountId>, series: &str) -> Option<u8> {
        let account_matches = self
            .account
            .as_deref()
            .map(|a| account.is_some_and(|account| a == account.as_str()));
        let service_matches = self.service.as_deref().map(|s| s == series);
        match (account_matches, service_matches) {
            (Some(true), Some(true)) => Some(3),
            (None, Some(true)) => Some(2),
            (Some(true), None) => Some(1),
            _ => None,
        }
    }
}

/// The thresholds one series is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Robust z-score above which a day may be anomalous.
    pub z: f64,
    pub min_excess_usd: f64,
    pub min_relative_change: f64,
}

impl Thresholds {
    /// The global thresholds.
    pub fn of(config: &CostConfig) -> Self {
        Thresholds {
            z: config.z_threshold,
            min_excess_usd: config.min_excess_usd,
            min_relative_change: config.min_relative_change,
        }
    }
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
    /// `account` is `None` for the organization total: only windows for every account cover it.
    fn covers(&self, account: Option<&AccountId>, day: NaiveDate) -> bool {
        (self.start..=self.end).contains(&day)
            && (self.accounts.is_empty()
                || account
                    .is_some_and(|account| self.accounts.iter().any(|a| a == account.as_str())))
    }
}

impl CostConfig {
    /// The thresholds for one series: the most specific override, field by
    /// field falling back to the global value.
    /// `account` is `None` for the organization total, which no per-account rule names.
    pub fn thresholds_for(&self, account: Option<&AccountId>, series: &str) -> Thresholds {
        let global = Thresholds::of(self);
        let Some(o) = self
            .overrides
            .iter()
            .filter_map(|o| Some((o.specificity(account, series)?, o)))
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, o)| o)
        else {
            return global;
        };
        Thresholds {
            z: o.z_threshold.unwrap_or(global.z),
            min_excess_usd: o.min_excess_usd.unwrap_or(global.min_excess_usd),
            min_relative_change: o.min_relative_change.unwrap_or(global.min_relative_change),
        }
    }

    fn suppressed(&self, account: Option<&AccountId>, service: &str, start: NaiveDate) -> bool {
        account.is_some_and(|a| self.ignore_accounts.iter().any(|i| i == a.as_str()))
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
            overrides: Vec::new(),
        }
    }
}
/// `value` rounded to `places` decimals, for evidence people read.
fn rounded(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// One day of a series as the scan's model saw it (dollars a day), for
/// the finding's chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesDay {
    pub day: NaiveDate,
    pub actual_usd: f64,
    /// The model's expectation, once it had enough history.
    pub expected_usd: Option<f64>,
    /// The spread (one deviation) the day's z was measured in.
    pub spread_usd: Option<f64>,
    /// Part of an anomaly the scan reports.
    pub anomalous: bool,
}

fn table(points: &[CostPoint], config: &CostConfig) -> Option<Table> {
    Table::build(points, |account, service| {
        !config.ignore_services.iter().any(|s| s == service)
            && !config.ignore_accounts.iter().any(|a| a == account.as_str())
    })
}

/// The series a cost finding names (its evidence's `series`: `account`,
/// `None` for the organization total, and `service`, which is also
/// `(account total)` or `tag:KEY=VALUE`), scored as a scan scores it, from
/// its first billed day; `None` when `points` hold no such series.
pub fn series_history(
    points: &[CostPoint],
    config: &CostConfig,
    account: Option<&str>,
    service: &str,
) -> Option<Vec<SeriesDay>> {
    let table = table(points, config)?;
    let series = table
        .series
        .iter()
        .find(|s| s.name == service && s.owner().map(AccountId::as_str) == account)?;
    let appeared = series.first_billed()?;
    let thresholds = config.thresholds_for(series.owner(), &series.name);
    let (scores, anomalies) = score_series(
        table.day(appeared),
        &series.values[appeared..],
        config,
        &thresholds,
    );
    let anomalous: std::collections::HashSet<NaiveDate> = anomalies
        .iter()
        .flat_map(|a| a.days.iter().map(|d| d.day))
        .collect();
    let scored: std::collections::HashMap<NaiveDate, &model::DayScore> =
        scores.iter().map(|s| (s.day, s)).collect();
    Some(
        (appeared..series.values.len())
            .map(|i| {
                let day = table.day(i);
                let score = scored.get(&day);
                SeriesDay {
                    day,
                    actual_usd: series.values[i],
                    expected_usd: score.map(|s| s.expected),
                    spread_usd: score.map(|s| s.scale),
                    anomalous: anomalous.contains(&day),
                }
            })
            .collect(),
    )
}

/// Finds spikes, level shifts and new services across all series.
pub fn detect(points: &[CostPoint], config: &CostConfig) -> Vec<Finding> {
    let Some(table) = table(points, config) else {
        return Vec::new();
    };
    let scored: Vec<Scored> = table
        .series
        .iter()
        .filter_map(|series| {
            let appeared = series.first_billed()?;
            let thresholds = config.thresholds_for(series.owner(), &series.name);
            // New only if the history holds a full billing cycle before it
            // appeared (a historical fact, like a closed spike).
            let is_new = billing::is_new(&series.values, appeared, table.first_day, config);
            let (scores, anomalies) = score_series(
                table.day(appeared),
                &series.values[appeared..],
                config,
                &thresholds,
            );
            Some(Scored::new(
                series, thresholds, appeared, is_new, &scores, anomalies,
            ))
        })
        .collect();

    // What service findings already say, as (series, table days): aggregates
    // are weighed against it.
    let mut told: Vec<Told> = Vec::new();
    let mut findings = Vec::new();
    for s in scored
        .iter()
        .filter(|s| s.series.level == Level::Service && s.is_new)
    {
        let appeared = table.day(s.appeared);
        let mean_daily = {
            let since = &s.series.values[s.appeared..];
            since.iter().sum::<f64>() / since.len() as f64
        };
        if mean_daily >= config.new_service_min_daily_usd
            && !config.suppressed(s.series.owner(), &s.series.name, appeared)
        {
            findings.extend(finding::new_service(s.series, appeared, table.last_day));
            told.push(Told::new_service(s));
        }
    }

    // Service anomalies first: aggregates are weighed against what they already say.
    let levels = [
        Level::Service,
        Level::Tag,
        Level::AccountTotal,
        Level::Organization,
    ];
    for level in levels {
        for s in scored.iter().filter(|s| s.series.level == level) {
            // The aggregate without what its services reported, scored when needed.
            let mut remainder: Option<Remainder> = None;
            for anomaly in &s.anomalies {
                if config.suppressed(s.series.owner(), &s.series.name, anomaly.start()) {
                    continue;
                }
                let days: Vec<usize> = anomaly.days.iter().map(|d| table.index(d.day)).collect();
                let excess = anomaly.excess_usd();
                let drill = |of: Level| drill::contributors(&scored, s.series, of, &days, excess);
                let drill_down = finding::DrillDown {
                    accounts: match level {
                        Level::Organization => drill(Level::AccountTotal),
                        _ => Vec::new(),
                    },
                    services: match level {
                        Level::Service => Vec::new(),
                        _ => drill(Level::Service),
                    },
                    tags: match level {
                        Level::Tag => Vec::new(),
                        _ => drill(Level::Tag),
                    },
                };
                if level != Level::Service {
                    if told::is_told(&told, s, &days, &drill_down, excess) {
                        continue;
                    }
                    let (first, last) = (table.index(anomaly.start()), table.index(anomaly.end()));
                    if told::lingering(&told, s, first, last, config.window_days)
                        && !remainder
                            .get_or_insert_with(|| {
                                Remainder::of(&told, s, table.day(s.appeared), config)
                            })
                            .overlaps(first, last)
                    {
                        continue;
                    }
                }
                findings.push(finding::anomaly(s, anomaly, config, drill_down));
                if matches!(level, Level::Service | Level::AccountTotal) {
                    told.push(Told::anomaly(s, anomaly, days));
                }
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Duration};
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::FindingKind;

    pub(super) fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    pub(super) const START: &str = "2026-01-05";
    const ACCOUNT: &str = "123456789012";

    /// `base` on weekdays, 70 % of it at weekends, with a deterministic ±2 % wobble.
    pub(super) fn weekly(n: usize, base: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let d = day(START) + Duration::days(i as i64);
                let level = if d.weekday().num_days_from_monday() >= 5 {
                    0.7 * base
                } else {
                    base
                };
                level * (1.0 + 0.02 * ((i * 7 % 5) as f64 - 2.0) / 2.0)
            })
            .collect()
    }

    pub(super) fn points(service: &str, values: &[f64]) -> Vec<CostPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| CostPoint {
                day: day(START) + Duration::days(i as i64),
                account: AccountId::parse(ACCOUNT).unwrap(),
                service: service.into(),
                amount_usd: *v,
                estimated: false,
            })
            .collect()
    }

    fn spiky_points() -> Vec<CostPoint> {
        let mut values = weekly(90, 100.0);
        values[60] = 400.0;
        points("Amazon EC2", &values)
    }

    #[test]
    fn suppression_rules_silence_what_they_name_and_nothing_else() {
        let points = spiky_points();
        assert_eq!(detect(&points, &CostConfig::default()).len(), 1);
        let ignored = CostConfig {
            ignore_services: vec!["Amazon EC2".into()],
            ..CostConfig::default()
        };
        // Nor does the ignored service come back through the account total.
        assert!(detect(&points, &ignored).is_empty());
        let spike_day = day(START) + Duration::days(60);
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
        assert!(detect(&points, &window(vec![ACCOUNT.into()])).is_empty());
        assert_eq!(
            detect(&points, &window(vec!["999999999999".into()])).len(),
            1
        );
    }

    #[test]
    fn the_most_specific_threshold_override_wins() {
        let points = spiky_points();
        let with = |overrides: Vec<ThresholdOverride>| {
            detect(
                &points,
                &CostConfig {
                    overrides,
                    ..CostConfig::default()
                },
            )
        };
        let rule =
            |account: Option<&str>, service: Option<&str>, min_excess: f64| ThresholdOverride {
                account: account.map(str::to_owned),
                service: service.map(str::to_owned),
                z_threshold: None,
                min_excess_usd: Some(min_excess),
                min_relative_change: None,
            };
        // The spike is $300 above normal.
        assert!(with(vec![rule(None, Some("Amazon EC2"), 500.0)]).is_empty());
        assert!(with(vec![rule(Some(ACCOUNT), None, 500.0)]).is_empty());
        assert_eq!(with(vec![rule(None, Some("Amazon S3"), 500.0)]).len(), 1);
        let account_quiet_but_ec2_loud = vec![
            rule(Some(ACCOUNT), None, 500.0),
            rule(Some(ACCOUNT), Some("Amazon EC2"), 50.0),
        ];
        let found = with(account_quiet_but_ec2_loud);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["thresholds"]["min_excess_usd"], 50.0);
    }

    #[test]
    fn one_service_spike_pages_once_and_names_the_tag_that_carried_it() {
        let mut ec2 = weekly(90, 100.0);
        ec2[60] = 400.0;
        let mut team = weekly(90, 40.0);
        team[60] += 300.0;
        let mut all = points("Amazon EC2", &ec2);
        all.extend(points("Amazon S3", &weekly(90, 50.0)));
        all.extend(points("tag:team=ml", &team));
        all.extend(points("tag:team=(untagged)", &weekly(90, 110.0)));
        let found = detect(&all, &CostConfig::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.kind, FindingKind::CostSpike);
        assert_eq!(f.resource, "service:Amazon EC2");
        let tags = &f.evidence["drill_down"]["tags"];
        assert_eq!(tags[0]["name"], "team=ml");
        assert!(tags[0]["share"].as_f64().unwrap() > 0.9, "{tags}");
        let confidence = f.evidence["confidence"].as_f64().unwrap();
        assert!(confidence > 0.6 && confidence <= 1.0, "{confidence}");
        // $400 against about $100 expected.
        let relative = f.evidence["relative_change"].as_f64().unwrap();
        assert!((2.8..=3.2).contains(&relative), "{relative}");
    }

    #[test]
    fn small_increases_in_many_services_add_up_to_an_account_total_anomaly() {
        // Each service rises $8 a day for good: under the $10 minimum, so no
        // service pages; together they are $40 a day more.
        let services = ["EC2", "S3", "RDS", "Lambda", "CloudWatch"];
        let mut all = Vec::new();
        for service in services {
            let mut values = weekly(90, 20.0);
            for v in &mut values[70..] {
                *v += 8.0;
            }
            all.extend(points(service, &values));
        }
        let found = detect(&all, &CostConfig::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.kind, FindingKind::CostLevelShift);
        assert_eq!(f.resource, "account-total");
        assert_eq!(f.evidence["start"], json!(day(START) + Duration::days(70)));
        // Twenty days on, the new level held for a week long ago: it is the baseline now.
        assert_eq!(f.evidence["ongoing"], false);
        assert_eq!(f.evidence["state"], "rebaselined");
        let names: Vec<&str> = f.evidence["drill_down"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 5);
        for service in services {
            assert!(names.contains(&service), "{names:?}");
        }
    }

    #[test]
    fn small_increases_across_accounts_add_up_to_an_organization_anomaly() {
        // Each of three accounts spends $8–9 a day more from day 70 on,
        // spread over two $10-a-day services: under the $10 minimum for every
        // service and every account; $25 a day (+40 %) for the organization.
        let accounts = ["111111111111", "222222222222", "333333333333"];
        let mut all = Vec::new();
        for (i, account) in accounts.iter().enumerate() {
            for service in ["EC2", "S3"] {
                let mut values = weekly(90, 10.0);
                for v in &mut values[70..] {
                    *v += if i == 2 { 4.5 } else { 4.0 };
                }
                all.extend(points(service, &values).into_iter().map(|mut p| {
                    p.account = AccountId::parse(account).unwrap();
                    p
                }));
            }
        }
        let found = detect(&all, &CostConfig::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.resource, "organization-total");
        assert_eq!(f.kind, FindingKind::CostLevelShift);
        // Filed under the account that carried most of it.
        assert_eq!(f.account.as_str(), "333333333333");
        let drill = &f.evidence["drill_down"]["accounts"];
        let names: Vec<&str> = drill
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "333333333333");
        assert_eq!(names.len(), 3, "{drill}");
        assert_eq!(f.evidence["series"]["account"], Value::Null);
        // An organization-wide maintenance window silences it; one for a single account does not.
        let window = |accounts: Vec<String>| CostConfig {
            maintenance_windows: vec![MaintenanceWindow {
                start: day(START) + Duration::days(70),
                end: day(START) + Duration::days(70),
                accounts,
                reason: None,
            }],
            ..CostConfig::default()
        };
        assert!(detect(&all, &window(vec![])).is_empty());
        assert_eq!(detect(&all, &window(vec![accounts[0].into()])).len(), 1);
    }

    /// A ten-day ramp whose first day stood out on noise, and whose next
    /// days fell back to merely above normal before the ramp climbed past
    /// the threshold: one level shift from the ramp's first day, not a
    /// "spike" there and a shift a few days later.
    #[test]
    fn a_ramp_whose_first_day_stood_out_is_one_shift_from_that_day_and_no_spike() {
        let mut values = weekly(150, 100.0);
        for (i, v) in values[70..].iter_mut().enumerate() {
            *v += 8.0 * ((i + 1) as f64).min(10.0);
        }
        values[70] += 60.0;
        let found = detect(&points("Amazon EC2", &values), &CostConfig::default());
        assert!(
            found.iter().all(|f| f.kind != FindingKind::CostSpike),
            "{found:#?}"
        );
        let ramp_start = (day(START) + Duration::days(70)).to_string();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::CostLevelShift, "{found:#?}");
        assert_eq!(
            found[0].evidence["start"],
            ramp_start.as_str(),
            "{found:#?}"
        );
    }
}

#[cfg(test)]
mod billing_cycle_tests {
    use super::*;
    use crate::domain::FindingKind;

    /// Issue 10, item 3: `Tax` billed on the 1st of each month in a history
    /// that begins on the 2nd is not a new service; daily usage that starts
    /// later is.
    #[test]
    fn monthly_tax_is_not_new_in_a_history_that_starts_on_the_second() {
        let first = NaiveDate::from_ymd_opt(2026, 8, 2).unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let point = |day: NaiveDate, service: &str, amount: f64| CostPoint {
            day,
            account: account.clone(),
            service: service.into(),
            amount_usd: amount,
            estimated: false,
        };
        let mut points = Vec::new();
        for i in 0..121 {
            let day = first + chrono::Duration::days(i);
            points.push(point(day, "Amazon EC2", 200.0 + (i % 4) as f64));
            if chrono::Datelike::day(&day) == 1 {
                points.push(point(day, "Tax", 384.12 + i as f64 / 10.0));
            }
            if i >= 90 {
                points.push(point(day, "Amazon SageMaker", 85.0));
            }
        }
        let new: Vec<String> = detect(&points, &CostConfig::default())
            .into_iter()
            .filter(|f| f.kind == FindingKind::CostNewService)
            .map(|f| f.resource)
            .collect();
        assert_eq!(new, vec!["service:Amazon SageMaker".to_owned()]);
    }
}
