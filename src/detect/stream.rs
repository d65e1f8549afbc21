//! A streaming anomaly detector for any regularly sampled series
//! (`draco detect`, `draco bench nab`).
//!
//! Per point, in O(1) time and memory bounded by its windows:
//! 1. **Surprise.** The value and its change since the previous point are
//!    placed in bins over the range seen so far; the rarer a bin has been
//!    (counts that decay, so old behaviour is forgotten), the more surprising
//!    the point. The raw score is the larger of the two surprises, in [0, 1].
//! 2. **Likelihood.** Like HTM's anomaly likelihood: the mean raw score of the
//!    last few points is compared with the distribution of raw scores over a
//!    long window; a short run of unusual surprise is what gets reported,
//!    not one odd point in a noisy series.
//!    A value beyond the whole range seen so far is reported at once.
//! 3. **Suppression.** After a strong report, scores are damped for a while:
//!    one incident is one alarm, not a pager storm.
//!
//! The score at point *t* depends only on points up to *t*.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Value bins over the observed range.
    pub bins: usize,
    /// Half-life of bin counts, in points.
    pub half_life: f64,
    /// Points averaged for the short-term surprise.
    pub short_window: usize,
    /// Points whose raw scores form the reference distribution.
    pub long_window: usize,
    /// Points before any score is reported.
    pub warm_up: usize,
    /// A report above this is an alarm; later scores are damped for `suppress_for` points.
    pub alarm_level: f64,
    pub suppress_for: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            bins: 16,
            half_life: 8000.0,
            short_window: 8,
            long_window: 3000,
            warm_up: 150,
            alarm_level: 0.99,
            suppress_for: 150,
        }
    }
}

/// Exponentially decaying histogram over a growing [min, max] range.
#[derive(Debug, Clone)]
struct DecayingHistogram {
    counts: Vec<f64>,
    total: f64,
    decay: f64,
    min: f64,
    max: f64,
    seen: bool,
}

impl DecayingHistogram {
    fn new(bins: usize, half_life: f64) -> Self {
        Self {
            counts: vec![0.0; bins],
            total: 0.0,
            decay: 0.5f64.powf(1.0 / half_life.max(1.0)),
            min: 0.0,
            max: 0.0,
            seen: false,
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
        surprise
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

/// Score of a value outside the whole range seen so far.
const NEW_EXTREME_SCORE: f64 = 0.9995;

/// Standard normal upper-tail complement: Φ(z), via erfc (Abramowitz–Stegun 7.1.26).
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

#[derive(Debug, Clone)]
pub struct StreamDetector {
    config: StreamConfig,
    values: DecayingHistogram,
    changes: DecayingHistogram,
    previous: Option<f64>,
    /// Exponentially weighted mean and variance of the value.
    ew_mean: f64,
    ew_var: f64,
    short: RollingMoments,
    long: RollingMoments,
    seen: usize,
    suppressed_until: usize,
}

impl StreamDetector {
    pub fn new(config: StreamConfig) -> Self {
        Self {
            values: DecayingHistogram::new(config.bins, config.half_life),
            changes: DecayingHistogram::new(config.bins, config.half_life),
            previous: None,
            ew_mean: 0.0,
            ew_var: 0.0,
            short: RollingMoments::new(config.short_window),
            long: RollingMoments::new(config.long_window),
            seen: 0,
            suppressed_until: 0,
            config,
        }
    }

    /// Scores the next point: 0 is normal, 1 is as anomalous as it gets.
    pub fn update(&mut self, value: f64) -> f64 {
        let value_surprise = self.values.observe(value);
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
        let raw = value_surprise.max(change_surprise).max(deviation_surprise);

        self.short.push(raw);
        let reference = (self.long.mean(), self.long.std().max(0.01));
        self.long.push(raw);
        self.seen += 1;
        if self.seen <= self.config.warm_up || self.long.len() < self.config.short_window {
            return 0.0;
        }
        let z = (self.short.mean() - reference.0)
            / (reference.1 / (self.config.short_window as f64).sqrt());
        let mut score = normal_cdf(z);
        if value_surprise >= 1.0 {
            // A value beyond anything seen so far is reported at once: the
            // likelihood would only catch up a few points later.
            score = score.max(NEW_EXTREME_SCORE);
        }
        if self.seen < self.suppressed_until {
            score *= 0.5;
        } else if score >= self.config.alarm_level {
            self.suppressed_until = self.seen + self.config.suppress_for;
        }
        score
    }
}

/// Scores a whole series.
pub fn score(values: &[f64], config: &StreamConfig) -> Vec<f64> {
    let mut detector = StreamDetector::new(config.clone());
    values.iter().map(|&v| detector.update(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let scores = score(&values, &StreamConfig::default());
        let before = scores[1000..1990].iter().cloned().fold(0.0, f64::max);
        let during = scores[2000..2010].iter().cloned().fold(0.0, f64::max);
        assert!(during > 0.99, "{during}");
        assert!(before < during, "{before} {during}");
    }

    #[test]
    fn scores_are_probabilities_and_need_no_future() {
        let values: Vec<f64> = (0..500).map(|i| ((i * 37) % 11) as f64).collect();
        let all = score(&values, &StreamConfig::default());
        let half = score(&values[..250], &StreamConfig::default());
        assert_eq!(&all[..250], &half[..]);
        assert!(all.iter().all(|s| (0.0..=1.0).contains(s)));
    }
}
