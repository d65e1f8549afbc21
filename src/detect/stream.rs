//! A streaming anomaly detector for any regularly sampled series
//! (`draco detect`, `draco bench nab`).
//!
//! Per point, in O(1) time and memory bounded by its windows and tables:
//! 1. **Surprise.** The value and its change since the previous point are
//!    placed in bins over the range seen so far; the rarer a bin has been
//!    (counts that decay, so old behaviour is forgotten), the more surprising
//!    the point. With the distance from the recent level this gives the
//!    *value* surprise, the largest of the three, in [0, 1].
//! 2. **Sequence.** A small hashed table learns which level tends to follow
//!    the last few levels (like HTM's sequence memory, in miniature); the
//!    *sequence* surprise is how unexpected the new level is after them, so a
//!    familiar value arriving in an unfamiliar order is noticed.
//!    With timestamps (`update_at`, `score_at`) there is one more raw
//!    surprise: the distance of the value from the mean of earlier values
//!    at the same time of day, in residual standard deviations, so a value
//!    that is normal at noon but not at midnight is noticed.
//! 3. **Likelihood.** Like HTM's anomaly likelihood, for each surprise: the
//!    mean of the last few points is compared with the distribution over a
//!    long window, giving a z. The larger z of the two detectors is kept.
//! 4. **Calibration.** The Gaussian tail of z is only trusted as far as this
//!    series' own history allows: if a z this large has already been reached
//!    by a share *s* of recent points, the score is at most 1 − *s*. Series
//!    with recurring bursts thus stop alarming on every burst, while a series
//!    that is quiet keeps its full sensitivity.
//!    A value beyond the whole range seen so far is reported at once.
//! 5. **Suppression.** After a strong report, scores are damped for a while:
//!    one incident is one alarm, not a pager storm.
//!
//! The score at point *t* depends only on points up to *t*.
//!
//! **Extreme values.** The bins span the range seen, so one value of `1e6`
//! in a series between 1 and 2 would squeeze every later value into one
//! bin and hide a later spike. The last `range_memory` values (500 by
//! default) are kept, and every 50 points: if they fill less than an eighth
//! of the range, each end of the range beyond them where at most 8
//! (decayed) points ever lay is given back. The range then rests on those
//! values (plus a quarter of their spread), and the value bins, the recent level
//! and spread, and any time-of-day mean the extremes pulled outside it are
//! rebuilt from them. So a burst of up to 8 extreme points, of either sign,
//! at one or both ends, with or without a level change after it, blinds the
//! detector for at most 1.1 × `range_memory` points (550) after the last of
//! them; an excursion of n > 8 points stays part of the range for about
//! `half_life` · log2(n / 8) points more (it is
//! then a regime, not an outlier).

use std::collections::VecDeque;

use chrono::{NaiveDateTime, Timelike};

/// The score at or above which `draco detect` flags a row by default: the
/// threshold NAB's standard profile picks for this detector on the shared
/// corpus (`draco bench nab`; the NAB integration test holds the two equal).
pub const DEFAULT_THRESHOLD: f64 = 0.9981;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Value bins over the observed range.
    pub bins: usize,
    /// Half-life of bin and sequence counts, in points.
    pub half_life: f64,
    /// Points averaged for the short-term surprise.
    pub short_window: usize,
    /// Points whose surprises form the reference distribution.
    pub long_window: usize,
    /// Points before any score is reported.
    pub warm_up: usize,
    /// A report above this is an alarm; later scores are damped for `suppress_for` points.
    pub alarm_level: f64,
    pub suppress_for: usize,
    /// Levels the value is quantised to for the sequence model.
    pub sequence_levels: usize,
    /// Previous levels that form a sequence context; 0 turns the model off.
    pub sequence_order: usize,
    /// Half-life, in points, of the history that calibrates z; 0 turns
    /// calibration off.
    pub calibration_half_life: f64,
    /// Phases per day of the time-of-day model, used only by `update_at` and
    /// `score_at`; 0 turns it off.
    pub season_buckets: usize,
    /// Smallest learning rate of a phase's mean (it is 1/n before that), so
    /// the model follows a daily profile that changes slowly.
    pub season_alpha: f64,
    /// Points after which an end of the binned range that no value has come
    /// near is given back, if at most `FORGETTABLE_MASS` (decayed) points
    /// ever lay there: the bound on how long a few extreme values can blind
    /// the detector (see [`StreamDetector`]). 0 keeps every range for good.
    pub range_memory: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            bins: 16,
            half_life: 16000.0,
            short_window: 10,
            long_window: 6000,
            warm_up: 150,
            alarm_level: 0.998,
            suppress_for: 150,
            sequence_levels: 16,
            sequence_order: 2,
            calibration_half_life: 20000.0,
            season_buckets: 144,
            season_alpha: 0.1,
            range_memory: 500,
        }
    }
}

/// The range is narrowed only when the recent values fill less than this
/// share of it: with 16 bins, they then all fall into two bins or fewer.
const CROWDED_SHARE: f64 = 1.0 / 8.0;

