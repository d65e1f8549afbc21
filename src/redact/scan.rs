//! One forward pass over the input that finds candidates and confirms them.
//!
//! Why not one big regex: an alternation of two dozen kinds and a hundred
//! token formats with captures
//! runs far below the throughput we need, and most kinds need a checksum or
//! a parse anyway. Instead the pass walks words (`[A-Za-z0-9_]+`) and the
//! bytes between them; a word or a trigger byte (`@`, `:`, `-----BEGIN`)
//! hands off to a reader that looks a bounded distance ahead. Readers start
//! only where the byte before cannot continue their token, and the pass
//! resumes after whatever was found, so the total work is linear in the
//! input, whatever it contains.

use serde::Serialize;

use super::keys::{self, ValueEnds};
use super::names::{self, PersonKeys};
use super::numeric;
use super::patterns::PiiKind;
use super::tokens::{self, PemEnds};

/// A byte range of the input and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: PiiKind,
}

/// Byte classes of the pass: word bytes, and the bytes that may start a
/// reader between words. A table, because the pass asks once per byte.
const WORD: u8 = 1;
const TRIGGER: u8 = 2;
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_alphanumeric() || c == b'_' {
            t[i] = WORD;
        } else if matches!(c, b'@' | b'-' | b':') {
            t[i] = TRIGGER;
        }
        i += 1;
    }
    t
};

#[inline]
fn is_word(b: u8) -> bool {
    CLASS[usize::from(b)] == WORD
}

/// Whether a reader starts at the non-word byte `i`: `@` (an email), `--`
/// (`-----BEGIN`), `://` (URL credentials) or `::` (IPv6). A lone `-` or
/// `:` (dates, times, ids) is passed over.
#[inline]
fn is_trigger(hay: &[u8], i: usize) -> bool {
    match hay[i] {
        b'@' => true,
        b'-' => hay.get(i + 1) == Some(&b'-'),
        b':' => matches!(hay.get(i + 1), Some(b'/' | b':')),
        _ => false,
    }
}

/// The first byte at or after `i` that does not continue a word.
///
/// Eight bytes at a time ("SIMD within a register"): the high bit of each
/// byte of `x` is set where that byte is in a range, and the first byte
/// out of every word range ends the word. Most words are shorter than
/// eight bytes and need one step, without a loop exit per byte (this
/// doubles the speed of reading words).
#[inline(always)]
fn word_end(hay: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, with the high bits cleared no sum carries into the next
    // byte; a byte of 0x80 or more is in no range (`!x`).
    let in_range = |x: u64, lo: u8, hi: u8| {
        let y = x & !HIGH;
        let at_least_lo = y.wrapping_add(ONES * u64::from(0x80 - lo));
        let above_hi = y.wrapping_add(ONES * u64::from(0x7F - hi));
        at_least_lo & !above_hi & !x & HIGH
    };
    while let Some(chunk) = hay.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let word = in_range(x, b'0', b'9')
            | in_range(x | (ONES * 0x20), b'a', b'z')
            | in_range(x, b'_', b'_');
        let stop = !word & HIGH;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < hay.len() && is_word(hay[i]) {
        i += 1;
    }
    i
}

/// The first word byte or trigger ([`is_trigger`]) at or after `i`, or the
/// end of `hay`.
#[inline]
fn next_start(hay: &[u8], mut i: usize) -> usize {
    while i < hay.len() {
        match CLASS[usize::from(hay[i])] {
            WORD => break,
            TRIGGER if is_trigger(hay, i) => break,
            _ => i += 1,
        }
    }
    i
}

/// Whether the word `s..e` may be a key with a value after it, as
/// [`names::after_key`] and [`keys::after_key`] read one: a separator
/// follows (`:`, `=`, a closing quote and then one, or `", "Value":` of a
/// tag), or a space that a separator, another space, a flag's value
/// (`--secret v`) or `Bearer`'s token follows. Most words are followed by
/// a space and a letter, and stop here.
#[inline]
fn may_start_value(hay: &[u8], s: usize, e: usize) -> bool {
    let next = hay.get(e).copied().unwrap_or(0);
    match AFTER_KEY[usize::from(next)] {
        ASSIGNED => true,
        QUOTED => {
            // A closing quote (`"key": v`), or `\"` in escaped JSON: a
            // separator after at most three spaces.
            let mut p = e + 1;
            if next == b'\\' {
                if !matches!(hay.get(p), Some(b'"' | b'\'')) {
                    return false;
                }
                p += 1;
            }
            let stop = p + 3;
            while p < stop && matches!(hay.get(p), Some(b' ' | b'\t')) {
                p += 1;
            }
            matches!(hay.get(p), Some(b':' | b'=' | b','))
        }
        SPACED => {
            let after = hay.get(e + 1).copied().unwrap_or(0);
            let prev = if s == 0 { 0 } else { hay[s - 1] };
            matches!(after, b':' | b'=' | b' ' | b'\t') | matches!(prev, b'-' | b'.') | (e - s == 6)
        }
        _ => false,
    }
}

