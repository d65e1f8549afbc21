//! Quality of the redactor: per-kind precision and recall on the project's
//! own labelled corpus ([`super::redact_corpus`]) and on presidio-research's
//! `synth_dataset_v2.json`.
//!
//! A finding matches a label when both have the same kind and overlap; each
//! label matches at most one finding. `recall` is that overlap recall;
//! `exact_recall` counts only matches with identical boundaries, so loose
//! boundaries (a token cut short, a tail left in the clear) show up even
//! when overlap recall is perfect.
//!
//! The credential corpus ([`super::redact_corpus::credentials`]) is scored
//! per format by [`evaluate_credentials`]: exact-span, overlap and whole
//! (no byte of the secret left) recall, and the share of benign cloud
//! identifiers kept.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::redact_corpus::Labelled;
use super::redact_corpus::credentials::{self, FORMATS};
use crate::redact::{PiiKind, Redactor, Span};

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindScore {
    pub kind: Option<PiiKind>,
    pub labelled: usize,
    pub found: usize,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub exact: usize,
    pub precision: f64,
    /// Overlap recall: a finding of the same kind overlaps the label.
    pub recall: f64,
    /// Exact-span recall: a finding of the same kind has the label's bounds.
    pub exact_recall: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    pub corpus: String,
    pub bytes: usize,
    pub labelled_bytes: usize,
    pub kinds: Vec<KindScore>,
    /// All kinds but names, pooled.
    pub structured: KindScore,
}