/// Largest decayed count of points beyond the recent values for which a
/// range end is given back: a burst of up to this many extreme points is
/// forgotten; a regime that lasted longer keeps its place in the range until
/// its count decays below this (`half_life` · log2(points / this) points).
const FORGETTABLE_MASS: f64 = 8.0;

/// Headroom left beyond the recent values when an end is given back, as a
/// share of their spread: a value 3σ out in 500 Gaussian draws leaves
/// about 4.4σ, so ordinary noise is rarely a new extreme afterwards.
const RANGE_MARGIN: f64 = 0.25;

/// How often, as a share of `range_memory`, the range is checked: an
/// extreme leaves the recent values `range_memory` points after it came and
/// is given back at the next check, so within 1.1 × `range_memory` points.
const CHECKS_PER_MEMORY: usize = 10;

/// Exponentially decaying histogram over a [min, max] range that grows to
/// take in every new value and gives back an end that held only a few
/// extreme points once none has come near it for `memory` points.
#[derive(Debug, Clone)]
struct DecayingHistogram {
    counts: Vec<f64>,
    total: f64,
    decay: f64,
    min: f64,
    max: f64,
    seen: bool,
    /// The last `memory` values, oldest at `head` once full.
    recent: Vec<f64>,
    head: usize,
    memory: usize,
    /// Points until the range is next checked.
    until_check: usize,
    /// Set by `observe` when the range was just given back.
    rebuilt: bool,
}

impl DecayingHistogram {
    fn new(bins: usize, half_life: f64, memory: usize) -> Self {
        Self {
            counts: vec![0.0; bins.max(1)],
            total: 0.0,
            decay: 0.5f64.powf(1.0 / half_life.max(1.0)),
            min: 0.0,
            max: 0.0,
            seen: false,
            recent: Vec::with_capacity(memory),
            head: 0,
            memory,
            until_check: memory,
            rebuilt: false,
        }
    }

    fn bin(&self, x: f64) -> usize {
        let span = self.max - self.min;
        if span <= 0.0 {
            return 0;
        }
        let position = ((x - self.min) / span).clamp(0.0, 1.0);
        ((position * self.counts.len() as f64) as usize).min(self.counts.len() - 1)
    }

    /// Position of `x` in the current range, in [0, 1].
    fn position(&self, x: f64) -> f64 {
        let span = self.max - self.min;
        if span <= 0.0 {
            0.0
        } else {
            ((x - self.min) / span).clamp(0.0, 1.0)
        }
    }

    /// Grows the range to include `x`, moving each old bin's count to the new
    /// bin holding its centre, so what was learnt is kept.
    fn extend_to(&mut self, x: f64) {
        let (old_min, old_max) = (self.min, self.max);
        let old_span = old_max - old_min;
        let bins = self.counts.len();
        // Leave headroom so a slowly rising series does not re-bin every point.
        let margin = 0.1 * (old_max.max(x) - old_min.min(x));
        if x < old_min {
            self.min = x - margin;
        } else {
            self.max = x + margin;
        }
        let old = std::mem::replace(&mut self.counts, vec![0.0; bins]);
        for (j, count) in old.into_iter().enumerate() {
            if count > 0.0 {
                let centre = if old_span > 0.0 {
                    old_min + (j as f64 + 0.5) / bins as f64 * old_span
                } else {
                    old_min
                };
                let b = self.bin(centre);
                self.counts[b] += count;
            }
        }
    }

    /// Surprise of `x` in [0, 1] before it is counted, then counts it.
    fn observe(&mut self, x: f64) -> f64 {
        let outside = !self.seen || x < self.min || x > self.max;
        let surprise = if !self.seen {
            0.0
        } else if outside {
            1.0
        } else {
            let bins = self.counts.len() as f64;
            let p = (self.counts[self.bin(x)] + 0.5) / (self.total + 0.5 * bins);
            // 1 for a bin never seen, 0 for a bin holding everything.
            (1.0 - p * bins).clamp(0.0, 1.0).powi(2)
        };
        if !self.seen {
            self.min = x;
            self.max = x;
            self.seen = true;
        } else if outside {
            self.extend_to(x);
        }
        self.counts.iter_mut().for_each(|c| *c *= self.decay);
        self.total *= self.decay;
        let b = self.bin(x);
        self.counts[b] += 1.0;
        self.total += 1.0;
        self.rebuilt = false;
        if self.memory > 0 {
            self.remember(x);
        }
        surprise
    }

    /// Keeps `x` among the recent values and, every `memory` /
    /// `CHECKS_PER_MEMORY` points, gives back range ends none of them lies in.
    fn remember(&mut self, x: f64) {
        if self.recent.len() < self.memory {
            self.recent.push(x);
        } else {
            self.recent[self.head] = x;
            self.head = if self.head + 1 == self.memory {
                0
            } else {
                self.head + 1
            };
        }
        self.until_check -= 1;
        if self.until_check == 0 {
            self.until_check = (self.memory / CHECKS_PER_MEMORY).max(1);
            if self.recent.len() == self.memory {
                self.give_back_ends();
            }
        }
    }