/// What the byte after a word says about a value after it (see
/// [`may_start_value`]): most bytes rule one out with this one lookup.
const ASSIGNED: u8 = 1;
const QUOTED: u8 = 2;
const SPACED: u8 = 3;
const AFTER_KEY: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b':' as usize] = ASSIGNED;
    t[b'=' as usize] = ASSIGNED;
    t[b'"' as usize] = QUOTED;
    t[b'\'' as usize] = QUOTED;
    t[b'\\' as usize] = QUOTED;
    t[b' ' as usize] = SPACED;
    t[b'\t' as usize] = SPACED;
    t
};

/// All findings in `text`: sorted, non-overlapping, on char boundaries
/// (every reader starts and stops at ASCII bytes).
pub(super) fn spans(text: &str, keys: &PersonKeys) -> Vec<Span> {
    let hay = text.as_bytes();
    spans_until(hay, Resume::default(), Pause::NEVER, keys).0
}

/// How far any reader looks ahead of where it starts: a PEM key's end
/// (64 KiB, `tokens::pem`) and its label line, a JWT's three segments of
/// at most 16 KiB each; every other reader stops within 5 KiB. A piece of
/// a longer text scanned with this much of the text after its last start
/// finds what the whole scan finds there.
pub(super) const MAX_REACH: usize = 96 * 1024;

/// How far a reader looks back from where it starts: 64 bytes of an
/// e-mail's local part or of a key, 48 bytes for "secret", the words
/// before a card or phone number, a line's indentation.
pub(super) const MAX_LOOKBACK: usize = 256;

/// Where a scan of part of a text stopped, and the state that a scan of
/// the rest starts from so that it finds what one scan of the whole would.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Resume {
    /// The next byte to look at.
    pub(super) at: usize,
    /// Hex runs before this were read by the IPv6/MAC reader.
    hex_done: usize,
}

impl Resume {
    /// The state after skipping to `p` (the end of a value taken whole).
    pub(super) fn skip_to(self, p: usize) -> Self {
        Self {
            at: self.at.max(p),
            hex_done: self.hex_done.max(p),
        }
    }

    /// The same state for the text with its first `n` bytes dropped
    /// (`n <= at`).
    pub(super) fn shifted(self, n: usize) -> Self {
        Self {
            at: self.at - n,
            hex_done: self.hex_done.saturating_sub(n),
        }
    }
}

/// When a scan of part of a text may stop: at the first byte at or after
/// `after` where no finding is open (every value found so far ends there)
/// and none can start earlier (the byte before could not be in an e-mail
/// address's local part or open a phone number); at `limit` if only the
/// latter holds (a value is open: it is taken whole), and at
/// `limit + (limit - after)` in any case (text built so that neither holds
/// for that long: a finding may start before where the scan stopped).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pause {
    pub(super) after: usize,
    pub(super) limit: usize,
}

impl Pause {
    /// Never stops before the end.
    pub(super) const NEVER: Self = Self {
        after: usize::MAX,
        limit: usize::MAX,
    };

    #[inline]
    fn now(&self, hay: &[u8], i: usize, quiet: bool) -> bool {
        let clear = i == 0 || !(email_local(hay[i - 1]) || hay[i - 1] == b'(');
        (clear && (quiet || i >= self.limit))
            || i >= self.limit.saturating_add(self.limit - self.after)
    }
}

