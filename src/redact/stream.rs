//! Redaction of a stream in bounded memory (`draco redact`): the input is
//! read in pieces, each piece is scanned with enough of the text around it
//! that it is read exactly as one scan of the whole would read it, and its
//! redacted text is written before the next piece is read.
//!
//! A piece ends only where the scan has no finding open (see
//! [`scan::Pause`]), so no value is cut in two, and the scan carries its
//! state into the next piece; the scan of a piece sees [`scan::MAX_LOOKBACK`]
//! bytes before it and [`scan::MAX_REACH`] bytes after the last place a
//! reader may start. The output is therefore the same as redacting the
//! whole input at once, with placeholders numbered by a
//! [`Vault::numbering_only`] vault: memory stays under about
//! 1 MiB for the text plus the vault's bound, whatever the input size.

use std::io::{self, Read, Write};

use super::Redactor;
use super::scan::{self, MAX_LOOKBACK, MAX_REACH, Pause, Resume, Span};
use super::vault::Vault;

/// Bytes scanned per piece before the scan looks for a place to pause.
const PIECE: usize = 256 * 1024;

/// How far past [`PIECE`] a piece may run while a value is open before it
/// is cut anyway (and as far again without a byte that may end a piece,
/// see [`scan::Pause`]). Values are at most a few KiB (`keys::MAX_VALUE`, a
/// name of four words), so this is reached only by text built to keep one
/// open, or 64 KiB without a space or punctuation other than `.%+-_`.
const OPEN_LIMIT: usize = 64 * 1024;

/// What `draco redact` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutput {
    /// The input with every finding replaced by its placeholder.
    Text,
    /// One JSON line `{"start","end","kind"}` per finding, byte offsets
    /// into the whole input.
    Spans,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot read or write the stream: {0}")]
    Io(#[from] io::Error),
    #[error("the input is not UTF-8 text (at byte {offset})")]
    NotUtf8 { offset: u64 },
    #[error("cannot write a span as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Piece sizes, apart so that tests can cut a short text into many pieces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pieces {
    pub(super) piece: usize,
    pub(super) open_limit: usize,
    /// Bytes read ahead of the last place a reader may start.
    pub(super) reach: usize,
}

impl Default for Pieces {
    fn default() -> Self {
        Self {
            piece: PIECE,
            open_limit: OPEN_LIMIT,
            reach: MAX_REACH,
        }
    }
}

impl Redactor {
    /// Redacts `input` to `output` piece by piece (see the module
    /// documentation), numbering placeholders with `vault`. Errors: reading
    /// or writing fails, or the input is not UTF-8; what was written before
    /// stays written.
    pub fn redact_stream(
        &self,
        input: impl Read,
        output: impl Write,
        what: StreamOutput,
        vault: &mut Vault,
    ) -> Result<(), StreamError> {
        self.redact_pieces(input, output, what, vault, Pieces::default())
    }

    pub(super) fn redact_pieces(
        &self,
        mut input: impl Read,
        mut output: impl Write,
        what: StreamOutput,
        vault: &mut Vault,
        sizes: Pieces,
    ) -> Result<(), StreamError> {
        // `buf` holds the input from byte `base` on: some bytes before the
        // scan's position to look back at, and what has been read ahead.
        let mut buf: Vec<u8> =
            Vec::with_capacity(MAX_LOOKBACK + sizes.piece + 2 * sizes.open_limit + sizes.reach);
        let mut base = 0u64;
        let mut at = Resume::default();
        let mut eof = false;
        let mut out = String::new();
        loop {
            let need = at.at + sizes.piece + 2 * sizes.open_limit + sizes.reach;
            while !eof && buf.len() < need {
                eof = fill(&mut input, &mut buf, need)?;
            }
            if at.at >= buf.len() {
                break;
            }
            let pause = if eof {
                Pause::NEVER
            } else {
                Pause {
                    after: at.at + sizes.piece,
                    limit: at.at + sizes.piece + sizes.open_limit,
                }
            };
            let (spans, stop) = scan::spans_until(&buf, at, pause, &self.person_keys);
            // Had the scan to stop with a value open, the value is taken
            // whole and the next piece starts after it: a secret is never
            // cut in two, though what follows it is read as if the text
            // began there.
            let end = spans.iter().map(|s| s.end).fold(stop.at, usize::max);
            let stop = stop.skip_to(end);
            let text = std::str::from_utf8(&buf[at.at..end]).map_err(|e| StreamError::NotUtf8 {
                offset: base + (at.at + e.valid_up_to()) as u64,
            })?;
            match what {
                StreamOutput::Text => {
                    out.clear();
                    let mut last = 0;
                    for s in &spans {
                        // Only after a cut forced in text with no place to
                        // pause can a finding start before the piece (an
                        // e-mail's local part): its head was written.
                        let (start, stop) = (s.start.max(at.at) - at.at, s.end - at.at);
                        out.push_str(&text[last..start]);
                        vault.push_placeholder(&mut out, s.kind, &text[start..stop]);
                        last = stop;
                    }
                    out.push_str(&text[last..]);
                    output.write_all(out.as_bytes())?;
                }
                StreamOutput::Spans => {
                    for s in &spans {
                        let offset = |p: usize| usize::try_from(base).map_or(usize::MAX, |b| b + p);
                        let span = Span {
                            start: offset(s.start.max(at.at)),
                            end: offset(s.end),
                            kind: s.kind,
                        };
                        serde_json::to_writer(&mut output, &span)?;
                        output.write_all(b"\n")?;
                    }
                }
            }
            // Keep only what the next piece may look back at.
            let drop = end.saturating_sub(MAX_LOOKBACK);
            buf.drain(..drop);
            base += drop as u64;
            at = stop.shifted(drop);
        }
        output.flush()?;
        Ok(())
    }
}