    /// When the last `memory` values fill less than `CROWDED_SHARE` of the
    /// range, narrows each end beyond them that holds at most
    /// `FORGETTABLE_MASS` points to the recent values plus `RANGE_MARGIN`
    /// of their spread, and rebuilds the counts from the recent values: the old bins
    /// are too coarse to say where in the new range their points lay.
    fn give_back_ends(&mut self) {
        let (lo, hi) = self
            .recent
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = self.max - self.min;
        if span.is_nan() || span <= 0.0 || hi - lo >= CROWDED_SHARE * span {
            return;
        }
        let margin = RANGE_MARGIN * (hi - lo);
        let (mut min, mut max) = (self.min, self.max);
        let (b_lo, b_hi) = (self.bin(lo), self.bin(hi));
        if self.counts[b_hi + 1..].iter().sum::<f64>() <= FORGETTABLE_MASS {
            max = (hi + margin).min(self.max);
        }
        if self.counts[..b_lo].iter().sum::<f64>() <= FORGETTABLE_MASS {
            min = (lo - margin).max(self.min);
        }
        if (min, max) == (self.min, self.max) {
            return;
        }
        (self.min, self.max) = (min, max);
        self.counts.iter_mut().for_each(|c| *c = 0.0);
        self.total = 0.0;
        // Oldest first, each weighted as if it had decayed since it came.
        let n = self.recent.len();
        let mut weight = self.decay.powi(n as i32 - 1);
        for k in 0..n {
            let v = self.recent[(self.head + k) % n];
            let b = self.bin(v);
            self.counts[b] += weight;
            self.total += weight;
            weight /= self.decay;
        }
        self.rebuilt = true;
    }

    /// Mean and variance of the recent values (after a rebuild: the values
    /// the range now rests on).
    fn recent_moments(&self) -> (f64, f64) {
        let n = self.recent.len().max(1) as f64;
        let mean = self.recent.iter().sum::<f64>() / n;
        let var = self
            .recent
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / n;
        (mean, var)
    }
}

/// Rows of the sequence table: a fixed size, so memory does not grow with
/// the number of distinct contexts a long stream produces.
const SEQUENCE_ROWS_LOG2: u32 = 12;

/// Pseudo-count per level, so a context seen once does not claim certainty.
const SEQUENCE_PRIOR: f64 = 0.1;

/// Counts of the level that followed each recent context of levels, in a
/// fixed-size hashed table. Decay is applied lazily when a row is visited,
/// so an update touches one row only.
#[derive(Debug, Clone)]
struct SequenceModel {
    levels: usize,
    order: usize,
    /// `levels ^ order`: contexts wrap at this, keeping only the last `order` levels.
    contexts: u64,
    counts: Vec<f32>,
    totals: Vec<f32>,
    stamps: Vec<u32>,
    context: u64,
    filled: usize,
    decay: f64,
    t: u32,
}

impl SequenceModel {
    fn new(levels: usize, order: usize, half_life: f64) -> Self {
        let levels = levels.clamp(2, 256);
        // Eight levels of 256 already fill 64 bits; longer contexts would wrap.
        let order = order.min(8);
        let rows = 1usize << SEQUENCE_ROWS_LOG2;
        let table = if order == 0 { 0 } else { rows };
        Self {
            levels,
            order,
            contexts: (levels as u64).saturating_pow(order as u32),
            counts: vec![0.0; table * levels],
            totals: vec![0.0; table],
            stamps: vec![0; table],
            context: 0,
            filled: 0,
            decay: 0.5f64.powf(1.0 / half_life.max(1.0)),
            t: 0,
        }
    }

    fn row(&self) -> usize {
        // Fibonacci hashing spreads neighbouring contexts over the table.
        let h = self.context.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - SEQUENCE_ROWS_LOG2)) as usize
    }

    /// Surprise of `level` after the current context, in [0, 1], then learns it.
    fn observe(&mut self, level: usize) -> f64 {
        if self.order == 0 {
            return 0.0;
        }
        self.t = self.t.wrapping_add(1);
        let level = level.min(self.levels - 1);
        let mut surprise = 0.0;
        if self.filled >= self.order {
            let row = self.row();
            let age = self.t.wrapping_sub(self.stamps[row]);
            if self.totals[row] > 0.0 {
                let f = self.decay.powf(f64::from(age)) as f32;
                self.totals[row] *= f;
                for c in &mut self.counts[row * self.levels..(row + 1) * self.levels] {
                    *c *= f;
                }
            }
            self.stamps[row] = self.t;
            let cell = row * self.levels + level;
            let p = (f64::from(self.counts[cell]) + SEQUENCE_PRIOR)
                / (f64::from(self.totals[row]) + SEQUENCE_PRIOR * self.levels as f64);
            surprise = 1.0 - p;
            self.counts[cell] += 1.0;
            self.totals[row] += 1.0;
        } else {
            self.filled += 1;
        }
        self.context =
            (self.context.wrapping_mul(self.levels as u64) + level as u64) % self.contexts.max(1);
        surprise
    }
}