/// Adds one document's counts to `acc`.
fn count(gold: &[Span], found: &[Span], acc: &mut BTreeMap<PiiKind, KindScore>) {
    let mut matched = vec![false; found.len()];
    for g in gold {
        let e = acc.entry(g.kind).or_default();
        e.labelled += 1;
        // `found` is sorted and non-overlapping: binary search the first
        // finding that ends after the label starts.
        let first = found.partition_point(|f| f.end <= g.start);
        let hit = (first..found.len())
            .take_while(|&i| found[i].start < g.end)
            .find(|&i| !matched[i] && found[i].kind == g.kind);
        match hit {
            Some(i) => {
                matched[i] = true;
                e.tp += 1;
                if found[i].start == g.start && found[i].end == g.end {
                    e.exact += 1;
                }
            }
            None => e.fn_ += 1,
        }
    }
    for (f, m) in found.iter().zip(matched) {
        let e = acc.entry(f.kind).or_default();
        e.found += 1;
        if !m {
            e.fp += 1;
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

fn finish(
    corpus: &str,
    bytes: usize,
    labelled_bytes: usize,
    acc: BTreeMap<PiiKind, KindScore>,
) -> QualityReport {
    let mut pooled = KindScore::default();
    let kinds = acc
        .into_iter()
        .map(|(kind, mut s)| {
            s.kind = Some(kind);
            s.precision = ratio(s.tp, s.tp + s.fp);
            s.recall = ratio(s.tp, s.tp + s.fn_);
            s.exact_recall = ratio(s.exact, s.labelled);
            if kind != PiiKind::Name {
                pooled.labelled += s.labelled;
                pooled.found += s.found;
                pooled.tp += s.tp;
                pooled.fp += s.fp;
                pooled.fn_ += s.fn_;
                pooled.exact += s.exact;
            }
            s
        })
        .collect();
    pooled.precision = ratio(pooled.tp, pooled.tp + pooled.fp);
    pooled.recall = ratio(pooled.tp, pooled.tp + pooled.fn_);
    pooled.exact_recall = ratio(pooled.exact, pooled.labelled);
    QualityReport {
        corpus: corpus.to_owned(),
        bytes,
        labelled_bytes,
        kinds,
        structured: pooled,
    }
}

/// Scores `redactor` on labelled documents.
pub fn evaluate(redactor: &Redactor, corpus: &str, docs: &[Labelled]) -> QualityReport {
    let mut acc = BTreeMap::new();
    for d in docs {
        let mut gold = d.spans.clone();
        gold.sort_by_key(|s| (s.start, s.end));
        count(&gold, &redactor.spans(&d.text), &mut acc);
    }
    let bytes = docs.iter().map(|d| d.text.len()).sum();
    let labelled = docs.iter().map(Labelled::pii_bytes).sum();
    finish(corpus, bytes, labelled, acc)
}

impl fmt::Display for QualityReport {
    /// The per-kind table of `draco bench redact`, overlap and exact-span
    /// recall side by side.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} bytes, {} labelled)",
            self.corpus, self.bytes, self.labelled_bytes
        )?;
        writeln!(
            f,
            "{:<16} {:>8} {:>8} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}",
            "KIND", "LABELS", "FOUND", "TP", "FP", "FN", "PRECISION", "OVERLAP", "EXACT"
        )?;
        for k in self.kinds.iter().chain(std::iter::once(&self.structured)) {
            let name = k
                .kind
                .map_or("ALL BUT NAME".to_owned(), |k| k.label().to_owned());
            writeln!(
                f,
                "{:<16} {:>8} {:>8} {:>6} {:>6} {:>6} {:>9.4} {:>9.4} {:>9.4}",
                name, k.labelled, k.found, k.tp, k.fp, k.fn_, k.precision, k.recall, k.exact_recall
            )?;
        }
        Ok(())
    }
}

/// How one credential format fared.
#[derive(Debug, Clone, Serialize)]
pub struct FormatScore {
    pub format: &'static str,
    /// The kind the format should be reported as.
    pub kind: PiiKind,
    pub samples: usize,
    /// A redacted span has exactly the secret's bounds.
    pub exact: usize,
    /// Some redacted span overlaps the secret.
    pub overlap: usize,
    /// Redacted spans cover every byte of the secret (nothing survives).
    pub whole: usize,
    /// An exact span also has the expected kind.
    pub kind_right: usize,
    pub exact_recall: f64,
    pub overlap_recall: f64,
    pub whole_recall: f64,
}

/// How one class of benign identifier fared.
#[derive(Debug, Clone, Serialize)]
pub struct BenignScore {
    pub class: &'static str,
    pub total: usize,
    /// Left as they were: no span touches them, except an account id inside
    /// an ARN (`ACCOUNT_ID`, redacted by design).
    pub kept: usize,
    pub keep_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CredentialReport {
    pub seed: u64,
    pub formats: Vec<FormatScore>,
    /// All formats pooled.
    pub pooled: FormatScore,
    pub benign: Vec<BenignScore>,
    pub benign_total: usize,
    pub benign_kept: usize,
    pub benign_keep_rate: f64,
}

/// Scores the redactor on `per_format` generated keys of every format and
/// `per_format` benign identifiers of every class, from `seed`.
pub fn evaluate_credentials(redactor: &Redactor, seed: u64, per_format: usize) -> CredentialReport {
    let mut formats = Vec::with_capacity(FORMATS.len());
    let mut pooled = FormatScore {
        format: "all formats",
        kind: PiiKind::Secret,
        samples: 0,
        exact: 0,
        overlap: 0,
        whole: 0,
        kind_right: 0,
        exact_recall: 0.0,
        overlap_recall: 0.0,
        whole_recall: 0.0,
    };
    for sample in credentials::samples(seed, per_format) {
        let mut score = FormatScore {
            format: sample.format.name,
            kind: sample.format.kind,
            ..pooled.clone()
        };
        for doc in &sample.docs {
            let found = redactor.spans(&doc.text);
            for label in &doc.spans {
                score.samples += 1;
                let hits: Vec<&Span> = found
                    .iter()
                    .filter(|f| f.start < label.end && f.end > label.start)
                    .collect();
                let exact = hits
                    .iter()
                    .find(|f| f.start == label.start && f.end == label.end);
                score.exact += usize::from(exact.is_some());
                score.kind_right += usize::from(exact.is_some_and(|f| f.kind == label.kind));
                score.overlap += usize::from(!hits.is_empty());
                let covered: usize = hits
                    .iter()
                    .map(|f| f.end.min(label.end) - f.start.max(label.start))
                    .sum();
                score.whole += usize::from(covered == label.end - label.start);
            }
        }
        pooled.samples += score.samples;
        pooled.exact += score.exact;
        pooled.overlap += score.overlap;
        pooled.whole += score.whole;
        pooled.kind_right += score.kind_right;
        formats.push(rates(score));
    }
    let pooled = rates(pooled);
    let mut benign = Vec::new();
    for (class, docs) in credentials::benign(seed ^ 0xB5, per_format) {
        let mut kept = 0;
        for doc in &docs {
            let found = redactor.spans(&doc.text);
            let ok = doc.spans.iter().all(|label| {
                found
                    .iter()
                    .filter(|f| f.start < label.end && f.end > label.start)
                    .all(|f| f.kind == PiiKind::AccountId)
            });
            kept += usize::from(ok);
        }
        benign.push(BenignScore {
            class,
            total: docs.len(),
            kept,
            keep_rate: ratio(kept, docs.len()),
        });
    }
    let benign_total = benign.iter().map(|b| b.total).sum();
    let benign_kept = benign.iter().map(|b| b.kept).sum();
    CredentialReport {
        seed,
        formats,
        pooled,
        benign,
        benign_total,
        benign_kept,
        benign_keep_rate: ratio(benign_kept, benign_total),
    }
}

fn rates(mut s: FormatScore) -> FormatScore {
    s.exact_recall = ratio(s.exact, s.samples);
    s.overlap_recall = ratio(s.overlap, s.samples);
    s.whole_recall = ratio(s.whole, s.samples);
    s
}

impl fmt::Display for CredentialReport {
    /// Per-format recall (exact-span, overlap, whole) and benign keep rates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "credential formats (seed {}, {} samples each)",
            self.seed,
            self.formats.first().map_or(0, |s| s.samples)
        )?;
        writeln!(
            f,
            "{:<66} {:>7} {:>7} {:>7} {:>7}",
            "FORMAT", "EXACT", "OVERLAP", "WHOLE", "KIND"
        )?;
        for s in self.formats.iter().chain(std::iter::once(&self.pooled)) {
            writeln!(
                f,
                "{:<66} {:>7.4} {:>7.4} {:>7.4} {:>7.4}",
                s.format,
                s.exact_recall,
                s.overlap_recall,
                s.whole_recall,
                ratio(s.kind_right, s.samples)
            )?;
        }
        writeln!(f, "\nbenign identifiers kept")?;
        for b in &self.benign {
            writeln!(
                f,
                "{:<74} {:>5}/{:<5} {:.4}",
                b.class, b.kept, b.total, b.keep_rate
            )?;
        }
        writeln!(
            f,
            "{:<74} {:>5}/{:<5} {:.4}",
            "all", self.benign_kept, self.benign_total, self.benign_keep_rate
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PresidioError {
    #[error("cannot read the presidio corpus {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the presidio corpus {path} is not the expected JSON (a list of {{full_text, spans}}): {source}"
    )]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("record {record}: span {start}..{end} is outside its text (character offsets)")]
    Offset {
        record: usize,
        start: usize,
        end: usize,
    },
}

