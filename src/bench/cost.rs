//! `draco bench cost`: synthetic daily cost series with planted anomalies of
//! known type, day and dollar size, scored against the cost detector.
//!
//! Two sets. The single-event set ([`generate`]): series with weekly
//! seasonality, a trend, multiplicative noise and, for some, month-start
//! billing; a third carry one anomaly (a one-day spike, a lasting level
//! shift or a new service). The several-events set ([`multi`]): a year of
//! daily cost per series with several events each (spikes, shifts up and
//! down, ten-day ramps) and broadly varying noise, scored as `draco scan`
//! and, row by row, as `draco detect` on daily data
//! ([`crate::detect::cost::score_daily`]). The generators are seeded and
//! self-contained (SplitMix64 and Box–Muller: a benchmark's data must not
//! change with a dependency's version).

pub mod multi;

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use crate::detect::cost::{self, CostConfig};
use crate::domain::{AccountId, FindingKind};
use crate::sources::CostPoint;

/// SplitMix64: seeded, reproducible draws for the generators.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// An anomaly the generator put in, with its truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planted {
    pub account: AccountId,
    pub service: String,
    pub kind: FindingKind,
    pub start: NaiveDate,
    /// Dollars above normal over the anomaly (per day for shifts and new services).
    pub dollars: f64,
}

#[derive(Debug, Clone)]
pub struct Synthetic {
    pub points: Vec<CostPoint>,
    pub planted: Vec<Planted>,
    pub series: usize,
    pub days: usize,
}

