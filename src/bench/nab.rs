//! Scoring on the Numenta Anomaly Benchmark (NAB), re-implemented from its
//! published rules (`../shared/data/nab/SCORING.md`): anomaly windows, a
//! probationary period, the scaled sigmoid that rewards early detection,
//! application profiles, one threshold per profile swept over the whole
//! corpus, and normalisation between the null and the perfect detector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::detect::series_csv::{self, SeriesCsvError};
use crate::detect::stream::{self, StreamConfig};

/// Costs of one application profile (NAB `config/profiles.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// One labelled series.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSeries {
    /// Relative path, e.g. `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    pub timestamps: Vec<NaiveDateTime>,
    pub values: Vec<f64>,
    /// Anomaly windows as inclusive row ranges.
    pub windows: Vec<(usize, usize)>,
    /// Rows whose timestamp repeats or goes back from the previous row's
    /// (NAB's CloudWatch files repeat an hour at a daylight-saving change);
    /// they are scored in file order, as NAB does.
    pub out_of_order: usize,
}

impl LabeledSeries {
    /// Rows NAB ignores at the start of every file: 15 %, at most 750.
    pub fn probation(&self) -> usize {
        probation(self.values.len())
    }
}

pub fn probation(rows: usize) -> usize {
    ((0.15 * rows as f64).floor() as usize).min(750)
}

/// NAB's scaled sigmoid: 2·sigmoid(−5y) − 1, and −1 far after a window.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Where a row stands relative to the windows, for scoring a detection there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowWeight {
    /// Inside window `index`: the reward if this is the window's first detection.
    InWindow { window: usize, value: f64 },
    /// Outside every window: the (negative) value of a false positive here.
    Outside { value: f64 },
}

/// The weight of a detection at each row, for one profile.
pub fn row_weights(rows: usize, windows: &[(usize, usize)], profile: &Profile) -> Vec<RowWeight> {
    let max_tp = scaled_sigmoid(-1.0);
    let mut weights = Vec::with_capacity(rows);
    let mut previous: Option<(usize, usize)> = None; // (right index, width)
    let mut next_window = 0;
    for i in 0..rows {
        while next_window < windows.len() && windows[next_window].1 < i {
            let (left, right) = windows[next_window];
            previous = Some((right, right - left + 1));
            next_window += 1;
        }
        let inside = windows
            .get(next_window)
            .filter(|(left, right)| *left <= i && i <= *right);
        let weight = match inside {
            Some(&(left, right)) => {
                let width = (right - left + 1) as f64;
                let y = -((right - i + 1) as f64) / width;
                RowWeight::InWindow {
                    window: next_window,
                    value: scaled_sigmoid(y) * profile.tp / max_tp,
                }
            }
            None => {
                let unweighted = match previous {
                    None => -1.0,
                    Some((right, width)) => {
                        let denominator = (width as f64 - 1.0).max(1.0);
                        scaled_sigmoid((i - right) as f64 / denominator)
                    }
                };
                RowWeight::Outside {
                    value: unweighted * profile.fp,
                }
            }
        };
        weights.push(weight);
    }
    weights
}

/// Raw NAB score of one file for detections at `scores >= threshold`.
pub fn file_score(
    series: &LabeledSeries,
    scores: &[f64],
    threshold: f64,
    profile: &Profile,
) -> f64 {
    let weights = row_weights(series.values.len(), &series.windows, profile);
    let mut best: Vec<Option<f64>> = vec![None; series.windows.len()];
    let mut false_positives = 0.0;
    for (i, (&score, weight)) in scores
        .iter()
        .zip(&weights)
        .enumerate()
        .skip(series.probation())
    {
        if score < threshold {
            continue;
        }
        match *weight {
            RowWeight::InWindow { window, value } => {
                let slot = &mut best[window];
                *slot = Some(slot.map_or(value, |b: f64| b.max(value)));
            }
            RowWeight::Outside { value } => false_positives += value,
        }
        let _ = i;
    }
    best.iter().map(|b| b.unwrap_or(-profile.fn_)).sum::<f64>() + false_positives
}

/// The result of sweeping one profile's threshold over a corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileResult {
    pub profile: &'static str,
    pub threshold: f64,
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
    /// 100 × (raw − null) / (perfect − null).
    pub normalized: f64,
}

