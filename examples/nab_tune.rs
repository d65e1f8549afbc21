//! Grid search over the streaming detector's settings on a NAB corpus.
//! `cargo run --release --example nab_tune -- ../shared/data/nab`
//! Tuning on the benchmark you report is optimistic: the README says so.

use draco::bench::nab::{self, PROFILES};
use draco::detect::stream::{self, StreamConfig};

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/nab".into());
    let corpus = match nab::load_corpus(std::path::Path::new(&root)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let mut results = Vec::new();
    for alarm_level in [0.985, 0.99, 0.995] {
        for half_life in [6000.0, 8000.0, 12000.0] {
            for short_window in [7, 8, 10] {
                for long_window in [2500, 3000, 4000] {
                    for suppress_for in [80, 120, 150] {
                        let config = StreamConfig {
                            bins: 16,
                            half_life,
                            short_window,
                            long_window,
                            suppress_for,
                            alarm_level,
                            ..StreamConfig::default()
                        };
                        let scores: Vec<Vec<f64>> = corpus
                            .iter()
                            .map(|s| stream::score_at(&s.timestamps, &s.values, &config))
                            .collect();
                        let standard = nab::sweep(&corpus, &scores, &PROFILES[0]);
                        results.push((standard.normalized, standard.threshold, config));
                    }
                }
            }
        }
    }
    results.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (score, threshold, config) in results.iter().take(10) {
        println!("{score:6.1} θ={threshold:.4} {config:?}");
    }
}