/// `series` series of `days` days; about a third carry one planted anomaly.
pub fn generate(seed: u64, series: usize, days: usize) -> Synthetic {
    let mut rng = Rng(seed);
    let first = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date");
    let mut points = Vec::with_capacity(series * days);
    let mut planted = Vec::new();
    for s in 0..series {
        let account = AccountId::parse(&format!("{:012}", 100_000_000_000u64 + (s as u64 % 7)))
            .expect("12 digits");
        let service = format!("svc-{s:04}");
        let level = 10f64.powf(rng.range(0.7, 3.3)); // $5 to $2,000 a day
        let weekend = rng.range(0.6, 1.0);
        let trend = rng.range(-0.001, 0.002);
        let noise = rng.range(0.02, 0.08);
        let month_start = rng.unit() < 0.15;
        let roll = rng.unit();
        let anomaly_day = rng.range(60.0, days as f64 - 10.0) as usize;
        let (kind, factor) = if roll < 0.12 {
            (Some(FindingKind::CostSpike), rng.range(1.0, 4.0))
        } else if roll < 0.24 {
            (Some(FindingKind::CostLevelShift), rng.range(0.5, 2.0))
        } else if roll < 0.34 {
            (Some(FindingKind::CostNewService), 0.0)
        } else {
            (None, 0.0)
        };
        let mut excess_total = 0.0;
        for d in 0..days {
            let day = first + Duration::days(d as i64);
            if kind == Some(FindingKind::CostNewService) && d < anomaly_day {
                continue;
            }
            let mut base = level * (1.0 + trend * d as f64);
            if day.weekday().num_days_from_monday() >= 5 {
                base *= weekend;
            }
            let mut amount = base * (1.0 + noise * rng.normal()).max(0.0);
            if month_start && day.day() == 1 {
                amount += level * 8.0;
            }
            match kind {
                Some(FindingKind::CostSpike) if d == anomaly_day => {
                    let extra = (base * factor).max(60.0);
                    amount += extra;
                    excess_total = extra;
                }
                Some(FindingKind::CostLevelShift) if d >= anomaly_day => {
                    let extra = (base * factor).max(20.0);
                    amount += extra;
                    excess_total = extra;
                }
                Some(FindingKind::CostNewService) => excess_total = level,
                _ => {}
            }
            points.push(CostPoint {
                day,
                account: account.clone(),
                service: service.clone(),
                amount_usd: (amount * 10_000.0).round() / 10_000.0,
                estimated: false,
            });
        }
        if let Some(kind) = kind {
            planted.push(Planted {
                account,
                service,
                kind,
                start: first + Duration::days(anomaly_day as i64),
                dollars: excess_total,
            });
        }
    }
    Synthetic {
        points,
        planted,
        series,
        days,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeScore {
    pub kind: String,
    pub planted: usize,
    pub detected: usize,
    pub false_positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Days from the anomaly's start to its first flagged day, over detected ones.
    pub mean_days_to_detect: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostBenchReport {
    pub seed: u64,
    pub series: usize,
    pub days: usize,
    pub points: usize,
    pub by_type: Vec<TypeScore>,
    pub overall_f1: f64,
    /// Findings that match no planted anomaly, per 100 series-months.
    pub false_alarms_per_100_series_months: f64,
    /// The several-events set, when it was run too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub several_events: Option<MultiReport>,
}

/// `part / whole`, and 1 when there is nothing to get right (no finding, nothing planted).
fn ratio(part: usize, whole: usize) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64
    } else {
        1.0
    }
}

fn harmonic(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// Runs the detector over the synthetic data and matches findings to the truth:
/// same series, same type, first flagged day within 3 days after the start.
pub fn evaluate(data: &Synthetic, config: &CostConfig, seed: u64) -> CostBenchReport {
    let findings = cost::detect(&data.points, config);
    let start_of = |f: &crate::domain::Finding| -> Option<NaiveDate> {
        let field = if f.kind == FindingKind::CostNewService {
            "first_billed"
        } else {
            "start"
        };
        f.evidence
            .get(field)?
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    let mut matched_findings = vec![false; findings.len()];
    let mut stats: BTreeMap<FindingKind, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for p in &data.planted {
        let entry = stats.entry(p.kind).or_default();
        entry.0 += 1;
        let hit = findings.iter().enumerate().find(|(i, f)| {
            !matched_findings[*i]
                && f.kind == p.kind
                && f.account == p.account
                && f.resource == format!("service:{}", p.service)
                && start_of(f).is_some_and(|s| {
                    s >= p.start - Duration::days(1) && s <= p.start + Duration::days(3)
                })
        });
        if let Some((i, f)) = hit {
            matched_findings[i] = true;
            entry.1 += 1;
            if let Some(s) = start_of(f) {
                entry.2.push((s - p.start).num_days().max(0) as f64);
            }
        }
    }
    let mut by_type = Vec::new();
    let (mut all_tp, mut all_fp, mut all_planted) = (0, 0, 0);
    for kind in [
        FindingKind::CostSpike,
        FindingKind::CostLevelShift,
        FindingKind::CostNewService,
    ] {
        let (planted, detected, delays) = stats.remove(&kind).unwrap_or_default();
        let false_positives = findings
            .iter()
            .zip(&matched_findings)
            .filter(|(f, m)| f.kind == kind && !**m)
            .count();
        let precision = ratio(detected, detected + false_positives);
        let recall = ratio(detected, planted);
        all_tp += detected;
        all_fp += false_positives;
        all_planted += planted;
        by_type.push(TypeScore {
            kind: kind.to_string(),
            planted,
            detected,
            false_positives,
            precision,
            recall,
            f1: harmonic(precision, recall),
            mean_days_to_detect: (!delays.is_empty())
                .then(|| delays.iter().sum::<f64>() / delays.len() as f64),
        });
    }
    let precision = ratio(all_tp, all_tp + all_fp);
    let recall = ratio(all_tp, all_planted);
    let series_months = data.series as f64 * data.days as f64 / 30.0;
    CostBenchReport {
        seed,
        series: data.series,
        days: data.days,
        points: data.points.len(),
        by_type,
        overall_f1: harmonic(precision, recall),
        false_alarms_per_100_series_months: 100.0 * all_fp as f64 / series_months.max(1.0),
        several_events: None,
    }
}

/// One line of the several-events table: an event type, or a whole detector.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventScore {
    pub kind: String,
    pub planted: usize,
    pub detected: usize,
    pub recall: f64,
    /// Findings of the kind this type is reported as that match nothing.
    pub false_positives: usize,
    pub precision: f64,
    pub f1: f64,
    /// Days from the event's start to the first day of its finding, over detected ones.
    pub mean_days_to_detect: Option<f64>,
    pub max_days_to_detect: Option<i64>,
}

/// One detector on the several-events set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorScore {
    pub detector: String,
    /// Per event type; drops (`shift down`) count only as planted, and any
    /// finding they cause is a false alarm.
    pub by_type: Vec<EventScore>,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub false_alarms: usize,
    /// Findings that match no planted event, per 100 series-months.
    pub false_alarms_per_100_series_months: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiReport {
    pub seed: u64,
    pub series: usize,
    pub days: usize,
    pub points: usize,
    pub events: usize,
    /// `draco scan`'s cost detector: findings, each counted once at its start day.
    pub scan: DetectorScore,
    /// `draco detect` on daily data: runs of flagged rows (gaps up to three days
    /// bridged), each counted once at its first row.
    pub detect_daily: DetectorScore,
    /// The streaming detector on the same rows (what `draco detect` used
    /// for daily data before), flagged at its default threshold.
    pub detect_stream: DetectorScore,
}

/// The several-events tables, as `draco bench cost` prints them.
pub fn render_multi(r: &MultiReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Several events per series, seed {}: {} series × {} days ({} points, {} events)",
        r.seed, r.series, r.days, r.points, r.events
    );
    for d in [&r.scan, &r.detect_daily, &r.detect_stream] {
        let _ = writeln!(
            out,
            "{}: precision {:.3}, recall {:.3}, F1 {:.3}, false alarms {} ({:.2} per 100 series-months)",
            d.detector,
            d.precision,
            d.recall,
            d.f1,
            d.false_alarms,
            d.false_alarms_per_100_series_months
        );
        let _ = writeln!(
            out,
            "  {:<11} {:>8} {:>6} {:>7} {:>4} {:>10} {:>6} {:>15}",
            "EVENT", "PLANTED", "FOUND", "RECALL", "FP", "PRECISION", "F1", "DAYS TO DETECT"
        );
        for t in &d.by_type {
            let days = match (t.mean_days_to_detect, t.max_days_to_detect) {
                (Some(mean), Some(max)) => format!("{mean:.2} (max {max})"),
                _ => "-".to_owned(),
            };
            if t.kind == multi::EventKind::ShiftDown.as_str() {
                let _ = writeln!(
                    out,
                    "  {:<11} {:>8} {:>6} {:>7} {:>4} {:>10} {:>6} {:>15}",
                    t.kind, t.planted, "-", "-", "-", "-", "-", "(not a finding)"
                );
                continue;
            }
            let _ = writeln!(
                out,
                "  {:<11} {:>8} {:>6} {:>7.3} {:>4} {:>10.3} {:>6.3} {:>15}",
                t.kind, t.planted, t.detected, t.recall, t.false_positives, t.precision, t.f1, days
            );
        }
    }
    out
}

/// `draco detect`'s default `--threshold` for the streaming detector.
const STREAM_FLAG_SCORE: f64 = crate::detect::stream::DEFAULT_THRESHOLD;

/// The finding kind an event type is reported as.
fn reported_as(kind: multi::EventKind) -> Option<FindingKind> {
    match kind {
        multi::EventKind::Spike => Some(FindingKind::CostSpike),
        multi::EventKind::ShiftUp | multi::EventKind::Ramp => Some(FindingKind::CostLevelShift),
        multi::EventKind::ShiftDown => None,
    }
}

/// A detection: the series, its first day, and (for findings) its kind.
struct Detection {
    service: String,
    start: NaiveDate,
    kind: Option<FindingKind>,
}

/// Matches detections to events: same series, the detection's first day
/// from one day before the event to [`multi::EventKind::match_days`] after
/// it, and (where the detection has a kind) the kind the event is reported as.
fn score_detections(
    detector: &str,
    data: &multi::MultiSynthetic,
    detections: &[Detection],
) -> DetectorScore {
    let mut used = vec![false; detections.len()];
    let mut by_kind: BTreeMap<multi::EventKind, (usize, Vec<i64>)> = BTreeMap::new();
    for e in &data.events {
        let entry = by_kind.entry(e.kind).or_default();
        if !e.kind.is_anomaly() {
            continue;
        }
        let hit = detections.iter().enumerate().position(|(i, d)| {
            !used[i]
                && d.service == e.service
                && d.kind.is_none_or(|k| Some(k) == reported_as(e.kind))
                && d.start >= e.start - Duration::days(1)
                && d.start <= e.start + Duration::days(e.kind.match_days())
        });
        if let Some(i) = hit {
            used[i] = true;
            entry
                .1
                .push((detections[i].start - e.start).num_days().max(0));
        }
    }
    let false_of = |kind: Option<FindingKind>| {
        detections
            .iter()
            .zip(&used)
            .filter(|(d, u)| !**u && (kind.is_none() || d.kind == kind))
            .count()
    };
    let mut by_type = Vec::new();
    let (mut tp, mut planted) = (0, 0);
    for kind in multi::EventKind::ALL {
        let count = data.events.iter().filter(|e| e.kind == kind).count();
        let delays = by_kind.remove(&kind).map(|(_, d)| d).unwrap_or_default();
        let detected = delays.len();
        let (false_positives, precision, recall) = if kind.is_anomaly() {
            tp += detected;
            planted += count;
            // Precision per finding kind: spikes against spike findings,
            // shifts and ramps against level-shift findings.
            let reported =
                reported_as(kind).filter(|_| detections.iter().any(|d| d.kind.is_some()));
            let fp = false_of(reported);
            let kind_tp = detections
                .iter()
                .zip(&used)
                .filter(|(d, u)| **u && (reported.is_none() || d.kind == reported))
                .count();
            (fp, ratio(kind_tp, kind_tp + fp), ratio(detected, count))
        } else {
            (0, 1.0, 0.0)
        };
        by_type.push(EventScore {
            kind: kind.as_str().to_owned(),
            planted: count,
            detected,
            recall,
            false_positives,
            precision,
            f1: if kind.is_anomaly() {
                harmonic(precision, recall)
            } else {
                0.0
            },
            mean_days_to_detect: (!delays.is_empty())
                .then(|| delays.iter().sum::<i64>() as f64 / delays.len() as f64),
            max_days_to_detect: delays.iter().copied().max(),
        });
    }
    let false_alarms = false_of(None);
    let precision = ratio(tp, tp + false_alarms);
    let recall = ratio(tp, planted);
    let series_months = data.series as f64 * data.days as f64 / 30.0;
    DetectorScore {
        detector: detector.to_owned(),
        by_type,
        precision,
        recall,
        f1: harmonic(precision, recall),
        false_alarms,
        false_alarms_per_100_series_months: 100.0 * false_alarms as f64 / series_months.max(1.0),
    }
}

/// Scores the several-events set: the scan's detector over all series at
/// once, and [`cost::score_daily`] on each series alone.
pub fn evaluate_multi(data: &multi::MultiSynthetic, config: &CostConfig, seed: u64) -> MultiReport {
    let findings = cost::detect(&data.points, config);
    let scan: Vec<Detection> = findings
        .iter()
        .filter_map(|f| {
            let field = if f.kind == FindingKind::CostNewService {
                "first_billed"
            } else {
                "start"
            };
            let start = f.evidence.get(field)?.as_str()?;
            Some(Detection {
                service: f
                    .resource
                    .strip_prefix("service:")
                    .unwrap_or(&f.resource)
                    .to_owned(),
                start: NaiveDate::parse_from_str(start, "%Y-%m-%d").ok()?,
                kind: Some(f.kind),
            })
        })
        .collect();
    let mut by_series: BTreeMap<&str, Vec<(NaiveDate, f64)>> = BTreeMap::new();
    for p in &data.points {
        by_series
            .entry(p.service.as_str())
            .or_default()
            .push((p.day, p.amount_usd));
    }
    let mut daily = Vec::new();
    for (service, rows) in &by_series {
        let mut last_flag: Option<NaiveDate> = None;
        for s in cost::score_daily(rows, config) {
            if !s.anomalous {
                continue;
            }
            if last_flag.is_none_or(|l| (s.day - l).num_days() > 3) {
                daily.push(Detection {
                    service: (*service).to_owned(),
                    start: s.day,
                    kind: None,
                });
            }
            last_flag = Some(s.day);
        }
    }
    let stream_config = crate::detect::stream::StreamConfig::default();
    let mut stream = Vec::new();
    for (service, rows) in &by_series {
        let timestamps: Vec<chrono::NaiveDateTime> = rows
            .iter()
            .map(|(d, _)| d.and_time(chrono::NaiveTime::MIN))
            .collect();
        let values: Vec<f64> = rows.iter().map(|(_, v)| *v).collect();
        let scores = crate::detect::stream::score_at(&timestamps, &values, &stream_config);
        let mut last_flag: Option<NaiveDate> = None;
        for ((day, _), score) in rows.iter().zip(scores) {
            if score < STREAM_FLAG_SCORE {
                continue;
            }
            if last_flag.is_none_or(|l| (*day - l).num_days() > 3) {
                stream.push(Detection {
                    service: (*service).to_owned(),
                    start: *day,
                    kind: None,
                });
            }
            last_flag = Some(*day);
        }
    }
    MultiReport {
        seed,
        series: data.series,
        days: data.days,
        points: data.points.len(),
        events: data.events.len(),
        scan: score_detections("draco scan", data, &scan),
        detect_daily: score_detections("draco detect (daily)", data, &daily),
        detect_stream: score_detections("streaming detector (before)", data, &stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_per_seed() {
        let a = generate(7, 20, 120);
        let b = generate(7, 20, 120);
        let c = generate(8, 20, 120);
        assert_eq!(a.points, b.points);
        assert_eq!(a.planted, b.planted);
        assert_ne!(a.points, c.points);
    }

    #[test]
    fn a_detector_that_finds_nothing_has_zero_recall() {
        let data = generate(1, 40, 150);
        let silent = CostConfig {
            z_threshold: f64::INFINITY,
            new_service_min_daily_usd: f64::INFINITY,
            ..CostConfig::default()
        };
        let report = evaluate(&data, &silent, 1);
        assert!(
            report
                .by_type
                .iter()
                .all(|t| t.detected == 0 && t.false_positives == 0)
        );
        assert_eq!(report.overall_f1, 0.0);
    }
}