/// Finds the single threshold that maximises the corpus raw score (NAB's
/// optimiser, done exactly by sweeping every distinct score downwards).
pub fn sweep(corpus: &[LabeledSeries], scores: &[Vec<f64>], profile: &Profile) -> ProfileResult {
    struct Point {
        score: f64,
        window: Option<usize>,
        value: f64,
    }
    let mut points = Vec::new();
    let mut window_offset = 0;
    for (series, file_scores) in corpus.iter().zip(scores) {
        let weights = row_weights(series.values.len(), &series.windows, profile);
        for (i, weight) in weights.iter().enumerate().skip(series.probation()) {
            let score = file_scores.get(i).copied().unwrap_or(0.0);
            let (window, value) = match *weight {
                RowWeight::InWindow { window, value } => (Some(window_offset + window), value),
                RowWeight::Outside { value } => (None, value),
            };
            points.push(Point {
                score,
                window,
                value,
            });
        }
        window_offset += series.windows.len();
    }
    let windows = window_offset;
    points.sort_by(|a, b| b.score.total_cmp(&a.score));

    let null = -profile.fn_ * windows as f64;
    let perfect = profile.tp * windows as f64;
    let mut best_in_window: Vec<Option<f64>> = vec![None; windows];
    let mut raw = null;
    let mut best = (1.1, null);
    let mut i = 0;
    while i < points.len() {
        let threshold = points[i].score;
        while i < points.len() && points[i].score == threshold {
            let p = &points[i];
            match p.window {
                Some(w) => match best_in_window[w] {
                    None => {
                        raw += p.value + profile.fn_;
                        best_in_window[w] = Some(p.value);
                    }
                    Some(previous) if p.value > previous => {
                        raw += p.value - previous;
                        best_in_window[w] = Some(p.value);
                    }
                    Some(_) => {}
                },
                None => raw += p.value,
            }
            i += 1;
        }
        if raw > best.1 {
            best = (threshold, raw);
        }
    }
    ProfileResult {
        profile: profile.name,
        threshold: best.0,
        raw: best.1,
        null,
        perfect,
        normalized: if perfect > null {
            100.0 * (best.1 - null) / (perfect - null)
        } else {
            0.0
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A data file the series reader refused (a row that cannot be parsed).
    #[error(transparent)]
    Series(#[from] SeriesCsvError),
}

/// Accepts what [`series_csv::parse_timestamp`] accepts (NAB's label files
/// use `YYYY-MM-DD HH:MM:SS.ffffff`).
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    series_csv::parse_timestamp(text)
}

/// Loads every CSV under `root/data`, with windows from `root/labels/combined_windows.json`.
pub fn load_corpus(root: &Path) -> Result<Vec<LabeledSeries>, CorpusError> {
    let windows_path = root.join("labels/combined_windows.json");
    let windows_text = std::fs::read_to_string(&windows_path).map_err(|e| CorpusError::File {
        path: windows_path.display().to_string(),
        message: e.to_string(),
    })?;
    let all_windows: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&windows_text)
        .map_err(|e| CorpusError::File {
            path: windows_path.display().to_string(),
            message: e.to_string(),
        })?;
    let data = root.join("data");
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| CorpusError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "csv") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut corpus = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&data)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let series = series_csv::read(&path)?;
        let (timestamps, values) = (series.timestamps(), series.values());
        let mut windows = Vec::new();
        for (start, end) in all_windows.get(&name).cloned().unwrap_or_default() {
            let (Some(start), Some(end)) = (parse_timestamp(&start), parse_timestamp(&end)) else {
                return Err(CorpusError::File {
                    path: windows_path.display().to_string(),
                    message: format!("bad window for {name}"),
                });
            };
            // By position, like NAB: the row at the window's start (or the
            // first after it) to the row at its end (or the last before it).
            let left = timestamps
                .iter()
                .position(|t| *t == start)
                .or_else(|| timestamps.iter().position(|t| *t >= start));
            let right = timestamps
                .iter()
                .rposition(|t| *t == end)
                .or_else(|| timestamps.iter().rposition(|t| *t <= end));
            if let (Some(left), Some(right)) = (left, right)
                && left <= right
            {
                windows.push((left, right));
            }
        }
        corpus.push(LabeledSeries {
            name,
            timestamps,
            values,
            windows,
            out_of_order: series.out_of_order,
        });
    }
    Ok(corpus)
}