/// Bins of the calibration histogram, each `CALIBRATION_STEP` wide in z;
/// the last bin holds every larger z.
const CALIBRATION_BINS: usize = 64;
const CALIBRATION_STEP: f64 = 0.5;

/// How often each level of z has been reached recently: a decaying
/// histogram whose new counts grow in weight instead of old ones shrinking,
/// so an update is O(1).
#[derive(Debug, Clone)]
struct TailCounter {
    counts: Vec<f64>,
    total: f64,
    weight: f64,
    growth: f64,
}

impl TailCounter {
    fn new(half_life: f64) -> Self {
        Self {
            counts: vec![0.0; CALIBRATION_BINS],
            total: 0.0,
            weight: 1.0,
            growth: 0.5f64.powf(-1.0 / half_life.max(1.0)),
        }
    }

    fn bin(z: f64) -> usize {
        ((z.max(0.0) / CALIBRATION_STEP) as usize).min(CALIBRATION_BINS - 1)
    }

    /// Decayed share of past points whose z reached `z`'s bin.
    fn share_at_least(&self, z: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        self.counts[Self::bin(z)..].iter().sum::<f64>() / self.total
    }

    fn push(&mut self, z: f64) {
        self.counts[Self::bin(z)] += self.weight;
        self.total += self.weight;
        self.weight *= self.growth;
        if self.weight > 1e100 {
            // Rescale before the growing weights overflow; shares are unchanged.
            let k = 1.0 / self.weight;
            self.counts.iter_mut().for_each(|c| *c *= k);
            self.total *= k;
            self.weight = 1.0;
        }
    }
}

/// Running mean and variance over the last `n` values.
#[derive(Debug, Clone)]
struct RollingMoments {
    values: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    sum_sq: f64,
}

impl RollingMoments {
    fn new(capacity: usize) -> Self {
        Self {
            values: VecDeque::with_capacity(capacity + 1),
            capacity: capacity.max(1),
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    fn push(&mut self, x: f64) {
        self.values.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
        if self.values.len() > self.capacity
            && let Some(old) = self.values.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn mean(&self) -> f64 {
        if self.values.is_empty() {
            0.0
        } else {
            self.sum / self.values.len() as f64
        }
    }

    fn std(&self) -> f64 {
        let n = self.values.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0))
            .max(0.0)
            .sqrt()
    }
}

/// One surprise stream turned into a z: how far the recent mean stands above
/// the long-run mean, in standard errors of a short-window mean.
#[derive(Debug, Clone)]
struct Likelihood {
    short: RollingMoments,
    long: RollingMoments,
}

impl Likelihood {
    fn new(short: usize, long: usize) -> Self {
        Self {
            short: RollingMoments::new(short),
            long: RollingMoments::new(long),
        }
    }

    fn push(&mut self, surprise: f64) -> f64 {
        self.short.push(surprise);
        // The reference excludes the current point, so it cannot mask itself.
        let (mean, std) = (self.long.mean(), self.long.std().max(MIN_STD));
        self.long.push(surprise);
        (self.short.mean() - mean) / (std / (self.short.capacity as f64).sqrt())
    }
}

/// Floor on the spread of surprises, so a perfectly regular series does not
/// turn the slightest wobble into a certainty.
const MIN_STD: f64 = 0.01;

/// Score of a value outside the whole range seen so far.
const NEW_EXTREME_SCORE: f64 = 0.9995;

/// Factor applied to scores during suppression.
const SUPPRESSED: f64 = 0.5;

/// Standard normal CDF Φ(z), via erf (Abramowitz–Stegun 7.1.26).
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-x * x).exp();
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

/// Residuals needed before the time-of-day surprise counts.
const SEASON_MIN_RESIDUALS: f64 = 10.0;

/// Most residuals the time-of-day spread averages over (then it forgets).
const SEASON_SPREAD_MEMORY: f64 = 2000.0;

/// What the series did at the same time of day before: a fixed table of
/// per-phase means, and the pooled spread of values around them.
#[derive(Debug, Clone)]
struct Seasonal {
    per_day: usize,
    means: Vec<f64>,
    counts: Vec<f64>,
    alpha: f64,
    /// Running variance of the residual from the phase mean.
    var: f64,
    var_n: f64,
}

impl Seasonal {
    fn new(per_day: usize, alpha: f64) -> Self {
        Self {
            per_day,
            means: vec![0.0; per_day],
            counts: vec![0.0; per_day],
            alpha: alpha.clamp(1e-6, 1.0),
            var: 0.0,
            var_n: 0.0,
        }
    }

    fn phase(&self, at: NaiveDateTime) -> usize {
        let seconds = at.num_seconds_from_midnight() as usize;
        (seconds * self.per_day / 86_400).min(self.per_day - 1)
    }

