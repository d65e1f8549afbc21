//! Benchmarks that measure quality and speed: `draco bench nab`, `draco
//! bench cost`, `draco bench redact`.

pub mod cost;
pub mod nab;
pub mod redact;
pub mod redact_corpus;
pub mod redact_speed;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::detect::stream::{self, StreamConfig};
use nab::{CorpusError, PROFILES, ProfileResult};

#[derive(Debug, Clone, Serialize)]
pub struct NabReport {
    pub files: usize,
    pub rows: usize,
    pub windows: usize,
    pub profiles: Vec<ProfileResult>,
    pub seconds: f64,
}

/// Scores every series of the NAB corpus at `root` with the streaming detector.
pub fn run_nab(root: &Path, config: &StreamConfig) -> Result<NabReport, CorpusError> {
    let corpus = nab::load_corpus(root)?;
    let started = Instant::now();
    let scores: Vec<Vec<f64>> = corpus
        .iter()
        .map(|s| stream::score_at(&s.timestamps, &s.values, config))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let profiles = PROFILES
        .iter()
        .map(|p| nab::sweep(&corpus, &scores, p))
        .collect();
    Ok(NabReport {
        files: corpus.len(),
        rows: corpus.iter().map(|s| s.values.len()).sum(),
        windows: corpus.iter().map(|s| s.windows.len()).sum(),
        profiles,
        seconds,
    })
}
