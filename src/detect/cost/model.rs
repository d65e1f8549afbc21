//! The statistical model of one daily cost series.
//!
//! A trailing window of "clean" history gives a median level and a median
//! ratio per weekday (weekly seasonality); the spread is the MAD of the
//! residuals. A day is anomalous when it is far above the expectation in
//! z-score *and* in dollars *and* in relative terms, so that neither noisy
//! tiny series nor huge stable ones page anyone. Anomalous days enter the
//! history as their expectation, so the baseline does not drift towards an
//! anomaly while it is being judged.
//!
//! **Re-baselining.** A lasting shift must not stay "the anomaly" for good,
//! or every later spike, shift and ramp in the series is hidden inside it.
//! Once an established shift (at least `level_shift_min_days` anomalous
//! days) has held steady for [`REBASELINE_STEADY_DAYS`] days — a full week,
//! so every weekday is seen at the new level — the history is moved to the
//! new level (additively or multiplicatively, whichever fits that week
//! better; the week itself enters as observed), the anomaly ends with
//! [`AnomalyState::Rebaselined`], and later days are judged against the new
//! level. "Steady" means the week shows no trend beyond the noise; a ramp
//! is therefore followed to its plateau first. Whatever the shape, the
//! baseline moves at the latest [`REBASELINE_MAX_DAYS`] days after the
//! anomaly began. A lasting *drop* (a week well below expectation) moves the
//! baseline down the same way, without a finding: spend going down is not an
//! anomaly, but the next increase must be measured from the new level.
//!
//! **Onsets.** A short anomaly (fewer than `level_shift_min_days` days)
//! that ended is held back for up to [`ONSET_WAIT_DAYS`] days before it is
//! reported. If a new anomaly begins in that time, and every day between
//! stayed above its expectation with, on average, at least a quarter of the
//! short anomaly's excess, the short one was the noisy first day of a ramp
//! or shift: it becomes the start of the new anomaly (one level shift from
//! its day) instead of a "spike" and a later shift. A spike followed by days
//! back at the baseline stays a spike, even when a shift follows it.
//!
//! Month-start charges (support plans, Savings Plans, RI fees) are scored
//! against earlier month starts as well; a day is flagged only if both models
//! agree that it is abnormal.
//!
//! **Negative amounts** (credits, refunds) are values like any other: they
//! lower a day, and only a day *above* its expectation that is itself a
//! charge (at least half a cent net) can be anomalous, so a credit or refund
//! never raises an anomaly by itself, nor does a day that credits cover; a
//! tiny residue such as `-0.0000000092` is noise under the one-dollar spread
//! floor. When credits stop, the net spend rises and that rise is judged
//! like any other (a credit that ran for more than a week has become the
//! baseline by then, see above).
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
/// Days a new level must hold steady before it becomes the baseline: one
/// week, so that every weekday has been seen at the new level.
pub const REBASELINE_STEADY_DAYS: usize = 7;
/// The baseline moves to the new level at the latest this many days after
/// an anomaly began, steady or not (three weeks: a ten-day ramp and its
/// steady week fit inside).
pub const REBASELINE_MAX_DAYS: usize = 21;
/// A week is steady when its trend, over the week, stays within this many
/// spreads of the old model...
const STEADY_TREND_SCALES: f64 = 2.5;
/// ...or within this share of the shift itself.
const STEADY_TREND_SHARE: f64 = 0.25;
/// Quiet days that together may show a slow rise (see `SeriesModel::sustained`).
const SUSTAINED_DAYS: usize = 5;
/// In a steady week, a weekday further than this many spreads from the fit
/// shows a new weekly pattern, and the older history is corrected for it.
/// One day is all the evidence for its weekday, and the spread is taken
/// from seven days (uncertain by about a third): at 3, one noisy day set its
/// weekday's expectation for weeks, and the next ordinary day on that
/// weekday was a "spike".
const WEEKDAY_OFF_SCALES: f64 = 5.0;
/// A day still this share of the z threshold above its expectation (2
/// deviations at the default 6) right after an anomalous day is not back to
/// normal: it continues the anomaly (see `SeriesModel::push`). Below 2
/// deviations a day is within the noise.
const HOLD_Z_SHARE: f64 = 1.0 / 3.0;
/// ...if it also carries at least this share of the anomaly's excess: a
/// day merely noisy-high after a large spike is the baseline again.
const PERSIST_LEVEL_SHARE: f64 = 0.25;
/// A short anomaly that ended is held back this many days (scored days
/// after its last one) before it is reported: a new anomaly beginning in
/// that time may show it was that anomaly's onset (see `joins`).
const ONSET_WAIT_DAYS: usize = 7;
/// A day is "well below" its expectation (a lasting drop) from this z down,
/// in units of the z threshold.
const DROP_Z_SHARE: f64 = 0.5;