/// Reads into `buf` until it holds `need` bytes or the input ends; returns
/// whether it ended.
fn fill(input: &mut impl Read, buf: &mut Vec<u8>, need: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    while buf.len() < need {
        let want = chunk.len().min(need - buf.len());
        match input.read(&mut chunk[..want]) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn streamed(text: &str, what: StreamOutput, sizes: Pieces) -> String {
        let mut out = Vec::new();
        Redactor::default()
            .redact_pieces(
                text.as_bytes(),
                &mut out,
                what,
                &mut Vault::default(),
                sizes,
            )
            .expect("redacts in memory");
        String::from_utf8(out).expect("UTF-8 out")
    }

    fn whole_spans(text: &str) -> String {
        Redactor::default()
            .spans(text)
            .iter()
            .map(|s| serde_json::to_string(s).expect("a span serialises") + "\n")
            .collect()
    }

    /// Values that end up across piece boundaries when the pieces are small.
    const PARTS: &[&str] = &[
        "jane.doe@example.com",
        "Owner: Jane Doe\n",
        "password: correct horse battery staple\n",
        "\"client_secret\": \"Zx9-ab_Cd.efGH12\"",
        "call +1 415 555 0100 now",
        "ip 10.20.30.40 and fe80::1:2:3:4 and 00:1a:2b:3c:4d:5e",
        "ghp_0123456789abcdefghijABCDEFGHIJklmnop",
        // A value found by its key that holds a token of a known kind: the
        // token's kind wins only if the piece does not end between them.
        "api_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU ",
        "GITHUB_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJklmnop\n",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\ndef123\n-----END RSA PRIVATE KEY-----\n",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "Authorization: Bearer abcdEFGH1234ijkl5678\n",
        "card 4111 1111 1111 1111, ssn 078-05-1120",
        "postgres://app:pw@db.example.com/x",
        "  ",
        "\n",
        "café ",
        "x",
    ];

    #[test]
    fn a_long_text_in_default_pieces_is_redacted_as_a_whole() {
        // 2 MiB of the parts below between ordinary words, in a fixed
        // pseudo-random order (a linear congruential sequence), so that many
        // values straddle the default pieces' boundaries.
        let mut text = String::with_capacity(2 << 20);
        let mut state: u64 = 3;
        while text.len() < 2 << 20 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push_str(PARTS[(state >> 33) as usize % PARTS.len()]);
            text.push_str(" the instance in region us-east-1 reported ");
        }
        let (whole, _) = Redactor::default().redact_text(&text);
        assert_eq!(
            streamed(&text, StreamOutput::Text, Pieces::default()),
            *whole.get()
        );
        assert_eq!(
            streamed(&text, StreamOutput::Spans, Pieces::default()),
            whole_spans(&text)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn pieces_of_any_size_give_the_whole_text_redaction(
            parts in proptest::collection::vec(0..PARTS.len(), 1..40),
            piece in 1usize..64,
            open_limit in 128usize..256,
        ) {
            let text: String = parts.iter().map(|&i| PARTS[i]).collect();
            // Every reader stops within its part here (a value at its line
            // end or quote, a key's PEM end within 100 bytes), so a short
            // read-ahead is the whole scan's.
            let sizes = Pieces { piece, open_limit, reach: 512 };
            let (whole, _) = Redactor::default().redact_text(&text);
            prop_assert_eq!(streamed(&text, StreamOutput::Text, sizes), whole.get().clone());
            prop_assert_eq!(streamed(&text, StreamOutput::Spans, sizes), whole_spans(&text));
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_with_its_offset() {
        let mut input = b"ok text ".to_vec();
        input.push(0xFF);
        let err = Redactor::default()
            .redact_stream(
                input.as_slice(),
                io::sink(),
                StreamOutput::Text,
                &mut Vault::default(),
            )
            .expect_err("not UTF-8");
        assert!(matches!(err, StreamError::NotUtf8 { offset: 8 }), "{err}");
    }
}