/// The findings from `from.at` on, until the scan may pause (see [`Pause`]),
/// and where it stopped. Offsets are into `hay`; bytes before `from.at` are
/// only looked back at. The findings end at or before the returned `at`,
/// unless the scan stopped at `limit` with a value still open (sorted,
/// non-overlapping, on char boundaries, as [`spans`]).
pub(super) fn spans_until(
    hay: &[u8],
    from: Resume,
    pause: Pause,
    keys: &PersonKeys,
) -> (Vec<Span>, Resume) {
    let mut found: Vec<Span> = Vec::new();
    let mut names: Vec<Span> = Vec::new();
    let mut pem_ends = PemEnds::default();
    let mut value_ends = ValueEnds::default();
    // Hex runs already read by the IPv6/MAC reader.
    let mut hex_done = from.hex_done;
    // The end of the values found by their key so far (they do not move `i`).
    let mut open_until = 0usize;
    let push =
        |v: &mut Vec<Span>, (start, end, kind): numeric::Hit| v.push(Span { start, end, kind });
    let n = hay.len();
    let mut i = from.at;
    while i < n {
        if i >= pause.after && pause.now(hay, i, open_until <= i && hex_done <= i) {
            break;
        }
        let b = hay[i];
        if !is_word(b) {
            // A trigger, or whatever byte a finding ended before.
            match b {
                b'@' => {
                    if let Some(h) = email(hay, i) {
                        push(&mut found, h);
                        i = h.1;
                        continue;
                    }
                }
                b'-' if hay[i..].starts_with(b"-----BEGIN") => {
                    if let Some(h) = tokens::pem(hay, i, &mut pem_ends) {
                        push(&mut found, h);
                        i = h.1;
                        continue;
                    }
                }
                b':' if hay.get(i + 1) == Some(&b'/') && hay.get(i + 2) == Some(&b'/') => {
                    if let Some(h) = tokens::url_credentials(hay, i) {
                        push(&mut found, h);
                        i = h.1;
                        continue;
                    }
                }
                b':' if hay.get(i + 1) == Some(&b':')
                    && i >= hex_done
                    && (i == 0 || !(is_word(hay[i - 1]) || hay[i - 1] == b':')) =>
                {
                    let (hit, end) = numeric::hex(hay, i);
                    hex_done = end;
                    if let Some(h) = hit {
                        push(&mut found, h);
                        i = h.1;
                        continue;
                    }
                }
                _ => {}
            }
            i = next_start(hay, i + 1);
            continue;
        }
        let s = i;
        let e = word_end(hay, i + 1);
        if let Some(h) = word(hay, s, e, &mut hex_done) {
            push(&mut found, h);
            i = e.max(h.1);
            continue;
        }
        if keys.may_end_key(hay[e - 1]) && may_start_value(hay, s, e) {
            if let Some(h) = names::after_key(hay, e, keys) {
                if h.2 == PiiKind::Name {
                    // The value is still read normally: anything more specific
                    // inside it (an email) wins over the name.
                    open_until = open_until.max(h.1);
                    push(&mut names, h);
                } else {
                    push(&mut found, h);
                    i = h.1;
                    continue;
                }
            } else if keys::candidate(hay, s, e)
                && let Some(h) = keys::after_key(hay, s, e, &mut value_ends)
            {
                // Likewise: a value after `token=` that is a GitHub token or a
                // JWT is reported as such; the key only covers what is left.
                open_until = open_until.max(h.1);
                push(&mut names, h);
            }
        }
        i = next_start(hay, e);
    }
    // Keys are met in order, so this is nearly always sorted already.
    names.sort_by_key(|s| s.start);
    let stop = Resume {
        at: i.min(n),
        hex_done,
    };
    (resolve(hay, found, names), stop)
}

fn word(hay: &[u8], s: usize, e: usize, hex_done: &mut usize) -> Option<numeric::Hit> {
    let first = hay[s];
    if first.is_ascii_digit()
        && numeric::start_ok(hay, s)
        && let Some(h) = numeric::numeric(hay, s)
    {
        return Some(h);
    }
    // The byte after the word first: it rejects nearly every word.
    let next = hay.get(e).copied().unwrap_or(0);
    let len = e - s;
    if (next == b':' || (next == b'-' && len == 2))
        && len <= 4
        && first.is_ascii_hexdigit()
        && s >= *hex_done
        && (s == 0 || !(is_word(hay[s - 1]) || matches!(hay[s - 1], b'.' | b'-')))
    {
        let (hit, end) = numeric::hex(hay, s);
        *hex_done = end;
        if hit.is_some() {
            return hit;
        }
    }
    if first.is_ascii_alphabetic() {
        return tokens::at_word(hay, s, e);
    }
    None
}

/// Bytes of a local part; any non-ASCII byte too (internationalised
/// addresses), so that `jöhn@…` is not cut to `hn@…`.
fn email_local(b: u8) -> bool {
    const LOCAL: [bool; 256] = {
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            let c = i as u8;
            table[i] = c.is_ascii_alphanumeric()
                || matches!(c, b'.' | b'%' | b'+' | b'-' | b'_')
                || c >= 0x80;
            i += 1;
        }
        table
    };
    LOCAL[usize::from(b)]
}

