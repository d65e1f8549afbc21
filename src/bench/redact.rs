//! Quality of the redactor: per-kind precision and recall on the project's
//! own labelled corpus ([`super::redact_corpus`]) and on presidio-research's
//! `synth_dataset_v2.json`.
//!
//! A finding matches a label when both have the same kind and overlap; each
//! label matches at most one finding. `exact` counts matches with identical
//! boundaries, so loose boundaries show up even when recall is perfect.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::redact_corpus::Labelled;
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
    pub recall: f64,
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
