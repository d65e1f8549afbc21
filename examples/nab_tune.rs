//! Grid search over the streaming detector's settings on a NAB corpus: the
//! grid of `draco::bench::nab::tuning_grid` (243 settings around the
//! shipped defaults, which it contains), scored with NAB's standard profile.
//! `cargo run --release --example nab_tune -- ../shared/data/nab [--no-timestamps]`
//! (the corpus defaults to `DRACO_NAB_DIR`, else `../shared/data/nab`).
//! Prints the ten best settings and the rank of the shipped defaults.
//! Tuning on the benchmark you report is optimistic: `draco bench nab
//! --two-fold` measures by how much, and the README reports both.

use draco::bench::nab::{self, PROFILES};
use draco::detect::stream::StreamConfig;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let timestamps = !args.iter().any(|a| a == "--no-timestamps");
    let root = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .or_else(|| std::env::var("DRACO_NAB_DIR").ok())
        .unwrap_or_else(|| "../shared/data/nab".into());
    let corpus = match nab::load_corpus(std::path::Path::new(&root)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let default = StreamConfig::default();
    let mut results: Vec<(f64, f64, StreamConfig)> = nab::tuning_grid()
        .into_iter()
        .map(|config| {
            let scores = nab::score_corpus(&corpus, &config, timestamps);
            let standard = nab::sweep(&corpus, &scores, &PROFILES[0]);
            (standard.normalized, standard.threshold, config)
        })
        .collect();
    results.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (score, threshold, config) in results.iter().take(10) {
        let mark = if *config == default { " (shipped)" } else { "" };
        println!(
            "{score:6.1} θ={threshold:.4} alarm_level={} half_life={} short_window={} long_window={} suppress_for={}{mark}",
            config.alarm_level,
            config.half_life,
            config.short_window,
            config.long_window,
            config.suppress_for
        );
    }
    if let Some(rank) = results.iter().position(|r| r.2 == default) {
        println!(
            "shipped defaults: rank {} of {}, standard {:.1}",
            rank + 1,
            results.len(),
            results[rank].0
        );
    }
}
