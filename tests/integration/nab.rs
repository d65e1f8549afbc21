//! The NAB scorer against NAB's own published numbers, and the benchmark
//! command end to end. Data: NAB's files (MIT), found through
//! `DRACO_NAB_DIR`, else at `../shared/data/nab`; where they are absent the
//! tests say they were skipped, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};

use draco::bench::nab::{self, LabeledSeries, PROFILES};

use crate::support::{BIN, describe, external_corpus};

/// The NAB corpus, or `None` (test skipped) where it is absent outside CI.
pub fn nab_root() -> Option<PathBuf> {
    external_corpus("DRACO_NAB_DIR", "../shared/data/nab")
}

/// The README's NAB table, measured with `draco bench nab` on the shared
/// 35-file corpus: (profile, score). The test below holds the README to it.
const README_SCORES: [(&str, f64); 3] = [
    ("standard", 70.3),
    ("reward_low_FP_rate", 62.9),
    ("reward_low_FN_rate", 75.2),
];

/// Numenta HTM's per-row scores for one file, with the windows of that file.
fn numenta_run(root: &Path, relative: &str, reference: &str) -> (LabeledSeries, Vec<f64>) {
    let corpus = nab::load_corpus(root).expect("the shared NAB corpus loads");
    let series = corpus
        .into_iter()
        .find(|s| s.name == relative)
        .expect("file in corpus");
    let text = std::fs::read_to_string(root.join("reference_results/numenta").join(reference))
        .expect("reference file");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = header
        .iter()
        .position(|h| *h == "anomaly_score")
        .expect("anomaly_score column");
    let scores: Vec<f64> = lines
        .map(|l| {
            l.split(',')
                .nth(column)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        })
        .collect();
    assert_eq!(scores.len(), series.values.len());
    (series, scores)
}

/// NAB's results table for the numenta detector, at its optimised thresholds.
fn published(root: &Path, profile: &str, file: &str) -> f64 {
    let path = root.join(format!(
        "reference_results/numenta/numenta_{profile}_scores.csv"
    ));
    let text = std::fs::read_to_string(path).expect("published scores");
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.get(2) == Some(&file))
                .then(|| f[4].parse().ok())
                .flatten()
        })
        .expect("file in the published table")
}

fn published_threshold(root: &Path, profile: &str) -> f64 {
    let path = root.join(format!(
        "reference_results/numenta/numenta_{profile}_scores.csv"
    ));
    let text = std::fs::read_to_string(path).expect("published scores");
    text.lines()
        .nth(1)
        .and_then(|l| l.split(',').nth(3))
        .and_then(|t| t.parse().ok())
        .expect("threshold")
}

#[test]
fn the_scorer_reproduces_nabs_published_file_scores() {
    let Some(root) = nab_root() else { return };
    for (relative, reference) in [
        (
            "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
            "realAWSCloudwatch/numenta_ec2_cpu_utilization_24ae8d.csv",
        ),
        (
            "realKnownCause/nyc_taxi.csv",
            "realKnownCause/numenta_nyc_taxi.csv",
        ),
    ] {
        let (series, scores) = numenta_run(&root, relative, reference);
        for profile in &PROFILES {
            let threshold = published_threshold(&root, profile.name);
            let ours = nab::file_score(&series, &scores, threshold, profile);
            let theirs = published(&root, profile.name, relative);
            assert!(
                (ours - theirs).abs() < 1e-6,
                "{relative} {}: ours {ours}, NAB {theirs}",
                profile.name
            );
        }
    }
}

