//! Series with several events each, as cost data looks over a year: the
//! set on which a lasting shift must not hide what follows it.
//!
//! Every series has its own level ($5 to $2,000 a day), weekly seasonality
//! (weekends at 50–100 %), a trend (−0.15 % to +0.2 % a day), multiplicative
//! noise from 1 % to 15 % (log-uniform), a month-start charge on a quarter
//! of them, and from its second month on a sequence of events 21 to 70 days
//! apart: one-day spikes, lasting shifts up (additive: a resource that runs
//! around the clock; or proportional to the series), lasting drops, and
//! ten-day ramps to a new level. One series in twenty is a monthly charge
//! alone (tax-like), billed from its first 1st of the month in the data.
//! Events are planted at least eight noise deviations and 30 % above the
//! level (the spike at least ten), so that a careful reader of the chart
//! would call each one; drops are planted too but are not anomalies (spend
//! going down pages nobody) and only test that the baseline follows them.
//! The data begins on a Friday the 9th, not on a 1st, so monthly charges
//! appear after the history starts.

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use super::Rng;
use crate::domain::AccountId;
use crate::sources::CostPoint;

/// What a planted event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// One day far above normal.
    Spike,
    /// A lasting step up.
    ShiftUp,
    /// A lasting step down: no finding expected.
    ShiftDown,
    /// Ten days of steady growth to a new, lasting level.
    Ramp,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Spike,
        EventKind::ShiftUp,
        EventKind::Ramp,
        EventKind::ShiftDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Spike => "spike",
            EventKind::ShiftUp => "shift up",
            EventKind::ShiftDown => "shift down",
            EventKind::Ramp => "ramp",
        }
    }

    /// Whether a detector should report it.
    pub fn is_anomaly(self) -> bool {
        self != EventKind::ShiftDown
    }

    /// Days after the start within which a finding must begin to match it.
    pub fn match_days(self) -> i64 {
        match self {
            EventKind::Ramp => RAMP_DAYS as i64,
            _ => 3,
        }
    }
}

/// Length of a ramp.
pub const RAMP_DAYS: usize = 10;

/// One planted event, with its truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub account: AccountId,
    pub service: String,
    pub kind: EventKind,
    pub start: NaiveDate,
    /// Dollars a day above (or, for a drop, below) the level before it.
    pub dollars: f64,
}

#[derive(Debug, Clone)]
pub struct MultiSynthetic {
    pub points: Vec<CostPoint>,
    pub events: Vec<Event>,
    pub series: usize,
    pub days: usize,
}

/// The first day of the data: a Friday, the 9th.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 9).expect("a valid date")
}

/// `series` series of `days` days (at least 90), seeded.
pub fn generate_multi(seed: u64, series: usize, days: usize) -> MultiSynthetic {
    // Another stream than the single-event set of the same seed.
    let mut rng = Rng(seed ^ 0x6D75_6C74_6900_0000);
    let first = first_day();
    let mut points = Vec::with_capacity(series * days);
    let mut events = Vec::new();
    for s in 0..series {
        let account = AccountId::parse(&format!("{:012}", 200_000_000_000u64 + (s as u64 % 7)))
            .expect("12 digits");
        let service = format!("svc-{s:04}");
        let level = 10f64.powf(rng.range(0.7, 3.3));
        if rng.unit() < 0.05 {
            // A monthly charge and nothing else.
            for d in 0..days {
                let day = first + Duration::days(d as i64);
                if day.day() == 1 {
                    let amount = level * 20.0 * (1.0 + 0.03 * rng.normal());
                    points.push(point(day, &account, &service, amount));
                }
            }
            continue;
        }
        let weekend = if rng.unit() < 0.3 {
            1.0
        } else {
            rng.range(0.5, 1.0)
        };
        let trend = rng.range(-0.0015, 0.002);
        let noise = (rng.range(0.01f64.ln(), 0.15f64.ln())).exp();
        let month_start = (rng.unit() < 0.25).then(|| level * rng.range(1.0, 10.0));

        // The events: kind, start day, relative size, and whether a shift is additive.
        let mut plan: Vec<(EventKind, usize, f64, bool)> = Vec::new();
        let mut t = 40 + (rng.unit() * 30.0) as usize;
        while t + 10 < days {
            let roll = rng.unit();
            let kind = if roll < 0.38 {
                EventKind::Spike
            } else if roll < 0.64 {
                EventKind::ShiftUp
            } else if roll < 0.86 {
                EventKind::Ramp
            } else {
                EventKind::ShiftDown
            };
            let size = match kind {
                EventKind::Spike => rng.range(1.0, 4.0).max(10.0 * noise),
                EventKind::ShiftDown => rng.range(0.3, 0.7),
                _ => rng.range(0.5, 2.0).max(8.0 * noise),
            };
            plan.push((kind, t, size, rng.unit() < 0.5));
            t += 21 + (rng.unit() * 50.0) as usize;
        }

        // Level multiplier and added dollars, changed by shifts, drops and ramps.
        let mut factor = 1.0;
        let mut added = 0.0;
        // (days left, dollars added per day) of a ramp in progress.
        let mut ramp: Option<(usize, f64)> = None;
        let mut next = 0;
        for d in 0..days {
            let day = first + Duration::days(d as i64);
            let trend_level = level * (1.0 + trend * d as f64);
            let weekly = if day.weekday().num_days_from_monday() >= 5 {
                weekend
            } else {
                1.0
            };
            let mut spike = 0.0;
            while next < plan.len() && plan[next].1 == d {
                let (kind, _, size, additive) = plan[next];
                next += 1;
                // The level on an ordinary weekday, before this event.
                let now = trend_level * factor + added;
                let dollars = match kind {
                    EventKind::Spike => {
                        let extra = (now * weekly * size).max(60.0);
                        spike = extra;
                        extra
                    }
                    EventKind::ShiftUp => {
                        let extra = (now * size).max(20.0);
                        if additive {
                            added += extra;
                        } else {
                            factor *= 1.0 + extra / (trend_level * factor).max(1e-9);
                        }
                        extra
                    }
                    EventKind::Ramp => {
                        let extra = (now * size).max(20.0);
                        ramp = Some((RAMP_DAYS, extra / RAMP_DAYS as f64));
                        extra
                    }
                    EventKind::ShiftDown => {
                        factor *= size;
                        added *= size;
                        now * (1.0 - size)
                    }
                };
                events.push(Event {
                    account: account.clone(),
                    service: service.clone(),
                    kind,
                    start: day,
                    dollars,
                });
            }
            if let Some((left, step)) = ramp {
                added += step;
                ramp = (left > 1).then_some((left - 1, step));
            }
            let base = (trend_level * factor) * weekly + added;
            let mut amount = base * (1.0 + noise * rng.normal()).max(0.0) + spike;
            if let Some(charge) = month_start.filter(|_| day.day() == 1) {
                amount += charge;
            }
            points.push(point(day, &account, &service, amount));
        }
    }
    MultiSynthetic {
        points,
        events,
        series,
        days,
    }
}

fn point(day: NaiveDate, account: &AccountId, service: &str, amount: f64) -> CostPoint {
    CostPoint {
        day,
        account: account.clone(),
        service: service.to_owned(),
        amount_usd: (amount * 10_000.0).round() / 10_000.0,
        estimated: false,
    }
}