/// The settings `examples/nab_tune.rs` and `draco bench nab --two-fold`
/// search: 3 values each of the five settings that moved the score most
/// when the detector was written, centred on the shipped defaults (which
/// are in the grid: a test checks it), the rest at their defaults. 243
/// settings.
pub fn tuning_grid() -> Vec<StreamConfig> {
    let default = StreamConfig::default();
    let mut grid = Vec::new();
    for alarm_level in [0.995, 0.998, 0.999] {
        for half_life in [8000.0, 16000.0, 32000.0] {
            for short_window in [7, 10, 13] {
                for long_window in [3000, 6000, 9000] {
                    for suppress_for in [100, 150, 200] {
                        grid.push(StreamConfig {
                            alarm_level,
                            half_life,
                            short_window,
                            long_window,
                            suppress_for,
                            ..default.clone()
                        });
                    }
                }
            }
        }
    }
    grid
}

/// Scores every series with `config`, with the time-of-day model when
/// `timestamps` is true (as `draco detect` does) or on the values alone.
pub fn score_corpus(
    corpus: &[LabeledSeries],
    config: &StreamConfig,
    timestamps: bool,
) -> Vec<Vec<f64>> {
    corpus
        .iter()
        .map(|s| {
            if timestamps {
                stream::score_at(&s.timestamps, &s.values, config)
            } else {
                stream::score(&s.values, config)
            }
        })
        .collect()
}

/// Normalised score (as in [`ProfileResult::normalized`]) of a corpus at a
/// fixed threshold, e.g. one chosen on other files.
pub fn normalized_at(
    corpus: &[LabeledSeries],
    scores: &[Vec<f64>],
    threshold: f64,
    profile: &Profile,
) -> f64 {
    let windows: usize = corpus.iter().map(|s| s.windows.len()).sum();
    let null = -profile.fn_ * windows as f64;
    let perfect = profile.tp * windows as f64;
    let raw: f64 = corpus
        .iter()
        .zip(scores)
        .map(|(s, sc)| file_score(s, sc, threshold, profile))
        .sum();
    if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        0.0
    }
}

/// One half of the two-fold check: settings tuned on one half of the files,
/// scored on the other (standard profile).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fold {
    /// `odd` (files 1, 3, 5, … in path order) or `even`.
    pub tuned_on: &'static str,
    /// Position of the chosen settings in [`tuning_grid`].
    pub setting: usize,
    pub shipped_defaults_chosen: bool,
    /// Score of the chosen settings on the files they were tuned on.
    pub tuned_score: f64,
    /// On the held-out half, with the threshold re-chosen there.
    pub held_out_rechosen: f64,
    /// On the held-out half, at the threshold chosen on the tuning half.
    pub held_out_training_threshold: f64,
}

