//! Benchmarks that measure quality, speed and memory: `draco bench nab`,
//! `draco bench cost`, `draco bench redact`, `draco bench idle`,
//! `draco bench estate`, `draco bench store`, `draco bench footprint`.

pub mod cost;
pub mod estate;
pub mod footprint;
pub mod idle;
pub mod nab;
pub mod redact;
pub mod redact_corpus;
pub mod redact_speed;
pub mod store;

/// AWS commercial regions the generators draw from ("Regions and Zones",
/// Amazon EC2 User Guide).
pub(crate) const AWS_REGIONS: [&str; 8] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
];

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::detect::stream::StreamConfig;
use nab::{CorpusError, PROFILES, ProfileResult};

#[derive(Debug, Clone, Serialize)]
pub struct NabReport {
    pub files: usize,
    pub rows: usize,
    pub windows: usize,
    /// Whether the rows' timestamps fed the time-of-day model.
    pub timestamps: bool,
    /// Rows whose timestamp repeats or goes back in time (scored in file
    /// order), and the files holding them.
    pub out_of_order_rows: usize,
    pub out_of_order_files: usize,
    pub profiles: Vec<ProfileResult>,
    pub seconds: f64,
}

/// Scores every series of the NAB corpus at `root` with the streaming
/// detector, with the time-of-day model from the rows' timestamps when
/// `timestamps` is true.
pub fn run_nab(
    root: &Path,
    config: &StreamConfig,
    timestamps: bool,
) -> Result<NabReport, CorpusError> {
    let corpus = nab::load_corpus(root)?;
    let started = Instant::now();
    let scores = nab::score_corpus(&corpus, config, timestamps);
    let seconds = started.elapsed().as_secs_f64();
    let profiles = PROFILES
        .iter()
        .map(|p| nab::sweep(&corpus, &scores, p))
        .collect();
    Ok(NabReport {
        files: corpus.len(),
        rows: corpus.iter().map(|s| s.values.len()).sum(),
        windows: corpus.iter().map(|s| s.windows.len()).sum(),
        timestamps,
        out_of_order_rows: corpus.iter().map(|s| s.out_of_order).sum(),
        out_of_order_files: corpus.iter().filter(|s| s.out_of_order > 0).count(),
        profiles,
        seconds,
    })
}