    /// Surprise in [0, 1] of `value` at `at`, from its distance to the mean
    /// of earlier values at that time of day in residual standard
    /// deviations (saturating at 6), before it is learnt; then learns it.
    fn observe(&mut self, at: NaiveDateTime, value: f64, min_sd: f64) -> f64 {
        if self.per_day == 0 {
            return 0.0;
        }
        let b = self.phase(at);
        let mut surprise = 0.0;
        if self.counts[b] > 0.0 {
            let r = value - self.means[b];
            if self.var_n >= SEASON_MIN_RESIDUALS {
                let sd = self.var.sqrt().max(min_sd);
                surprise = (r.abs() / sd / 6.0).min(1.0);
            }
            let a = 1.0 / (self.var_n + 1.0).min(SEASON_SPREAD_MEMORY);
            self.var += a * (r * r - self.var);
            self.var_n += 1.0;
        }
        self.counts[b] += 1.0;
        let a = (1.0 / self.counts[b]).max(self.alpha);
        self.means[b] += a * (value - self.means[b]);
        surprise
    }

    /// After the value range was narrowed to `[min, max]`: phase means
    /// outside it (pulled there by the extreme values just forgotten) are
    /// learnt afresh, and the residual spread is at most `var` (the recent
    /// values' variance) and follows new residuals at a rate of at least
    /// 1/`memory`.
    fn forget_extremes(&mut self, min: f64, max: f64, var: f64, memory: usize) {
        for (mean, count) in self.means.iter_mut().zip(&mut self.counts) {
            if !(min..=max).contains(mean) {
                (*mean, *count) = (0.0, 0.0);
            }
        }
        self.var = self.var.min(var);
        self.var_n = self.var_n.min(memory as f64);
    }
}

/// The streaming detector (module docs: what it computes per point, and
/// the bound on how long extreme values can blind it). Feed it points in
/// order with [`update`](Self::update) or, with timestamps,
/// [`update_at`](Self::update_at); scores are in [0, 1].
#[derive(Debug, Clone)]
pub struct StreamDetector {
    config: StreamConfig,
    values: DecayingHistogram,
    changes: DecayingHistogram,
    previous: Option<f64>,
    /// Exponentially weighted mean and variance of the value.
    ew_mean: f64,
    ew_var: f64,
    value_likelihood: Likelihood,
    sequence: SequenceModel,
    sequence_likelihood: Likelihood,
    tail: TailCounter,
    seasonal: Seasonal,
    seen: usize,
    suppressed_until: usize,
}

impl StreamDetector {
    pub fn new(config: StreamConfig) -> Self {
        Self {
            values: DecayingHistogram::new(config.bins, config.half_life, config.range_memory),
            changes: DecayingHistogram::new(config.bins, config.half_life, config.range_memory),
            previous: None,
            ew_mean: 0.0,
            ew_var: 0.0,
            value_likelihood: Likelihood::new(config.short_window, config.long_window),
            sequence: SequenceModel::new(
                config.sequence_levels,
                config.sequence_order,
                config.half_life,
            ),
            sequence_likelihood: Likelihood::new(config.short_window, config.long_window),
            tail: TailCounter::new(config.calibration_half_life),
            seasonal: Seasonal::new(config.season_buckets, config.season_alpha),
            seen: 0,
            suppressed_until: 0,
            config,
        }
    }

    /// Scores the next point: 0 is normal, 1 is as anomalous as it gets.
    pub fn update(&mut self, value: f64) -> f64 {
        self.step(None, value)
    }

    /// Scores the next point, also comparing it with what was seen at the
    /// same time of day before.
    pub fn update_at(&mut self, at: NaiveDateTime, value: f64) -> f64 {
        self.step(Some(at), value)
    }