#[derive(Deserialize)]
struct PresidioRecord {
    full_text: String,
    spans: Vec<PresidioSpan>,
}

#[derive(Deserialize)]
struct PresidioSpan {
    entity_type: String,
    entity_value: String,
    start_position: usize,
    end_position: usize,
}

/// Our kind for a presidio entity type; `None` for types we do not detect
/// (addresses, dates, organisations…), which are dropped from the labels.
fn map_presidio(entity: &str, value: &str) -> Option<PiiKind> {
    Some(match entity {
        "CREDIT_CARD" => PiiKind::CreditCard,
        "PHONE_NUMBER" => PiiKind::Phone,
        "EMAIL_ADDRESS" => PiiKind::Email,
        "IBAN_CODE" => PiiKind::Iban,
        "US_SSN" => PiiKind::Ssn,
        "IP_ADDRESS" if value.contains(':') => PiiKind::Ipv6,
        "IP_ADDRESS" => PiiKind::Ipv4,
        "PERSON" => PiiKind::Name,
        _ => return None,
    })
}

/// Loads presidio-research's synthetic dataset, converting its Python
/// character offsets to byte offsets.
pub fn load_presidio(path: &Path) -> Result<Vec<Labelled>, PresidioError> {
    let shown = path.display().to_string();
    let raw = std::fs::read(path).map_err(|source| PresidioError::Read {
        path: shown.clone(),
        source,
    })?;
    let records: Vec<PresidioRecord> =
        serde_json::from_slice(&raw).map_err(|source| PresidioError::Parse {
            path: shown,
            source,
        })?;
    records
        .into_iter()
        .enumerate()
        .map(|(record, r)| {
            // Byte offset of every char index, plus the end.
            let mut bytes: Vec<usize> = r.full_text.char_indices().map(|(b, _)| b).collect();
            bytes.push(r.full_text.len());
            let mut spans = Vec::new();
            for s in &r.spans {
                let (Some(&start), Some(&end)) =
                    (bytes.get(s.start_position), bytes.get(s.end_position))
                else {
                    return Err(PresidioError::Offset {
                        record,
                        start: s.start_position,
                        end: s.end_position,
                    });
                };
                if let Some(kind) = map_presidio(&s.entity_type, &s.entity_value) {
                    spans.push(Span { start, end, kind });
                }
            }
            Ok(Labelled {
                text: r.full_text,
                spans,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_matching_counts_tp_fp_fn() {
        let s = |start, end, kind| Span { start, end, kind };
        let gold = [s(0, 5, PiiKind::Email), s(10, 15, PiiKind::Ipv4)];
        let found = [
            s(0, 5, PiiKind::Email),
            s(10, 14, PiiKind::Phone),
            s(20, 22, PiiKind::Ssn),
        ];
        let mut acc = BTreeMap::new();
        count(&gold, &found, &mut acc);
        let r = finish("t", 0, 0, acc);
        let get = |k| {
            r.kinds
                .iter()
                .find(|x| x.kind == Some(k))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!((get(PiiKind::Email).tp, get(PiiKind::Email).exact), (1, 1));
        assert_eq!(get(PiiKind::Ipv4).fn_, 1);
        assert_eq!(get(PiiKind::Phone).fp, 1);
        assert_eq!(get(PiiKind::Ssn).fp, 1);
    }

    #[test]
    fn every_credential_format_is_taken_whole_and_benign_ids_kept() {
        let r = evaluate_credentials(&Redactor::default(), 3, 60);
        for f in &r.formats {
            assert!(f.whole_recall >= 0.98 && f.exact_recall >= 0.95, "{f:?}");
        }
        assert!(r.benign_keep_rate >= 0.98, "{:?}", r.benign);
    }

    #[test]
    fn own_corpus_meets_the_targets() {
        let doc = super::super::redact_corpus::generate(11, 400_000);
        let r = evaluate(&Redactor::default(), "own", &[doc]);
        for k in &r.kinds {
            if k.kind != Some(PiiKind::Name) {
                assert!(k.precision >= 0.98 && k.recall >= 0.99, "{k:?}");
            }
        }
    }
}