/// Tunes on the odd-numbered files and scores the even ones, then the
/// reverse: how much of the score is owed to tuning on the files scored.
/// Each setting of `grid` scores the whole corpus once.
pub fn two_fold(corpus: &[LabeledSeries], grid: &[StreamConfig], timestamps: bool) -> [Fold; 2] {
    let profile = &PROFILES[0];
    let half = |parity: usize| -> Vec<usize> { (parity..corpus.len()).step_by(2).collect() };
    let halves = [half(0), half(1)];
    let pick = |indices: &[usize], scores: &[Vec<f64>]| -> (Vec<LabeledSeries>, Vec<Vec<f64>>) {
        indices
            .iter()
            .map(|&i| (corpus[i].clone(), scores[i].clone()))
            .unzip()
    };
    // Per setting and half: (sweep on it, score of the other half at its threshold).
    let mut results: Vec<[(ProfileResult, f64, f64); 2]> = Vec::with_capacity(grid.len());
    for config in grid {
        let scores = score_corpus(corpus, config, timestamps);
        let (odd, odd_scores) = pick(&halves[0], &scores);
        let (even, even_scores) = pick(&halves[1], &scores);
        let on_odd = sweep(&odd, &odd_scores, profile);
        let on_even = sweep(&even, &even_scores, profile);
        let even_at_odd = normalized_at(&even, &even_scores, on_odd.threshold, profile);
        let odd_at_even = normalized_at(&odd, &odd_scores, on_even.threshold, profile);
        let even_rechosen = on_even.normalized;
        let odd_rechosen = on_odd.normalized;
        results.push([
            (on_odd, even_rechosen, even_at_odd),
            (on_even, odd_rechosen, odd_at_even),
        ]);
    }
    let default = StreamConfig::default();
    let fold = |k: usize| -> Fold {
        let (setting, best) = results
            .iter()
            .enumerate()
            .max_by(|a, b| a.1[k].0.normalized.total_cmp(&b.1[k].0.normalized))
            .map(|(i, r)| (i, r[k].clone()))
            .unwrap_or((0, (sweep(&[], &[], profile), 0.0, 0.0)));
        Fold {
            tuned_on: if k == 0 { "odd" } else { "even" },
            setting,
            shipped_defaults_chosen: grid.get(setting) == Some(&default),
            tuned_score: best.0.normalized,
            held_out_rechosen: best.1,
            held_out_training_threshold: best.2,
        }
    };
    [fold(0), fold(1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rows: usize, windows: Vec<(usize, usize)>) -> LabeledSeries {
        let start = parse_timestamp("2026-01-01 00:00:00").unwrap();
        LabeledSeries {
            name: "t.csv".into(),
            timestamps: (0..rows)
                .map(|i| start + chrono::Duration::minutes(5 * i as i64))
                .collect(),
            values: vec![0.0; rows],
            windows,
            out_of_order: 0,
        }
    }

    #[test]
    fn null_scores_zero_and_perfect_scores_one_hundred() {
        let corpus = vec![
            series(1000, vec![(300, 349), (700, 749)]),
            series(800, vec![(500, 539)]),
        ];
        let null: Vec<Vec<f64>> = corpus.iter().map(|s| vec![0.0; s.values.len()]).collect();
        let perfect: Vec<Vec<f64>> = corpus
            .iter()
            .map(|s| {
                let mut v = vec![0.0; s.values.len()];
                for (left, _) in &s.windows {
                    v[*left] = 1.0;
                }
                v
            })
            .collect();
        for profile in &PROFILES {
            assert_eq!(sweep(&corpus, &null, profile).normalized, 0.0);
            let result = sweep(&corpus, &perfect, profile);
            assert!((result.normalized - 100.0).abs() < 1e-9, "{result:?}");
        }
    }

    #[test]
    fn a_late_detection_earns_less_and_a_false_positive_costs() {
        let s = series(1000, vec![(500, 599)]);
        let profile = &PROFILES[0];
        let mut scores = vec![0.0; 1000];
        scores[500] = 1.0;
        let early = file_score(&s, &scores, 0.5, profile);
        scores[500] = 0.0;
        scores[590] = 1.0;
        let late = file_score(&s, &scores, 0.5, profile);
        assert!(
            (early - 1.0).abs() < 1e-12 && late < early && late > 0.0,
            "{early} {late}"
        );
        scores[300] = 1.0; // before any window: a full false positive
        assert!((file_score(&s, &scores, 0.5, profile) - (late - 0.11)).abs() < 1e-12);
    }

    #[test]
    fn the_tuning_grid_holds_the_shipped_defaults_once() {
        let grid = tuning_grid();
        let default = StreamConfig::default();
        assert_eq!(grid.iter().filter(|c| **c == default).count(), 1);
        assert_eq!(grid.len(), 243);
    }

    #[test]
    fn a_fixed_threshold_scores_as_the_sweep_does_at_its_own_threshold() {
        let corpus = vec![
            series(1000, vec![(300, 349)]),
            series(800, vec![(500, 539)]),
        ];
        let mut scores: Vec<Vec<f64>> = corpus.iter().map(|s| vec![0.1; s.values.len()]).collect();
        scores[0][310] = 0.9;
        scores[1][200] = 0.95;
        let profile = &PROFILES[0];
        let best = sweep(&corpus, &scores, profile);
        let at = normalized_at(&corpus, &scores, best.threshold, profile);
        assert!((best.normalized - at).abs() < 1e-9, "{best:?} {at}");
        assert!(normalized_at(&corpus, &scores, 0.92, profile) < best.normalized);
    }
}