    fn step(&mut self, at: Option<NaiveDateTime>, value: f64) -> f64 {
        let value_surprise = self.values.observe(value);
        if self.values.rebuilt {
            // Extremes were forgotten: what was learnt on their scale goes too.
            let (mean, var) = self.values.recent_moments();
            (self.ew_mean, self.ew_var) = (mean, var);
            let (min, max) = (self.values.min, self.values.max);
            self.seasonal
                .forget_extremes(min, max, var, self.config.range_memory);
            // Levels are positions in the range: with a new range, what the
            // sequence model learnt no longer means the same levels.
            self.sequence = SequenceModel::new(
                self.config.sequence_levels,
                self.config.sequence_order,
                self.config.half_life,
            );
            self.sequence_likelihood =
                Likelihood::new(self.config.short_window, self.config.long_window);
        }
        let change_surprise = match self.previous {
            Some(previous) => self.changes.observe(value - previous),
            None => 0.0,
        };
        // Distance from the recent level, in recent standard deviations.
        let alpha = 1.0 / self.config.half_life.max(2.0);
        let deviation_surprise = if self.previous.is_none() {
            self.ew_mean = value;
            0.0
        } else {
            let sd = self.ew_var.sqrt().max(1e-9 + 1e-6 * self.ew_mean.abs());
            let z = (value - self.ew_mean).abs() / sd;
            let diff = value - self.ew_mean;
            self.ew_mean += alpha * diff;
            self.ew_var = (1.0 - alpha) * (self.ew_var + alpha * diff * diff);
            (z / 6.0).min(1.0)
        };
        self.previous = Some(value);
        let mut raw = value_surprise.max(change_surprise).max(deviation_surprise);
        if let Some(at) = at {
            // Far from what this time of day usually brings: one more raw
            // surprise, through the same likelihood and calibration.
            let min_sd = 1e-9 + 1e-6 * self.ew_mean.abs();
            raw = raw.max(self.seasonal.observe(at, value, min_sd));
        }
        let mut z = self.value_likelihood.push(raw);
        if self.config.sequence_order > 0 {
            // Levels over the range as it stands after this value.
            let level = (self.values.position(value) * self.config.sequence_levels as f64) as usize;
            let sequence_surprise = self.sequence.observe(level);
            let sequence_z = self.sequence_likelihood.push(sequence_surprise);
            // After the levels were redrawn, the sequence model counts only
            // once it has a warm-up's worth of surprises again (from the
            // start this holds whenever any score is reported).
            if self.sequence_likelihood.long.len() > self.config.warm_up {
                z = z.max(sequence_z);
            }
        }

        self.seen += 1;
        if self.seen <= self.config.warm_up
            || self.value_likelihood.long.len() < self.config.short_window
        {
            return 0.0;
        }
        let mut score = normal_cdf(z);
        if self.config.calibration_half_life > 0.0 {
            let share = self.tail.share_at_least(z);
            self.tail.push(z);
            // Rounding can push the share a hair above 1.
            score = score.min((1.0 - share).max(0.0));
        }
        if value_surprise >= 1.0 {
            // A value beyond anything seen so far is reported at once: the
            // likelihood would only catch up a few points later.
            score = score.max(NEW_EXTREME_SCORE);
        }
        if self.seen < self.suppressed_until {
            score *= SUPPRESSED;
        } else if score >= self.config.alarm_level {
            self.suppressed_until = self.seen + self.config.suppress_for;
        }
        score
    }
}

/// Scores a whole series with timestamps, using the seasonal model.
pub fn score_at(timestamps: &[NaiveDateTime], values: &[f64], config: &StreamConfig) -> Vec<f64> {
    let mut detector = StreamDetector::new(config.clone());
    timestamps
        .iter()
        .zip(values)
        .map(|(&t, &v)| detector.update_at(t, v))
        .collect()
}

