//! The cost chart of a finding: a series' daily cost, the band the model
//! took for normal, and the anomalous days marked, as a self-contained SVG
//! (no script, no external font or link), for pull requests and the
//! dashboard.

use chrono::NaiveDate;
use plotters::prelude::*;

use crate::detect::cost::{CostConfig, series_history};
use crate::domain::{Finding, FindingKind};
use crate::sources::CostPoint;

/// Width and height of the chart, in SVG user units (pixels).
pub const SIZE: (u32, u32) = (800, 300);

/// One day of the chart, in dollars a day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartDay {
    pub day: NaiveDate,
    pub actual_usd: f64,
    /// What the model expected, once it had enough history.
    pub expected_usd: Option<f64>,
    /// Half-width of the normal band around the expectation.
    pub band_usd: Option<f64>,
    pub anomalous: bool,
}

/// Days of stored cost history read to chart a finding: the model needs its
/// window of history before the first day shown.
pub const HISTORY_DAYS: i64 = 180;
/// Days shown: the last 90 (issue 12: "the last 90 days").
pub const SHOWN_DAYS: usize = 90;

/// Whether findings of `kind` have a cost chart.
pub fn has_chart(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::CostSpike | FindingKind::CostLevelShift | FindingKind::CostNewService
    )
}

/// The chart of a cost finding's series from `points` (at least
/// [`HISTORY_DAYS`] of them, for the series' model), re-scored with
/// `config`: the last [`SHOWN_DAYS`] days, the expected band at two
/// deviations (within them a day is noise: the model's own line for "back
/// to normal"), anomalous days marked. `title` must be publishable text.
///
/// `Ok(None)` when the finding is not a cost finding, names no series, or
/// the points no longer hold its series.
pub fn finding_chart(
    finding: &Finding,
    title: &str,
    points: &[CostPoint],
    config: &CostConfig,
) -> Result<Option<String>, ChartError> {
    if !has_chart(finding.kind) {
        return Ok(None);
    }
    let series = &finding.evidence["series"];
    let Some(service) = series["service"].as_str() else {
        return Ok(None);
    };
    let Some(history) = series_history(points, config, series["account"].as_str(), service) else {
        return Ok(None);
    };
    let shown: Vec<ChartDay> = history[history.len().saturating_sub(SHOWN_DAYS)..]
        .iter()
        .map(|d| ChartDay {
            day: d.day,
            actual_usd: d.actual_usd,
            expected_usd: d.expected_usd,
            band_usd: d.spread_usd.map(|s| 2.0 * s),
            anomalous: d.anomalous,
        })
        .collect();
    cost_chart(title, &shown).map(Some)
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to chart: no days")]
    Empty,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
}

/// Draws `days` (in order, one a day) under `title`, which is escaped as
/// SVG text; the caller passes only publishable text (redacted).
///
/// # Errors
/// [`ChartError::Empty`] for no days; [`ChartError::Draw`] if plotters fails.
pub fn cost_chart(title: &str, days: &[ChartDay]) -> Result<String, ChartError> {
    let (first, last) = match (days.first(), days.last()) {
        (Some(f), Some(l)) => (f.day, l.day),
        _ => return Err(ChartError::Empty),
    };
    let top = days
        .iter()
        .map(|d| {
            d.actual_usd
                .max(d.expected_usd.unwrap_or(0.0) + d.band_usd.unwrap_or(0.0))
        })
        .fold(0.0_f64, f64::max);
    let bottom = days.iter().map(|d| d.actual_usd).fold(0.0_f64, f64::min);
    let top = if top > bottom {
        top * 1.1
    } else {
        bottom + 1.0
    };
    let span = (last - first).num_days().max(1);
    let x = |day: NaiveDate| (day - first).num_days();
    let draw = |e: &dyn std::fmt::Display| ChartError::Draw(e.to_string());

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0i64..span, bottom..top)
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|i| {
                (first + chrono::Duration::days(*i))
                    .format("%b %d")
                    .to_string()
            })
            .y_desc("USD a day")
            .draw()
            .map_err(|e| draw(&e))?;
        let band: Vec<(i64, f64, f64)> = days
            .iter()
            .filter_map(|d| {
                let (e, b) = (d.expected_usd?, d.band_usd?);
                Some((x(d.day), (e - b).max(bottom), e + b))
            })
            .collect();
        if !band.is_empty() {
            let outline: Vec<(i64, f64)> = band
                .iter()
                .map(|&(i, _, hi)| (i, hi))
                .chain(band.iter().rev().map(|&(i, lo, _)| (i, lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    BLUE.mix(0.15).filled(),
                )))
                .map_err(|e| draw(&e))?
                .label("normal band");
            chart
                .draw_series(LineSeries::new(
                    days.iter()
                        .filter_map(|d| Some((x(d.day), d.expected_usd?))),
                    BLUE.mix(0.6).stroke_width(1),
                ))
                .map_err(|e| draw(&e))?
                .label("expected");
        }
        chart
            .draw_series(LineSeries::new(
                days.iter().map(|d| (x(d.day), d.actual_usd)),
                BLACK.stroke_width(2),
            ))
            .map_err(|e| draw(&e))?
            .label("actual");
        chart
            .draw_series(
                days.iter()
                    .filter(|d| d.anomalous)
                    .map(|d| Circle::new((x(d.day), d.actual_usd), 5, RED.filled())),
            )
            .map_err(|e| draw(&e))?
            .label("anomalous");
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: usize, spike_at: usize) -> Vec<ChartDay> {
        let first = NaiveDate::from_ymd_opt(2026, 9, 1).expect("date");
        (0..n)
            .map(|i| ChartDay {
                day: first + chrono::Duration::days(i as i64),
                actual_usd: if i == spike_at {
                    400.0
                } else {
                    100.0 + (i % 7) as f64
                },
                expected_usd: (i >= 14).then_some(103.0),
                band_usd: (i >= 14).then_some(8.0),
                anomalous: i == spike_at,
            })
            .collect()
    }

    #[test]
    fn a_chart_is_one_self_contained_svg_with_the_anomaly_marked() {
        let svg = cost_chart("EC2 in 123456789012", &days(90, 80)).expect("chart");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // One red marker, for the one anomalous day.
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(svg.contains("EC2 in 123456789012"));
        // Nothing fetched or run when it is shown.
        for banned in ["<script", "href=", "@import", "url("] {
            assert!(!svg.contains(banned), "{banned}");
        }
        assert_eq!(
            cost_chart("t", &days(90, 80)).expect("chart"),
            cost_chart("t", &days(90, 80)).expect("chart"),
            "deterministic"
        );
    }

    #[test]
    fn outside_text_in_the_title_stays_text() {
        let svg =
            cost_chart("tag:team=<script>alert(1)</script> & co", &days(30, 20)).expect("chart");
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }

    #[test]
    fn no_days_is_an_error() {
        assert!(matches!(cost_chart("t", &[]), Err(ChartError::Empty)));
    }
}
