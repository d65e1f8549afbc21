//! What reported findings already say, and whether an aggregate anomaly
//! (tag value, account total, organization total) adds anything to it.
//!
//! An aggregate is scored by its own model, which lags behind the models of
//! its services: a service's level shift becomes that service's baseline
//! after a steady week, while a total that did not flag the shift at once
//! (it was small against the total, or came through `sustained` later)
//! still has the old level in its window. Weighing the total's anomaly
//! against the service's excess on the same days finds nothing then (the
//! service expects its new level), and the total pages again for a shift
//! already reported. So where a reported service shift's settled level, or
//! a reported new service, reaches into an aggregate anomaly, the aggregate
//! is scored once more without what the services reported (their excess on
//! their anomalous days, and a settled shift's dollars a day for a window's
//! length after it), and the anomaly is reported only if that series still
//! has one on its days. That takes out exactly what was reported, and lets
//! the aggregate's own model decide the rest: a genuine change of the total
//! spread over services too small to page stays in it and is found.

use chrono::NaiveDate;

use super::CostConfig;
use super::drill::{self, Scored};
use super::finding::DrillDown;
use super::model::{Anomaly, AnomalyState, score_series};
use super::series::Level;

/// Share of an aggregate anomaly's excess that reported service findings, or
/// one service alone, must carry for the aggregate to be left out.
const EXPLAINED_SHARE: f64 = 0.5;

/// One reported finding, as the aggregates above its series see it.
pub struct Told<'a> {
    pub scored: &'a Scored<'a>,
    /// Its days (table indices, sorted).
    pub days: Vec<usize>,
    /// A new service: all of its spend is what was reported.
    whole: bool,
    /// What it goes on adding to the aggregates above it after its days.
    after: After,
}

/// What a reported finding adds to aggregates after its last day.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    Nothing,
    /// A shift that became its series' baseline: its settled dollars a day.
    Settled(f64),
}

impl<'a> Told<'a> {
    /// A new service: every dollar of it, on every day from its first, is new.
    pub fn new_service(scored: &'a Scored<'a>) -> Self {
        Told {
            scored,
            days: (scored.appeared..scored.series.values.len()).collect(),
            whole: true,
            after: After::Nothing,
        }
    }

    /// A reported anomaly on table indices `days`.
    pub fn anomaly(scored: &'a Scored<'a>, anomaly: &Anomaly, days: Vec<usize>) -> Self {
        let after = match anomaly.state {
            AnomalyState::Rebaselined { .. } => {
                // The level it settled at: its last week (the top of a ramp).
                let settled = &anomaly.days[anomaly.days.len().saturating_sub(7)..];
                let usd =
                    super::model::median(settled.iter().map(|d| d.actual - d.expected).collect());
                if usd > 0.0 {
                    After::Settled(usd)
                } else {
                    After::Nothing
                }
            }
            _ => After::Nothing,
        };
        Told {
            scored,
            days,
            whole: false,
            after,
        }
    }

    fn same_account(&self, aggregate: &Scored) -> bool {
        aggregate.series.owner().is_none() || self.scored.series.owner() == aggregate.series.owner()
    }

    /// Dollars it adds to aggregates above it on table index `i`.
    fn adds_on(&self, i: usize, window_days: usize) -> f64 {
        if self.days.binary_search(&i).is_ok() {
            return if self.whole {
                self.scored.series.values[i]
            } else {
                self.scored.excess_on(&[i]).max(0.0)
            };
        }
        match (self.after, self.days.last()) {
            (After::Settled(usd), Some(&last)) if i > last && i <= last + window_days => usd,
            _ => 0.0,
        }
    }

    /// Whether it adds to aggregates beyond its own days somewhere in `first..=last`
    /// (a settled shift, or a new service past its model's warm-up).
    fn lingers_in(&self, first: usize, last: usize, window_days: usize) -> bool {
        let Some((&from, &to)) = self.days.first().zip(self.days.last()) else {
            return false;
        };
        if self.whole {
            return from <= last;
        }
        matches!(self.after, After::Settled(_)) && to < last && to + window_days >= first
    }
}

/// Whether an aggregate anomaly adds nothing to what is already reported:
/// the findings below it carry most of its excess, or one service or one
/// account alone does (then that series' own thresholds, overrides and
/// ignore rules decide, and an aggregate must not page for what they chose
/// to silence).
pub fn is_told(
    told: &[Told],
    aggregate: &Scored,
    days: &[usize],
    drill_down: &DrillDown,
    excess: f64,
) -> bool {
    let carried_by_one = |list: &[drill::Contributor]| {
        list.first()
            .is_some_and(|top| top.excess_usd >= EXPLAINED_SHARE * excess)
    };
    carried_by_one(&drill_down.services)
        || carried_by_one(&drill_down.accounts)
        || explained_by(told, aggregate, days) >= EXPLAINED_SHARE * excess
}

/// Excess on `days` that reported findings of the same account (of any
/// account, for the organization total) carry.
fn explained_by(told: &[Told], aggregate: &Scored, days: &[usize]) -> f64 {
    told.iter()
        .filter(|t| t.same_account(aggregate))
        .map(|t| {
            let shared: Vec<usize> = t
                .days
                .iter()
                .copied()
                .filter(|i| days.binary_search(i).is_ok())
                .collect();
            t.scored.excess_on(&shared)
        })
        .sum()
}

/// The aggregate scored without what reported service findings of its
/// account add to it, as (first, last) table indices of its anomalies.
pub struct Remainder(Vec<(usize, usize)>);

impl Remainder {
    pub fn of(
        told: &[Told],
        aggregate: &Scored,
        first_day: NaiveDate,
        config: &CostConfig,
    ) -> Self {
        let services: Vec<&Told> = told
            .iter()
            .filter(|t| t.scored.series.level == Level::Service && t.same_account(aggregate))
            .collect();
        let from = aggregate.appeared;
        let values: Vec<f64> = (from..aggregate.series.values.len())
            .map(|i| {
                aggregate.series.values[i]
                    - services
                        .iter()
                        .map(|t| t.adds_on(i, config.window_days))
                        .sum::<f64>()
            })
            .collect();
        let (_, anomalies) = score_series(first_day, &values, config, &aggregate.thresholds);
        Remainder(
            anomalies
                .iter()
                .map(|a| {
                    let index = |d: NaiveDate| from + (d - first_day).num_days() as usize;
                    (index(a.start()), index(a.end()))
                })
                .collect(),
        )
    }

    /// Whether the remainder is anomalous anywhere in `first..=last`.
    pub fn overlaps(&self, first: usize, last: usize) -> bool {
        self.0.iter().any(|&(s, e)| s <= last && e >= first)
    }
}

/// Whether a reported service of the aggregate's account adds to it beyond
/// its own days within `first..=last`: only then can the aggregate's model
/// be lagging behind what was reported.
pub fn lingering(
    told: &[Told],
    aggregate: &Scored,
    first: usize,
    last: usize,
    window_days: usize,
) -> bool {
    told.iter().any(|t| {
        t.scored.series.level == Level::Service
            && t.same_account(aggregate)
            && t.lingers_in(first, last, window_days)
    })
}