/// One scored day of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayScore {
    pub day: NaiveDate,
    pub actual: f64,
    pub expected: f64,
    pub z: f64,
    /// The spread `z` was measured in (dollars).
    pub scale: f64,
    pub anomalous: bool,
    /// Days of history the expectation rests on (at most the window).
    pub history_days: usize,
}

/// How an anomaly stands on the last day of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyState {
    /// Still anomalous on the last day.
    Ongoing,
    /// The series went back to its baseline.
    Ended,
    /// The series stayed at a new level, which became the baseline from
    /// `from` on: the anomaly is over, the new level is normal now.
    Rebaselined { from: NaiveDate },
}

impl AnomalyState {
    /// The name in a finding's evidence (`state`).
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyState::Ongoing => "ongoing",
            AnomalyState::Ended => "ended",
            AnomalyState::Rebaselined { .. } => "rebaselined",
        }
    }
}

/// A run of anomalous days.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// The anomalous days (a shift may include a few ordinary-looking ones
    /// between them; those are not listed).
    pub days: Vec<DayScore>,
    pub state: AnomalyState,
}

impl Anomaly {
    pub fn start(&self) -> NaiveDate {
        self.days[0].day
    }
    pub fn end(&self) -> NaiveDate {
        self.days[self.days.len() - 1].day
    }
    /// Still anomalous on the last day of the data.
    pub fn ongoing(&self) -> bool {
        self.state == AnomalyState::Ongoing
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

/// One day of the weekly model's history.
#[derive(Debug, Clone, Copy)]
struct HistoryDay {
    weekday: u32,
    /// What the model learns from: the actual amount, or the expectation on
    /// a day that belonged to an anomaly.
    value: f64,
    actual: f64,
    /// Position of the day in the input.
    index: usize,
}

/// How a new level relates to the old baseline.
#[derive(Debug, Clone, Copy)]
enum Fit {
    /// New = old + dollars.
    Added(f64),
    /// New = old × factor.
    Scaled(f64),
}

impl Fit {
    fn apply(self, old: f64) -> f64 {
        match self {
            Fit::Added(d) => old + d,
            Fit::Scaled(f) => old * f,
        }
    }
}

/// The online model of one series: feed days in order with [`SeriesModel::push`].
#[derive(Debug, Clone)]
pub struct SeriesModel {
    window_days: usize,
    min_history_days: usize,
    level_shift_min_days: usize,
    thresholds: Thresholds,
    history: VecDeque<HistoryDay>,
    month_starts: VecDeque<f64>,
    /// Anomalous days of the current anomaly.
    run: Vec<DayScore>,
    /// Every scored day since the current anomaly began (with the
    /// ordinary-looking days an established shift survives), and its input position.
    since_run: Vec<(usize, DayScore)>,
    /// Consecutive days well below expectation, outside anomalies.
    low: Vec<(usize, DayScore)>,
    gap: usize,
    index: usize,
    /// The first day pushed: until a month after it, a one- or two-day
    /// anomaly may be a monthly charge the history cannot show.
    first_day: Option<NaiveDate>,
    /// Days that were anomalous on their own (not inside an established
    /// shift) in the last week and a day, with their excess.
    recent_single: VecDeque<NaiveDate>,
    /// The last scored days outside any anomaly, for the sustained test.
    quiet: VecDeque<(usize, DayScore)>,
    anomalies: Vec<Anomaly>,
    /// A short anomaly that ended, held back for up to [`ONSET_WAIT_DAYS`]
    /// days in case it was the onset of the next one (see `joins`).
    pending: Option<Pending>,
    /// After a re-baselining, until the input position given: the noise
    /// of the new level as its steady week showed it (see `rebaseline`).
    settled_noise: Option<(usize, f64)>,
}

impl SeriesModel {
    pub fn new(config: &CostConfig, thresholds: Thresholds) -> Self {
        SeriesModel {
            window_days: config.window_days.max(1),
            min_history_days: config.min_history_days,
            level_shift_min_days: config.level_shift_min_days.max(1),
            thresholds,
            history: VecDeque::with_capacity(config.window_days + 1),
            month_starts: VecDeque::with_capacity(13),
            run: Vec::new(),
            since_run: Vec::new(),
            low: Vec::new(),
            gap: 0,
            index: 0,
            first_day: None,
            recent_single: VecDeque::with_capacity(9),
            quiet: VecDeque::with_capacity(SUSTAINED_DAYS + 1),
            anomalies: Vec::new(),
            settled_noise: None,
            pending: None,
        }
    }

    /// Scores one day against the days pushed before it, then learns from it.
    /// Days are expected in order, one per calendar day (a missing day is a
    /// zero in Cost Explorer); other orders are scored as given.
    /// `None` while the history is shorter than `min_history_days`.
    pub fn push(&mut self, day: NaiveDate, actual: f64) -> Option<DayScore> {
        let index = self.index;
        self.index += 1;
        let weekday = day.weekday().num_days_from_monday();
        let is_month_start = day.day() == 1;
        self.first_day.get_or_insert(day);
        let mut scored = (self.history.len() >= self.min_history_days.max(1))
            .then(|| self.score(day, weekday, is_month_start, actual));
        // An established shift survives a few ordinary-looking days (a quiet
        // weekend, noise): those stay part of it instead of splitting it.
        let in_shift = self.run.len() >= self.level_shift_min_days;
        let mut echo = false;
        if let Some(s) = scored.as_mut().filter(|s| s.anomalous && !in_shift) {
            // Anomalous on the same weekday a week ago too, on its own: the
            // weekly pattern changed (a weekly job, a new weekend level).
            // It is learnt as it is, not reported again and again.
            while self
                .recent_single
                .front()
                .is_some_and(|d| (day - *d).num_days() > 7)
            {
                self.recent_single.pop_front();
            }
            echo = self
                .recent_single
                .iter()
                .any(|d| (day - *d).num_days() == 7);
            self.recent_single.push_back(day);
            if echo {
                s.anomalous = false;
            }
        }

        let anomalous = scored.is_some_and(|s| s.anomalous);
        // A day closer to the anomaly's level than to the baseline still
        // belongs to it, significant or not on its own (a noisy day, a
        // weekend at the new level, the next step of a ramp): an established
        // shift holds on such days; a younger anomaly for up to two of them.
        // A day right after an anomalous one (or after such days) that is
        // still clearly above normal, and carries a fair share of the
        // anomaly's excess, continues it for up to a week: a shift or ramp on
        // a noisy series whose first day stood out and whose next days are
        // merely high stays one anomaly instead of a "spike" and a later
        // shift. Such days hold the anomaly open but do not count as its
        // anomalous days, so a spike with a short tail stays a spike.
        let run_level = median(self.run.iter().map(|d| d.actual - d.expected).collect());
        // Whether a day continues an anomaly is a question about the daily
        // pattern. A 1st is flagged only if the model of earlier month
        // starts agrees too, whose wide spread makes almost any 1st look
        // ordinary; on a series without month-start charges that ended
        // young anomalies (a ramp's first days) on the 1st for nothing.
        let judged = match scored {
            Some(s) if is_month_start && !s.anomalous && !self.run.is_empty() => {
                Some(self.daily_view(s, weekday))
            }
            _ => scored,
        };
        let continuing = !in_shift
            && !echo
            && !self.run.is_empty()
            && self.gap == 0
            && self.since_run.len() < REBASELINE_STEADY_DAYS
            && judged.is_some_and(|s| {
                !s.anomalous
                    && s.z >= HOLD_Z_SHARE * self.thresholds.z
                    && s.actual - s.expected >= PERSIST_LEVEL_SHARE * run_level
                    && super::billing::is_billed(s.actual)
            });
        let elevated = !self.run.is_empty()
            && judged.is_some_and(|s| s.actual - s.expected >= 0.5 * run_level);
        if scored.is_some() {
            self.gap = if anomalous || continuing || (in_shift && elevated) || self.run.is_empty() {
                0
            } else {
                self.gap + 1
            };
        }
        let holding = anomalous
            || continuing
            || (in_shift && (elevated || self.gap < SHIFT_GAP_DAYS))
            || (elevated && self.gap < SHIFT_GAP_DAYS);
        if is_month_start {
            self.month_starts.push_back(actual);
            if self.month_starts.len() > 12 {
                self.month_starts.pop_front();
            }
        } else {
            // Anomalous days enter the history as what was expected, so the
            // baseline does not drift towards the anomaly.
            let value = match scored {
                Some(s) if holding && !echo => s.expected,
                _ => actual,
            };
            self.history.push_back(HistoryDay {
                weekday,
                value,
                actual,
                index,
            });
            if self.history.len() > self.window_days {
                self.history.pop_front();
            }
        }

        let mut s = scored?;
        if anomalous {
            if self.run.is_empty() {
                self.resume_or_release();
            }
            self.run.push(s);
            self.quiet.clear();
        } else if self.run.is_empty() && !is_month_start {
            self.quiet.push_back((index, s));
            if self.quiet.len() > SUSTAINED_DAYS {
                self.quiet.pop_front();
            }
            if self.sustained() {
                // The days of a slow rise: an anomaly from the first of them,
                // learnt as expected like any other anomalous day.
                let mut days: Vec<(usize, DayScore)> = self.quiet.drain(..).collect();
                // It starts where the rise does: leading days that carry
                // little of it were noise.
                let mean = days.iter().map(|(_, d)| d.actual - d.expected).sum::<f64>()
                    / days.len() as f64;
                let lead = days
                    .iter()
                    .position(|(_, d)| d.actual - d.expected >= 0.5 * mean)
                    .unwrap_or(0);
                days.drain(..lead);
                if !days.is_empty() {
                    self.resume_or_release();
                }
                for (i, d) in &days {
                    if let Some(h) = self.history.iter_mut().find(|h| h.index == *i) {
                        h.value = d.expected;
                    }
                    let mut d = *d;
                    d.anomalous = true;
                    self.run.push(d);
                    self.since_run.push((*i, d));
                }
                s.anomalous = true;
                self.low.clear();
                return Some(s);
            }
        }
        if holding {
            self.since_run.push((index, s));
            self.low.clear();
        } else {
            if !self.run.is_empty() {
                self.close(AnomalyState::Ended);
                if let Some(p) = self.pending.as_mut() {
                    p.after.push(s);
                }
            } else if let Some(p) = self.pending.as_mut() {
                p.after.push(s);
                if p.after.len() >= ONSET_WAIT_DAYS {
                    self.release();
                }
            }
            let drop = s.expected - s.actual;
            let well_below = s.z <= -DROP_Z_SHARE * self.thresholds.z
                && drop >= self.thresholds.min_relative_change * s.expected.max(0.0);
            if well_below && !is_month_start {
                self.low.push((index, s));
            } else if !is_month_start {
                self.low.clear();
            }
        }
        if self.run.len() >= self.level_shift_min_days
            && (anomalous || elevated)
            && self.since_run.len() >= REBASELINE_STEADY_DAYS
        {
            let tail = &self.since_run[self.since_run.len() - REBASELINE_STEADY_DAYS..];
            let forced = self.since_run.len() >= REBASELINE_MAX_DAYS;
            if let Some(fit) = steady_fit(tail, forced) {
                let tail = tail.to_vec();
                let since = self.since_run[0].0;
                self.rebaseline(fit, &tail, since);
                self.close(AnomalyState::Rebaselined {
                    from: day + Duration::days(1),
                });
            }
        } else if self.low.len() >= REBASELINE_STEADY_DAYS {
            let tail = &self.low[self.low.len() - REBASELINE_STEADY_DAYS..];
            if let Some(fit) = steady_fit(tail, false) {
                let tail = tail.to_vec();
                let since = self.low[0].0;
                self.rebaseline(fit, &tail, since);
                self.low.clear();
            }
        }
        Some(s)
    }

    /// Whether the last [`SUSTAINED_DAYS`] quiet days, each above its
    /// expectation, are together as far above it as one anomalous day must
    /// be alone, in z of their mean, in dollars and in relative terms: a
    /// ramp or a shift too small to show on any single noisy day.
    fn sustained(&self) -> bool {
        if self.quiet.len() < SUSTAINED_DAYS
            || self.quiet.iter().any(|(_, d)| d.actual <= d.expected)
        {
            return false;
        }
        let n = self.quiet.len() as f64;
        let excess = self
            .quiet
            .iter()
            .map(|(_, d)| d.actual - d.expected)
            .sum::<f64>()
            / n;
        let expected = self.quiet.iter().map(|(_, d)| d.expected).sum::<f64>() / n;
        let scale = self.quiet.iter().map(|(_, d)| d.scale).sum::<f64>() / n;
        let t = &self.thresholds;
        excess / (scale / n.sqrt()) >= t.z
            && excess >= t.min_excess_usd
            && excess >= t.min_relative_change * expected.max(0.0)
            && self
                .quiet
                .iter()
                .all(|(_, d)| super::billing::is_billed(d.actual))
    }

    /// The anomalies found so far, the last one `Ongoing` if it still is.
    pub fn finish(mut self) -> Vec<Anomaly> {
        self.release();
        if !self.run.is_empty() {
            self.close(AnomalyState::Ongoing);
        }
        self.anomalies
    }

    /// Reports the held-back short anomaly, if any, as it was.
    fn release(&mut self) {
        if let Some(p) = self.pending.take() {
            self.anomalies.push(Anomaly {
                days: p.days,
                state: AnomalyState::Ended,
            });
        }
    }

    /// A new anomaly begins: the held-back short one is either its onset
    /// (its days start the run, so the anomaly keeps the earlier start
    /// day) or reported as it was.
    fn resume_or_release(&mut self) {
        let Some(p) = self.pending.as_ref() else {
            return;
        };
        if joins(p) {
            if let Some(p) = self.pending.take() {
                self.run = p.days;
            }
        } else {
            self.release();
        }
    }

    fn close(&mut self, state: AnomalyState) {
        let since = std::mem::take(&mut self.since_run);
        self.gap = 0;
        if self.run.is_empty() {
            return;
        }
        let short = self.run.len() < self.level_shift_min_days;
        let blind = self
            .first_day
            .and_then(|f| f.checked_add_months(chrono::Months::new(1)))
            .is_some_and(|month_on| self.run[0].day < month_on);
        if state == AnomalyState::Ended && short && blind {
            // A day or two above normal in the first month of a series may
            // be a monthly charge posting: the history cannot tell yet.
            self.run.clear();
            return;
        }
        if state == AnomalyState::Ended && short {
            let last = self.run[self.run.len() - 1].day;
            self.pending = Some(Pending {
                days: std::mem::take(&mut self.run),
                after: since
                    .into_iter()
                    .map(|(_, d)| d)
                    .filter(|d| d.day > last)
                    .collect(),
            });
            return;
        }
        self.anomalies.push(Anomaly {
            days: std::mem::take(&mut self.run),
            state,
        });
    }

    /// The weekly model's expectation and spread for `weekday` (at least
    /// the settled noise, for a window after a re-baselining).
    fn weekly(&self, weekday: u32) -> (f64, f64) {
        let (expected, scale) = weekly_expectation(&self.history, weekday);
        match self.settled_noise {
            Some((until, noise)) if self.index <= until => (expected, scale.max(noise)),
            _ => (expected, scale),
        }
    }

    /// A 1st as the weekly model alone sees it, on a series whose month
    /// starts carry no charge (earlier 1sts within the hold threshold of a
    /// normal day); otherwise as scored.
    fn daily_view(&self, s: DayScore, weekday: u32) -> DayScore {
        let (expected, scale) = self.weekly(weekday);
        let charged = !self.month_starts.is_empty()
            && month_start_expectation(&self.month_starts).0 - expected
                > HOLD_Z_SHARE * self.thresholds.z * scale;
        if charged {
            return s;
        }
        DayScore {
            expected,
            scale,
            z: (s.actual - expected) / scale,
            ..s
        }
    }

    fn score(&self, day: NaiveDate, weekday: u32, is_month_start: bool, actual: f64) -> DayScore {
        let (expected, scale) = self.weekly(weekday);
        let mut z = (actual - expected) / scale;
        let mut expected_used = expected;
        let mut scale_used = scale;
        if is_month_start && !self.month_starts.is_empty() {
            let (ms_expected, ms_scale) = month_start_expectation(&self.month_starts);
            let ms_z = (actual - ms_expected) / ms_scale;
            if ms_z < z {
                z = ms_z;
                expected_used = ms_expected;
                scale_used = ms_scale;
            }
        }
        let excess = actual - expected_used;
        let t = &self.thresholds;
        // A day whose net amount is no charge (credits cover it) costs nothing.
        let anomalous = super::billing::is_billed(actual)
            && z >= t.z
            && excess >= t.min_excess_usd
            && excess >= t.min_relative_change * expected_used.max(0.0);
        DayScore {
            day,
            actual,
            expected: expected_used,
            z,
            scale: scale_used,
            anomalous,
            history_days: self.history.len(),
        }
    }

    /// Moves the history to the new level: the days from input position
    /// `first` (the start of the shift or drop) on enter as observed, with
    /// their noise (what was learnt as the expectation during the anomaly
    /// would make the spread look too small); older days as `fit` maps them,
    /// corrected per weekday where the steady week `tail` shows that weekday
    /// far off the fit (a new weekly pattern, not noise). Earlier month
    /// starts move by the change in level.
    fn rebaseline(&mut self, fit: Fit, tail: &[(usize, DayScore)], first: usize) {
        let mut correction = [0.0; 7];
        // Far off against the noise the week itself shows: the spread the
        // days were scored in shrank while the anomaly entered the history
        // as its expectation, so against it alone one noisy day would set
        // its weekday's expectation for weeks.
        let off_fit: Vec<f64> = tail
            .iter()
            .filter(|(_, s)| s.day.day() != 1)
            .map(|(_, s)| s.actual - fit.apply(s.expected))
            .collect();
        let noise = spread(off_fit, 0.0);
        // Most of the window is the old history moved to the new level: it
        // carries the old level's noise (on a series whose noise grows with
        // its level, too little) and any error of the fit on a weekday, so
        // until the window has turned over, days are measured in at least
        // the noise the steady week showed around the fit.
        self.settled_noise = Some((self.index + self.window_days, noise));
        for (_, s) in tail.iter().filter(|(_, s)| s.day.day() != 1) {
            let off = s.actual - fit.apply(s.expected);
            if off.abs() > WEEKDAY_OFF_SCALES * s.scale.max(noise) {
                correction[s.day.weekday().num_days_from_monday() as usize] = off;
            }
        }
        let old_level = median(self.history.iter().map(|h| h.value).collect());
        for h in self.history.iter_mut() {
            h.value = if h.index >= first {
                h.actual
            } else {
                fit.apply(h.value) + correction[h.weekday as usize]
            };
        }
        let moved = fit.apply(old_level) - old_level;
        for m in self.month_starts.iter_mut() {
            *m += moved;
        }
    }
}

/// How the days of `tail` relate to what the old baseline expected, if
/// they hold steady at one level (or whatever they show, when `forced`).
/// Month-start days are left out: they have a model of their own.
fn steady_fit(tail: &[(usize, DayScore)], forced: bool) -> Option<Fit> {
    let days: Vec<&DayScore> = tail
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.day.day() != 1)
        .collect();
    if days.len() < 3 {
        return forced.then_some(Fit::Added(0.0));
    }
    let added = median(days.iter().map(|s| s.actual - s.expected).collect());
    let added_residuals: Vec<f64> = days.iter().map(|s| s.actual - s.expected - added).collect();
    let mut best = (Fit::Added(added), added_residuals);
    if days.iter().all(|s| s.expected > 0.0) {
        let factor = median(days.iter().map(|s| s.actual / s.expected).collect());
        let scaled_residuals: Vec<f64> = days
            .iter()
            .map(|s| s.actual - s.expected * factor)
            .collect();
        let size = |r: &[f64]| median(r.iter().map(|v| v.abs()).collect());
        if size(&scaled_residuals) < size(&best.1) {
            best = (Fit::Scaled(factor), scaled_residuals);
        }
    }
    if forced {
        return Some(best.0);
    }
    let scale = median(days.iter().map(|s| s.scale).collect());
    let shift = added.abs();
    let trend = theil_sen_slope(&best.1).abs() * (best.1.len() - 1) as f64;
    (trend <= (STEADY_TREND_SCALES * scale).max(STEADY_TREND_SHARE * shift)).then_some(best.0)
}

/// A short anomaly that ended, and the days scored since its last day.
#[derive(Debug, Clone)]
struct Pending {
    days: Vec<DayScore>,
    after: Vec<DayScore>,
}

/// Whether the short anomaly `p` was the onset of the one beginning
/// now: every day between stayed above its expectation and, on average,
/// carried at least [`PERSIST_LEVEL_SHARE`] of the short anomaly's peak
/// excess. The first noisy days of a ramp do (the series keeps rising
/// towards them); a spike before a shift does not (the days between are
/// back at the baseline, around zero excess), and stays a spike.
fn joins(p: &Pending) -> bool {
    let peak = p
        .days
        .iter()
        .map(|d| d.actual - d.expected)
        .fold(f64::MIN, f64::max);
    let Some(between) = (!p.after.is_empty()).then_some(p.after.len() as f64) else {
        return false;
    };
    let mean_excess = p.after.iter().map(|d| d.actual - d.expected).sum::<f64>() / between;
    p.after.iter().all(|d| d.actual > d.expected) && mean_excess >= PERSIST_LEVEL_SHARE * peak
}

/// Median of the pairwise slopes of `values` against their position.
fn theil_sen_slope(values: &[f64]) -> f64 {
    let mut slopes = Vec::with_capacity(values.len() * values.len() / 2);
    for i in 0..values.len() {
        for j in i + 1..values.len() {
            slopes.push((values[j] - values[i]) / (j - i) as f64);
        }
    }
    median(slopes)
}

/// Scores a dense daily series (index 0 = `first_day`) and returns its anomalies.
pub fn score_series(
    first_day: NaiveDate,
    values: &[f64],
    config: &CostConfig,
    thresholds: &Thresholds,
) -> (Vec<DayScore>, Vec<Anomaly>) {
    let mut model = SeriesModel::new(config, *thresholds);
    let scores = values
        .iter()
        .enumerate()
        .filter_map(|(i, &v)| model.push(first_day + Duration::days(i as i64), v))
        .collect();
    (scores, model.finish())
}

fn weekly_expectation(history: &VecDeque<HistoryDay>, weekday: u32) -> (f64, f64) {
    let level = median(history.iter().map(|h| h.value).collect());
    let factor = |w: u32| -> f64 {
        if level <= 0.0 {
            return 1.0;
        }
        let ratios: Vec<f64> = history
            .iter()
            .filter(|h| h.weekday == w)
            .map(|h| h.value / level)
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
        .map(|h| h.value - level * factors[h.weekday as usize])
        .collect();
    let expected = level * factors[weekday as usize];
    // The weekday factors are fitted to the same days the spread is taken
    // from, which on some windows makes the spread look half of what the
    // noise really is: the spread of week-over-week differences of the same
    // weekday (no fitting, √2 times the noise) bounds it from below.
    let week_over_week: Vec<f64> = history
        .iter()
        .zip(history.iter().skip(7))
        .filter(|(a, b)| a.weekday == b.weekday)
        .map(|(a, b)| (b.value - a.value).abs())
        .collect();
    let differences = MAD_TO_SIGMA * median(week_over_week) / std::f64::consts::SQRT_2;
    // Seven weekday factors were fitted to these same residuals, which makes
    // them look tighter than the noise really is: correct for the lost degrees of freedom.
    let n = residuals.len() as f64;
    let fitted = factors.iter().filter(|f| **f != 1.0).count() as f64;
    let correction = if n > fitted + 1.0 {
        (n / (n - fitted)).sqrt()
    } else {
        1.0
    };
    (
        expected,
        (correction * spread(residuals, expected)).max(differences),
    )
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

/// The median (the mean of the two middle values for an even count; 0 for
/// none). A selection, not a sort: it runs about a dozen times per scored
/// day, and linear selection is what keeps the detector's throughput.
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let (below, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n.is_multiple_of(2) {
        // The lower middle value is the largest of those selected below.
        let lower = below
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(upper);
        (lower + upper) / 2.0
    } else {
        upper
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
    fn median_selects_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0]), 3.0);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![-1.0, 7.0, 7.0, 0.5, 2.0, 9.0]), 4.5);
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
        assert_eq!(anomalies[0].state, AnomalyState::Ended);
    }

    #[test]
    fn a_young_shift_is_ongoing() {
        let start = day("2026-01-05");
        let mut values = weekly(75, start);
        for v in &mut values[70..] {
            *v *= 2.5;
        }
        let (_, anomalies) = score(start, &values);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].days.len(), 5);
        assert!(anomalies[0].ongoing());
    }

    #[test]
    fn a_lasting_shift_becomes_the_baseline_after_a_steady_week_and_later_events_are_found() {
        let start = day("2026-01-05");
        let mut values = weekly(150, start);
        for v in &mut values[70..] {
            *v *= 2.5;
        }
        // A spike at the new level, then a second shift up, then a drop
        // back down and a shift up from there.
        values[95] *= 3.0;
        for v in &mut values[110..] {
            *v *= 1.6;
        }
        let (_, anomalies) = score(start, &values);
        let starts: Vec<i64> = anomalies
            .iter()
            .map(|a| (a.start() - start).num_days())
            .collect();
        assert_eq!(starts, vec![70, 95, 110], "{anomalies:#?}");
        assert_eq!(
            anomalies[0].state,
            AnomalyState::Rebaselined {
                from: start + Duration::days(70 + REBASELINE_STEADY_DAYS as i64)
            }
        );
        assert_eq!(anomalies[0].days.len(), REBASELINE_STEADY_DAYS);
        assert_eq!(anomalies[1].days.len(), 1);
        assert_eq!(anomalies[1].state, AnomalyState::Ended);
        assert!(matches!(
            anomalies[2].state,
            AnomalyState::Rebaselined { .. }
        ));
    }

    #[test]
    fn a_ramp_is_one_anomaly_followed_to_its_plateau() {
        let start = day("2026-01-05");
        let mut values = weekly(150, start);
        for (i, v) in values[70..].iter_mut().enumerate() {
            *v *= 1.0 + 1.5 * ((i + 1) as f64 / 10.0).min(1.0);
        }
        let (_, anomalies) = score(start, &values);
        assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
        let a = &anomalies[0];
        assert!((a.start() - start).num_days() <= 73, "{a:?}");
        let AnomalyState::Rebaselined { from } = a.state else {
            panic!("{a:?}")
        };
        // Not before the plateau (day 79) is reached and holds (the
        // steadiness test is a median: most of the week must be on it).
        assert!((from - start).num_days() >= 79 + 4, "{from}");
        assert!((from - a.start()).num_days() <= REBASELINE_MAX_DAYS as i64);
    }

    #[test]
    fn after_a_lasting_drop_an_increase_is_measured_from_the_new_level() {
        let start = day("2026-01-05");
        let mut values = weekly(120, start);
        for v in &mut values[60..] {
            *v *= 0.4;
        }
        // Back to 70 % of the old level: far above the new one.
        for v in &mut values[70..] {
            *v *= 1.75;
        }
        let (_, anomalies) = score(start, &values);
        assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
        assert_eq!((anomalies[0].start() - start).num_days(), 70);
    }

    #[test]
    fn credits_refunds_and_tiny_residues_raise_nothing() {
        let start = day("2026-01-05");
        let mut values = weekly(120, start);
        values[40] = -500.0; // a refund
        values[41] = -0.000_000_009_2; // a credit residue
        for v in &mut values[80..85] {
            *v -= 60.0; // a credit for five days
        }
        let (scores, anomalies) = score(start, &values);
        assert!(anomalies.is_empty(), "{anomalies:#?}");
        assert!(
            scores
                .iter()
                .all(|s| s.z.is_finite() && s.expected.is_finite())
        );
        // A series of nothing but residues and credits is quiet too.
        let credits: Vec<f64> = (0..90)
            .map(|i| if i % 3 == 0 { -0.000_000_009_2 } else { -25.0 })
            .collect();
        assert!(score(start, &credits).1.is_empty());
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
