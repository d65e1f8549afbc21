//! Scoring on the Numenta Anomaly Benchmark (NAB), re-implemented from its
//! published rules (`../shared/data/nab/SCORING.md`): anomaly windows, a
//! probationary period, the scaled sigmoid that rewards early detection,
//! application profiles, one threshold per profile swept over the whole
//! corpus, and normalisation between the null and the perfect detector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Serialize;

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
    #[error("{path}:{line}: {message}")]
    Row {
        path: String,
        line: usize,
        message: String,
    },
}

/// How strictly timestamps must increase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Every timestamp after the previous one (input given to `draco detect`).
    Strict,
    /// Rows as they are: NAB's own files repeat or step back an hour at
    /// daylight-saving changes, and NAB scores those rows as they are.
    AsIs,
}

/// Reads `timestamp,value` CSV; values must be finite.
pub fn read_series_csv(
    path: &Path,
    order: Order,
) -> Result<(Vec<NaiveDateTime>, Vec<f64>), CorpusError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CorpusError::File {
        path: display.clone(),
        message: e.to_string(),
    })?;
    parse_series_csv(&text, &display, order)
}

/// Accepts `YYYY-MM-DD HH:MM:SS[.ffffff]`, RFC 3339, or a bare date.
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.naive_utc())
        })
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

pub fn parse_series_csv(
    text: &str,
    path: &str,
    order: Order,
) -> Result<(Vec<NaiveDateTime>, Vec<f64>), CorpusError> {
    let row_error = |line: usize, message: String| CorpusError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim().trim_start_matches('\u{feff}') == "timestamp,value" => {}
        Some((_, header)) => {
            return Err(row_error(
                1,
                format!("header is `{header}`, expected `timestamp,value`"),
            ));
        }
        None => return Err(row_error(1, "the file is empty".into())),
    }
    let mut timestamps: Vec<NaiveDateTime> = Vec::new();
    let mut values = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (ts, value) = line
            .split_once(',')
            .ok_or_else(|| row_error(line_no, format!("`{line}` is not `timestamp,value`")))?;
        let ts = parse_timestamp(ts)
            .ok_or_else(|| row_error(line_no, format!("`{ts}` is not a timestamp")))?;
        let value: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                row_error(
                    line_no,
                    format!("`{}` is not a finite number", value.trim()),
                )
            })?;
        if let Some(last) = timestamps.last() {
            if ts == *last && order == Order::Strict {
                return Err(row_error(line_no, format!("duplicate timestamp {ts}")));
            }
            if ts < *last && order == Order::Strict {
                return Err(row_error(
                    line_no,
                    format!("timestamp {ts} goes back in time (previous {last})"),
                ));
            }
        }
        timestamps.push(ts);
        values.push(value);
    }
    if values.is_empty() {
        return Err(row_error(2, "no data rows".into()));
    }
    Ok((timestamps, values))
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
        let (timestamps, values) = read_series_csv(&path, Order::AsIs)?;
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
        });
    }
    Ok(corpus)
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
}