/// Scores a whole series.
pub fn score(values: &[f64], config: &StreamConfig) -> Vec<f64> {
    let mut detector = StreamDetector::new(config.clone());
    values.iter().map(|&v| detector.update(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max(scores: &[f64]) -> f64 {
        scores.iter().copied().fold(0.0, f64::max)
    }

    #[test]
    fn a_level_jump_in_a_steady_series_scores_high_and_normal_points_low() {
        let values: Vec<f64> = (0..3000)
            .map(|i| {
                let base = 10.0 + (i as f64 * 0.2).sin();
                if (2000..2100).contains(&i) {
                    base + 25.0
                } else {
                    base
                }
            })
            .collect();
        let config = StreamConfig::default();
        let scores = score(&values, &config);
        let before = max(&scores[1000..1990]);
        let during = max(&scores[2000..2010]);
        assert!(during > 0.99, "{during}");
        assert!(before < config.alarm_level, "{before} {during}");
    }

    #[test]
    fn scores_are_probabilities_and_need_no_future() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 11) as f64 + if i == 400 { 30.0 } else { 0.0 })
            .collect();
        let all = score(&values, &StreamConfig::default());
        let half = score(&values[..500], &StreamConfig::default());
        assert_eq!(&all[..500], &half[..]);
        assert!(all.iter().all(|s| (0.0..=1.0).contains(s)));
        // The comparison above means something only if the prefix is not all zeros.
        assert!(max(&all[400..500]) > 0.99);
    }

    #[test]
    fn the_tail_counter_reports_the_share_reaching_a_level() {
        let mut tail = TailCounter::new(1e12);
        assert_eq!(tail.share_at_least(3.0), 0.0);
        for z in [0.0, 0.0, 1.0, 5.0] {
            tail.push(z);
        }
        assert!((tail.share_at_least(1.0) - 0.5).abs() < 1e-9);
        assert!((tail.share_at_least(4.9) - 0.25).abs() < 1e-9);
        assert_eq!(tail.share_at_least(6.0), 0.0);
        // Old counts fade: after many low values, the old 5.0 is a tiny share.
        let mut fading = TailCounter::new(10.0);
        fading.push(5.0);
        for _ in 0..200 {
            fading.push(0.0);
        }
        assert!(fading.share_at_least(5.0) < 1e-4);
    }

    #[test]
    fn a_burst_that_keeps_recurring_alarms_less_often() {
        // A short burst to a mid-range level every 200 points, in low noise.
        // One early point at 10 fixes the range, so the bursts are never new
        // extremes and only calibration can tell a familiar one apart.
        let values: Vec<f64> = (0..8000)
            .map(|i| {
                let noise = ((i * 7919) % 13) as f64 * 0.01;
                let burst = if i % 200 < 4 && i >= 200 { 5.0 } else { 0.0 };
                let top = if i == 100 { 10.0 } else { 0.0 };
                1.0 + noise + burst + top
            })
            .collect();
        let config = StreamConfig::default();
        let alarms = |scores: &[f64]| {
            (20..40)
                .filter(|k| max(&scores[k * 200..k * 200 + 20]) >= config.alarm_level)
                .count()
        };
        let calibrated = score(&values, &config);
        let uncalibrated = score(
            &values,
            &StreamConfig {
                calibration_half_life: 0.0,
                ..config.clone()
            },
        );
        assert!(max(&calibrated[200..220]) > 0.99);
        assert!(
            alarms(&calibrated) < alarms(&uncalibrated),
            "{} {}",
            alarms(&calibrated),
            alarms(&uncalibrated)
        );
    }

    #[test]
    fn familiar_values_in_an_unfamiliar_order_are_noticed() {
        // A triangle 0 1 2 3 2 1, then for a while 0 1 0 1: every value and
        // every step of ±1 is common, only the order is new.
        let triangle = [0.0, 1.0, 2.0, 3.0, 2.0, 1.0];
        let values: Vec<f64> = (0..4000)
            .map(|i| {
                if (3000..3030).contains(&i) {
                    (i % 2) as f64
                } else {
                    triangle[i % 6]
                }
            })
            .collect();
        let with = score(&values, &StreamConfig::default());
        let without = score(
            &values,
            &StreamConfig {
                sequence_order: 0,
                ..StreamConfig::default()
            },
        );
        let during = max(&with[3000..3040]);
        assert!(during > 0.99, "{during}");
        assert!(max(&with[2000..2990]) < 0.5);
        assert!(max(&without[3000..3040]) < 0.5);
    }

    /// Five-minute samples of a daily cycle with a little noise; on day 12
    /// the daytime peak is missing: from 6:00 to 18:00 the value stays at the
    /// daily mean, which the series passes through twice every day.
    fn daily_with_a_missing_peak() -> (Vec<NaiveDateTime>, Vec<f64>, std::ops::Range<usize>) {
        let start = chrono::NaiveDate::from_ymd_opt(2014, 4, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        let per_day = 288;
        let missing = 12 * per_day + 72..12 * per_day + 216;
        let timestamps = (0..16 * per_day)
            .map(|i| start + chrono::Duration::minutes(5 * i as i64))
            .collect();
        let values = (0..16 * per_day)
            .map(|i| {
                let hash = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let noise = (hash as f64 / (1u64 << 24) as f64 - 0.5) * 0.4;
                let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
                let cycle = if missing.contains(&i) {
                    0.0
                } else {
                    30.0 * (phase - std::f64::consts::FRAC_PI_2).sin()
                };
                50.0 + cycle + noise
            })
            .collect();
        (timestamps, values, missing)
    }

    #[test]
    fn a_value_normal_for_the_day_but_not_for_the_hour_is_noticed_with_timestamps() {
        let (timestamps, values, missing) = daily_with_a_missing_peak();
        let config = StreamConfig::default();
        let with = score_at(&timestamps, &values, &config);
        let without = score(&values, &config);
        let during = |s: &[f64]| max(&s[missing.start..missing.end + 10]);
        // Days 2 to 11 are normal days: no alarm.
        let normal = 2 * 288..12 * 288;
        assert!(
            max(&with[normal.clone()]) < config.alarm_level,
            "{}",
            max(&with[normal])
        );
        assert!(during(&with) >= config.alarm_level, "{}", during(&with));
        // Without timestamps every value, step and order is familiar.
        assert!(
            during(&without) < config.alarm_level,
            "{}",
            during(&without)
        );
    }

    #[test]
    fn timestamped_scores_are_probabilities_and_need_no_future() {
        let (timestamps, values, missing) = daily_with_a_missing_peak();
        let config = StreamConfig::default();
        let all = score_at(&timestamps, &values, &config);
        let cut = missing.start + 50;
        let part = score_at(&timestamps[..cut], &values[..cut], &config);
        assert_eq!(&all[..cut], &part[..]);
        assert!(all.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(max(&all[missing.start..cut]) > 0.99);
    }

    #[test]
    fn without_timestamps_or_phases_the_seasonal_model_is_inert() {
        let (timestamps, values, _) = daily_with_a_missing_peak();
        let config = StreamConfig::default();
        let off = StreamConfig {
            season_buckets: 0,
            ..config.clone()
        };
        assert_eq!(
            score(&values, &config),
            score_at(&timestamps, &values, &off)
        );
    }

    /// SplitMix64's output function: a well-mixed hash of `i`, uniform in
    /// [0, 1). (A bare multiplicative hash of consecutive `i` is a Weyl
    /// sequence, which the sequence model learns to predict.)
    fn uniform(i: u64) -> f64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }

    /// Uniform noise in [1, 2] (a fixed hash, so runs repeat), with
    /// `extremes` put in place, the level raised by `shift.1` from row
    /// `shift.0` on, and one spike to `spike.1` above the level at `spike.0`.
    fn blinded(extremes: &[(usize, f64)], shift: (usize, f64), spike: (usize, f64)) -> Vec<f64> {
        (0..spike.0 + 20)
            .map(|i| {
                let level = if i >= shift.0 { shift.1 } else { 0.0 };
                let noise = 1.0 + uniform(i as u64);
                if let Some(&(_, x)) = extremes.iter().find(|(at, _)| *at == i) {
                    x
                } else if i == spike.0 {
                    level + spike.1
                } else {
                    level + noise
                }
            })
            .collect()
    }

    #[test]
    fn a_few_extreme_values_blind_the_detector_for_at_most_range_memory_points() {
        let config = StreamConfig::default();
        let start = chrono::NaiveDate::from_ymd_opt(2014, 4, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        let burst =
            |x: f64, n: usize| -> Vec<(usize, f64)> { (2000..2000 + n).map(|i| (i, x)).collect() };
        // (name, extremes, level shift, spike above the level)
        type Case = (&'static str, Vec<(usize, f64)>, (usize, f64), f64);
        let cases: Vec<Case> = vec![
            ("one 1e6", burst(1e6, 1), (usize::MAX, 0.0), 8.0),
            ("one 1e12", burst(1e12, 1), (usize::MAX, 0.0), 8.0),
            ("one 1e3", burst(1e3, 1), (usize::MAX, 0.0), 8.0),
            ("one -1e6, spike up", burst(-1e6, 1), (usize::MAX, 0.0), 8.0),
            (
                "one -1e6, spike down",
                burst(-1e6, 1),
                (usize::MAX, 0.0),
                -5.0,
            ),
            (
                "1e6 then -1e6",
                vec![(2000, 1e6), (2100, -1e6)],
                (usize::MAX, 0.0),
                8.0,
            ),
            ("five 1e6", burst(1e6, 5), (usize::MAX, 0.0), 8.0),
            ("eight 1e6", burst(1e6, 8), (usize::MAX, 0.0), 8.0),
            ("1e6 then a level change", burst(1e6, 1), (2200, 10.0), 18.0),
            (
                "1e6 then a level change down",
                burst(1e6, 1),
                (2200, -10.0),
                -6.0,
            ),
            (
                "1e6 then a small level change",
                burst(1e6, 1),
                (2100, 4.0),
                4.0,
            ),
        ];
        // The last extreme is at row 2100 at the latest: from 2100 +
        // 1.1 × range_memory (and a margin for the sequence model to
        // settle) on, a spike is seen again.
        let from = 2100 + config.range_memory * 11 / 10 + 50;
        assert!(from <= 2800);
        for (name, extremes, shift, spike) in cases {
            for at in [from, 3000, 4000, 7777, 12000, 19000] {
                let values = blinded(&extremes, shift, (at, spike));
                let timestamps: Vec<NaiveDateTime> = (0..values.len())
                    .map(|i| start + chrono::Duration::minutes(5 * i as i64))
                    .collect();
                let plain = score(&values, &config)[at];
                let timed = score_at(&timestamps, &values, &config)[at];
                assert!(
                    plain >= 0.99 && timed >= 0.99,
                    "{name}, spike at {at}: {plain} {timed}"
                );
            }
        }
    }

    #[test]
    fn without_range_memory_one_extreme_blinds_the_detector() {
        // The test above can fail: with ranges kept for good the spike is lost.
        let config = StreamConfig {
            range_memory: 0,
            ..StreamConfig::default()
        };
        let values = blinded(&[(2000, 1e6)], (usize::MAX, 0.0), (3000, 8.0));
        assert!(score(&values, &config)[3000] < 0.5);
    }

    #[test]
    fn a_recurring_burst_keeps_its_place_in_the_range() {
        // Bursts of ten points to 100 every 2000 points: more than a few
        // points lie up there, so the range keeps them and a burst is no new
        // extreme (it would score NEW_EXTREME_SCORE if it were).
        let values: Vec<f64> = (0..20_000)
            .map(|i| {
                let burst = if i % 2000 < 10 && i >= 1000 {
                    100.0
                } else {
                    0.0
                };
                1.0 + uniform(i as u64) + burst
            })
            .collect();
        let mut detector = StreamDetector::new(StreamConfig::default());
        for (i, &v) in values.iter().enumerate() {
            detector.update(v);
            if i > 12_000 {
                assert!(
                    detector.values.max > 100.0,
                    "row {i}: {}",
                    detector.values.max
                );
            }
        }
    }

    #[test]
    fn memory_does_not_grow_with_the_stream() {
        let mut detector = StreamDetector::new(StreamConfig::default());
        for i in 0..50_000 {
            detector.update((i % 97) as f64);
        }
        assert!(detector.value_likelihood.long.len() <= StreamConfig::default().long_window);
        assert_eq!(detector.sequence.totals.len(), 1 << SEQUENCE_ROWS_LOG2);
        let start = chrono::NaiveDate::from_ymd_opt(2014, 4, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        for i in 0..50_000 {
            let at = start + chrono::Duration::seconds(37 * i);
            detector.update_at(at, (i % 97) as f64);
        }
        assert_eq!(
            detector.seasonal.means.len(),
            StreamConfig::default().season_buckets
        );
    }
}
