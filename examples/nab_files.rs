//! Per-file NAB breakdown for the default detector settings:
//! `cargo run --release --example nab_files -- ../shared/data/nab`
//! (the corpus defaults to `DRACO_NAB_DIR`, else `../shared/data/nab`).
use draco::bench::nab::{self, PROFILES};
use draco::detect::stream::StreamConfig;

fn main() {
    let root = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DRACO_NAB_DIR").ok())
        .unwrap_or_else(|| "../shared/data/nab".into());
    let corpus = match nab::load_corpus(std::path::Path::new(&root)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let config = StreamConfig::default();
    let scores = nab::score_corpus(&corpus, &config, true);
    let result = nab::sweep(&corpus, &scores, &PROFILES[0]);
    println!(
        "standard {:.1} at {:.4}",
        result.normalized, result.threshold
    );
    for (s, sc) in corpus.iter().zip(&scores) {
        let detections: Vec<usize> = sc
            .iter()
            .enumerate()
            .skip(s.probation())
            .filter(|(_, v)| **v >= result.threshold)
            .map(|(i, _)| i)
            .collect();
        let score = nab::file_score(s, sc, result.threshold, &PROFILES[0]);
        println!(
            "{:7.2} {:<60} rows {:6} windows {:?} detections {:?}",
            score,
            s.name,
            s.values.len(),
            s.windows,
            detections
        );
    }
}
