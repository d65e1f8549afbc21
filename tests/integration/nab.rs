//! The NAB scorer against NAB's own published numbers, and the benchmark
//! command end to end. Data: `../shared/data/nab` (NAB's files, MIT).

use std::path::PathBuf;

use draco::bench::nab::{self, LabeledSeries, PROFILES};

use crate::support::{BIN, describe};

fn nab_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nab");
    assert!(
        root.join("labels/combined_windows.json").exists(),
        "the NAB corpus is expected in shared/ next to the checkout, at {}",
        root.display()
    );
    root
}

/// Numenta HTM's per-row scores for one file, with the windows of that file.
fn numenta_run(relative: &str, reference: &str) -> (LabeledSeries, Vec<f64>) {
    let root = nab_root();
    let corpus = nab::load_corpus(&root).expect("the shared NAB corpus loads");
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
fn published(profile: &str, file: &str) -> f64 {
    let path = nab_root().join(format!(
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

fn published_threshold(profile: &str) -> f64 {
    let path = nab_root().join(format!(
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
        let (series, scores) = numenta_run(relative, reference);
        for profile in &PROFILES {
            let ours =
                nab::file_score(&series, &scores, published_threshold(profile.name), profile);
            let theirs = published(profile.name, relative);
            assert!(
                (ours - theirs).abs() < 1e-6,
                "{relative} {}: ours {ours}, NAB {theirs}",
                profile.name
            );
        }
    }
}

#[test]
fn bench_nab_prints_all_profiles_and_the_standard_score_last() {
    let out = std::process::Command::new(BIN)
        .args(["bench", "nab", "--data"])
        .arg(nab_root())
        .output()
        .expect("draco runs");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for profile in &PROFILES {
        assert!(text.contains(profile.name), "{text}");
    }
    let last = text.lines().last().unwrap_or_default();
    let score: f64 = last
        .strip_prefix("NAB standard: ")
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(score.is_finite() && score > 0.0, "{text}");
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