/// `local@domain.tld` around the `@` at `at`. The local part is read
/// backwards at most 64 bytes, the domain forwards at most 255: both stop
/// at the next `@`, so no byte is read twice across `@`s.
fn email(hay: &[u8], at: usize) -> Option<numeric::Hit> {
    let mut ls = at;
    while ls > 0 && at - ls < 64 && email_local(hay[ls - 1]) {
        ls -= 1;
    }
    if ls > 0 && email_local(hay[ls - 1]) {
        return None;
    }
    while ls < at && matches!(hay[ls], b'.' | b'-' | b'+') {
        ls += 1;
    }
    if ls == at {
        return None;
    }
    let d = at + 1;
    let mut p = d;
    let mut end = None;
    loop {
        let label = hay[p..]
            .iter()
            .take(64)
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b >= 0x80)
            .count();
        if label == 0 || hay[p] == b'-' || hay[p + label - 1] == b'-' {
            break;
        }
        let is_tld = label >= 2 && hay[p..p + label].iter().all(u8::is_ascii_alphabetic);
        p += label;
        if is_tld && p > d + label {
            end = Some(p);
        }
        if p - d > 255 || hay.get(p) != Some(&b'.') {
            break;
        }
        p += 1;
    }
    let end = end?;
    let next_ok = hay
        .get(end)
        .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'@'));
    next_ok.then_some((ls, end, PiiKind::Email))
}

/// Sorts and drops overlaps: the earlier start wins, then the longer span.
/// Values found only by their key (`soft`: names, generic secrets) yield to
/// every other kind (a name value may hold an email, a `token=` value a
/// JWT), except that a secret value strictly containing other findings
/// wins over them: a password holding an `@` is still one password, whole.
fn hay_space(text: &[u8], i: usize) -> bool {
    text[i].is_ascii_whitespace()
}

fn resolve(text: &[u8], mut found: Vec<Span>, soft: Vec<Span>) -> Vec<Span> {
    found.sort_unstable_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut out: Vec<Span> = Vec::with_capacity(found.len() + soft.len());
    for s in found {
        if out.last().is_none_or(|l| s.start >= l.end) {
            out.push(s);
        }
    }
    if soft.is_empty() {
        return out;
    }
    let mut merged = Vec::with_capacity(out.len() + soft.len());
    let mut j = 0;
    for s in soft {
        while j < out.len() && out[j].end <= s.start {
            merged.push(out[j]);
            j += 1;
        }
        if merged.last().is_some_and(|l: &Span| l.end > s.start) {
            continue;
        }
        let inner = &out[j..];
        let k = inner.iter().take_while(|f| f.start < s.end).count();
        let inner = &inner[..k];
        let equal = k == 1 && inner[0].start == s.start && inner[0].end == s.end;
        let within = inner.iter().all(|f| f.start >= s.start && f.end <= s.end);
        if k == 0 || (s.kind.is_credential() && within && !equal) {
            merged.push(s);
            j += k;
        } else if inner[0].start > s.start {
            // A value read to the end of its line (or a name read over
            // capitalised words) runs into another finding: the value is
            // what comes before it.
            let mut end = inner[0].start;
            while end > s.start && hay_space(text, end - 1) {
                end -= 1;
            }
            if end > s.start {
                merged.push(Span { end, ..s });
            }
        }
    }
    merged.extend_from_slice(&out[j..]);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(&str, PiiKind)> {
        let keys = PersonKeys::new(super::super::DEFAULT_PERSON_KEYS);
        spans(text, &keys)
            .into_iter()
            .map(|s| (&text[s.start..s.end], s.kind))
            .collect()
    }

    #[test]
    fn emails_and_near_misses() {
        assert_eq!(
            kinds("to jane.doe+x@mail.example.co.uk."),
            vec![("jane.doe+x@mail.example.co.uk", PiiKind::Email)]
        );
        assert!(kinds("pkg@1.2.3 and user@host and @@@ and a@b.c").is_empty());
        assert_eq!(
            kinds("mail jöhn.doe@exämple.de now"),
            vec![("jöhn.doe@exämple.de", PiiKind::Email)]
        );
    }

    #[test]
    fn url_credentials_beat_the_email_inside() {
        assert_eq!(
            kinds("DATABASE_URL=postgres://app:pw@db.example.com/x"),
            vec![("app:pw", PiiKind::UrlCredentials)]
        );
    }

    #[test]
    fn placeholders_survive_a_second_pass() {
        assert!(kinds("<EMAIL_1> <IPV4_12> <ACCOUNT_ID_3> Owner: <NAME_1> <PHONE_2>").is_empty());
    }

    #[test]
    fn aws_ids_are_not_secrets() {
        let t = "i-0abc1234def567890 sg-0123456789abcdef0 vol-012345678901 snap-0a1b2c3d4e5f67890 ami-0123456789abcdef0 2026-11-25T10:00:00Z 1234.56";
        assert!(kinds(t).is_empty(), "{:?}", kinds(t));
    }

    #[test]
    fn overlaps_resolve_to_one_span() {
        let t = "Owner: jane@example.com, ip 10.0.0.1";
        assert_eq!(
            kinds(t),
            vec![
                ("jane@example.com", PiiKind::Email),
                ("10.0.0.1", PiiKind::Ipv4)
            ]
        );
    }
}
