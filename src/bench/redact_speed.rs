//! Speed of the redactor: throughput on mixed log and JSON text with about
//! 1 % personal data, and time on adversarial near-miss inputs (which must
//! stay linear: every reader in `redact::scan` reads a bounded distance).

use std::time::Instant;

use serde::Serialize;

use super::redact_corpus::generate;
use crate::redact::{Redactor, StreamOutput, Vault};

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub bytes: usize,
    pub labelled_fraction: f64,
    /// Finding the spans only (what `draco redact --spans` does).
    pub spans_mb_per_s: f64,
    /// Spans, placeholders and the output text as one string (what the
    /// pipeline does with each text it sends; here one 64 MiB string, whose
    /// fresh pages alone cost the kernel tens of milliseconds to fault in).
    pub redact_text_mb_per_s: f64,
    /// `draco redact`: the same text streamed piece by piece to a sink
    /// (`Redactor::redact_stream` with a numbering-only vault).
    pub redact_stream_mb_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Adversarial {
    pub name: &'static str,
    pub bytes: usize,
    pub ms: f64,
    pub spans: usize,
}

/// Best of three runs over `megabytes` of generated mixed text (seed 2, not
/// the seed the quality corpus uses).
pub fn throughput(redactor: &Redactor, megabytes: usize) -> Throughput {
    let doc = generate(2, megabytes * 1024 * 1024);
    let best = |f: &dyn Fn() -> usize| {
        (0..3)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let spans_secs = best(&|| redactor.spans(&doc.text).len());
    let redact_secs = best(&|| redactor.redact_text(&doc.text).0.get().len());
    let stream_secs = best(&|| {
        let mut written = CountingSink(0);
        // Reading a &[u8] and writing to memory cannot fail, and the
        // generated text is UTF-8.
        let _ = redactor.redact_stream(
            doc.text.as_bytes(),
            &mut written,
            StreamOutput::Text,
            &mut Vault::numbering_only(),
        );
        written.0
    });
    let mb = doc.text.len() as f64 / 1e6;
    Throughput {
        bytes: doc.text.len(),
        labelled_fraction: doc.pii_bytes() as f64 / doc.text.len() as f64,
        spans_mb_per_s: mb / spans_secs.max(1e-9),
        redact_text_mb_per_s: mb / redact_secs.max(1e-9),
        redact_stream_mb_per_s: mb / stream_secs.max(1e-9),
    }
}

/// Counts what is written and keeps none of it, so the stream's figure is
/// not a measure of the sink.
struct CountingSink(usize);

impl std::io::Write for CountingSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 10 MiB of each near-miss pattern: the shapes that would make a naive
/// scanner re-read its input (long digit runs, `@` without a domain, key
/// headers without an end, …).
pub fn adversarial_inputs() -> Vec<(&'static str, String)> {
    const N: usize = 10 * 1024 * 1024;
    let fill = |unit: &str| unit.repeat(N / unit.len() + 1)[..N].to_owned();
    vec![
        ("digits", fill("1234567890")),
        ("digit groups", fill("1 ")),
        ("dashed digits", fill("123-")),
        ("dotted digits", fill("1.2.")),
        ("at signs", fill("@")),
        ("local@ no tld", fill("a@b")),
        ("many dots", fill("a.")),
        ("AKIA repeated", fill("AKIA")),
        ("eyJ repeated", fill("eyJ.")),
        (
            "BEGIN without END",
            fill("-----BEGIN RSA PRIVATE KEY-----\n"),
        ),
        ("colons and hex", fill("ab:")),
        ("url schemes", fill("a://")),
        ("owner keys", fill("Owner: ")),
        ("secret keys", fill("secret=")),
        ("IBAN-like", fill("GB82 ")),
        ("plus phones", fill("+1 ")),
        ("token prefixes", fill("sk-ghs_")),
        ("bearer words", fill("Bearer ")),
        ("password keys", fill("password: ")),
    ]
}

pub fn adversarial(redactor: &Redactor) -> Vec<Adversarial> {
    adversarial_inputs()
        .into_iter()
        .map(|(name, text)| {
            let started = Instant::now();
            let spans = redactor.spans(&text).len();
            Adversarial {
                name,
                bytes: text.len(),
                ms: started.elapsed().as_secs_f64() * 1000.0,
                spans,
            }
        })
        .collect()
}