#[test]
fn bench_nab_reproduces_the_readme_scores_for_all_profiles() {
    let Some(root) = nab_root() else { return };
    let out = std::process::Command::new(BIN)
        .args(["bench", "nab", "--data"])
        .arg(&root)
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for (profile, readme) in README_SCORES {
        let score: f64 = text
            .lines()
            .find_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.first() == Some(&profile))
                    .then(|| fields.last()?.parse().ok())
                    .flatten()
            })
            .unwrap_or(f64::NAN);
        assert!(
            (score - readme).abs() <= 0.5,
            "{profile}: {score}, README {readme}\n{text}"
        );
    }
    let last = text.lines().last().unwrap_or_default();
    let standard: f64 = last
        .strip_prefix("NAB standard: ")
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    assert!((standard - README_SCORES[0].1).abs() <= 0.5, "{text}");
    // NAB's CloudWatch files repeat an hour at a daylight-saving change:
    // one warning counts the rows, and they are scored.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("repeat or go back in time; scored in file order"),
        "{err}"
    );
}

#[test]
fn bench_nab_without_timestamps_scores_below_the_timestamped_run() {
    let Some(root) = nab_root() else { return };
    let run = |extra: &[&str]| -> f64 {
        let out = std::process::Command::new(BIN)
            .args(["bench", "nab", "--json", "--data"])
            .arg(&root)
            .args(extra)
            .output()
            .expect("draco runs");
        assert!(out.status.success(), "{}", describe(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let standard = &report["profiles"][0];
        assert_eq!(standard["profile"], "standard", "{report}");
        if extra.is_empty() {
            // `draco detect` flags at the standard profile's own threshold
            // (the sweep picks a score seen; the README gives four digits).
            let threshold = standard["threshold"].as_f64().unwrap_or(f64::NAN);
            assert!(
                (threshold - draco::detect::stream::DEFAULT_THRESHOLD).abs() < 5e-5,
                "standard threshold {threshold}, draco detect's default {}",
                draco::detect::stream::DEFAULT_THRESHOLD
            );
        }
        standard["normalized"].as_f64().unwrap_or(f64::NAN)
    };
    let with = run(&[]);
    let without = run(&["--no-timestamps"]);
    assert!(
        (without - README_NO_TIMESTAMPS).abs() <= 0.5,
        "{without}, README {README_NO_TIMESTAMPS}"
    );
    assert!(without < with, "{without} {with}");
}

/// The README's figure for `draco bench nab --no-timestamps` (standard).
const README_NO_TIMESTAMPS: f64 = 68.6;

#[test]
fn draco_detect_reads_every_file_of_the_nab_corpus() {
    let Some(root) = nab_root() else { return };
    let mut files = Vec::new();
    let mut stack = vec![root.join("data")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable corpus").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "csv") {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "no CSV under {}", root.display());
    for file in files {
        let out = std::process::Command::new(BIN)
            .args(["detect", "--input"])
            .arg(&file)
            .output()
            .expect("draco runs");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            describe(&out)
        );
        let rows = std::fs::read_to_string(&file)
            .expect("readable file")
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        let printed = String::from_utf8_lossy(&out.stdout).lines().count() - 1;
        assert_eq!(printed, rows, "{}", file.display());
    }
}

/// A regression guard on detection quality (not on speed): the synthetic cost
/// benchmark must keep meeting its targets for a fixed seed.
#[test]
fn bench_cost_meets_its_targets_for_a_fixed_seed() {
    let out = std::process::Command::new(BIN)
        .args(["bench", "cost", "--seed", "1", "--json"])
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        report["overall_f1"].as_f64().unwrap_or(0.0) >= 0.9,
        "{report:#}"
    );
    assert!(
        report["false_alarms_per_100_series_months"]
            .as_f64()
            .unwrap_or(99.0)
            <= 1.0,
        "{report:#}"
    );
    let spike = report["by_type"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["kind"] == "cost_spike")
        .cloned()
        .unwrap_or_default();
    assert!(
        spike["mean_days_to_detect"].as_f64().unwrap_or(99.0) <= 1.0,
        "{spike}"
    );
    for t in report["by_type"].as_array().into_iter().flatten() {
        assert!(
            t["planted"].as_u64().unwrap_or(0) > 20,
            "every type is exercised: {t}"
        );
    }
}
