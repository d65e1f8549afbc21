//! Candidates that start with a digit (or `+`/`(` before one): IPv4, SSN,
//! account ids, card numbers and phone numbers, plus the hex-and-colon
//! shapes IPv6 and MAC.
//!
//! A candidate is read once into at most [`MAX_GROUPS`] digit groups and
//! their separators; every kind is then a rule over that group list. Reading
//! is bounded (groups, digits per group), so the cost per start position is
//! a constant and the whole scan stays linear.

use std::net::Ipv6Addr;

use super::patterns::PiiKind;
use super::validate::{card_issuer_ok, luhn, octet, ssn_ok};

const MAX_GROUPS: usize = 8;
/// Longer digit runs are no kind we know (card numbers stop at 19).
const MAX_GROUP_DIGITS: usize = 20;

#[derive(Clone, Copy, Default)]
struct Group {
    start: usize,
    end: usize,
    /// The separator before this group: 0 for the first, else `-`, `.`,
    /// ` `, `)` (closing a parenthesised group) or `(` (opening one).
    sep: u8,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A finding: byte range and kind.
pub(super) type Hit = (usize, usize, PiiKind);

/// Whether a candidate may end at `end`: the next byte does not continue a
/// word or a number (`1.2.3.4.5`, `123-45-6789-0` are something else).
pub(super) fn boundary_ok(hay: &[u8], end: usize) -> bool {
    match hay.get(end) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => false,
        Some(b'.' | b'-') => !hay.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

/// Whether a number may start at `s`: it is not the tail of a word, a
/// decimal (`1.5`) or a resource id (`i-0123…`, `2026-11-25`).
pub(super) fn start_ok(hay: &[u8], s: usize) -> bool {
    if s == 0 {
        return true;
    }
    let prev = hay[s - 1];
    let signed = (prev == b'-') | (prev == b'+') | (prev == b'(');
    // `|` rather than `||`: one branch for the common case, a number after
    // a space or a quote.
    if prev.is_ascii_alphanumeric() | (prev == b'_') | (prev == b'.') | signed {
        return signed && (s < 2 || !hay[s - 2].is_ascii_alphanumeric());
    }
    true
}

fn read_groups(hay: &[u8], s: usize, groups: &mut [Group; MAX_GROUPS], paren: bool) -> usize {
    let mut n = 0;
    let mut i = s;
    let mut sep = 0u8;
    let mut open = paren;
    let digit_at = |j: usize| hay.get(j).is_some_and(u8::is_ascii_digit);
    loop {
        let gs = i;
        while i < hay.len() && hay[i].is_ascii_digit() && i - gs <= MAX_GROUP_DIGITS {
            i += 1;
        }
        if i == gs || i - gs > MAX_GROUP_DIGITS {
            // An over-long run is no group we know; what came before stands.
            return n;
        }
        groups[n] = Group {
            start: gs,
            end: i,
            sep,
        };
        n += 1;
        if n == MAX_GROUPS {
            return n;
        }
        match hay.get(i) {
            Some(&c @ (b'-' | b'.' | b' ')) if digit_at(i + 1) => {
                sep = c;
                i += 1;
            }
            Some(b' ') if !open && hay.get(i + 1) == Some(&b'(') && digit_at(i + 2) => {
                sep = b'(';
                open = true;
                i += 2;
            }
            Some(b')') if open => {
                open = false;
                sep = b')';
                if digit_at(i + 1) {
                    i += 1;
                } else if matches!(hay.get(i + 1), Some(b' ' | b'-')) && digit_at(i + 2) {
                    i += 2;
                } else {
                    return n;
                }
            }
            _ => return n,
        }
    }
}

/// Tries every digit-led kind at `s`, which the caller found at a word start.
#[inline]
pub(super) fn numeric(hay: &[u8], s: usize) -> Option<Hit> {
    if short_alone(hay, s) {
        return None;
    }
    grouped(hay, s)
}

#[inline(never)]
fn grouped(hay: &[u8], s: usize) -> Option<Hit> {
    let prev = if s > 0 { hay[s - 1] } else { 0 };
    let plus = prev == b'+';
    let paren = prev == b'(';
    let mut g = [Group::default(); MAX_GROUPS];
    let n = read_groups(hay, s, &mut g, paren);
    if n == 0 {
        return None;
    }
    let g = &g[..n];
    // Every kind but IPv4 (four groups) has seven digits or more: decimals
    // (`3.1415`, `1299.99`) stop here.
    if n < 4 && g.iter().map(Group::len).sum::<usize>() < 7 {
        return None;
    }
    if !plus {
        if let Some(hit) = ipv4(hay, g) {
            return hit;
        }
        if let Some(hit) = ssn_or_account_dashed(hay, g) {
            return Some(hit);
        }
        if let Some(hit) = card(hay, g) {
            return Some(hit);
        }
        if g[0].len() == 12 && boundary_ok(hay, g[0].end) {
            // Twelve digits are an AWS account id, unless the text says card.
            let d = &hay[g[0].start..g[0].end];
            let kind = if card_issuer_ok(d) && luhn(d) && card_context(hay, s) {
                PiiKind::CreditCard
            } else {
                PiiKind::AccountId
            };
            return Some((s, g[0].end, kind));
        }
    }
    phone(hay, s, g, plus, paren)
}

/// Fewer digits than any kind read as one group (a `+` phone of 8 digits
/// is the shortest), with nothing after them that [`read_groups`] could take
/// as a next group: most numbers in logs (counters, durations, times), told
/// apart before the groups are read.
#[inline]
fn short_alone(hay: &[u8], s: usize) -> bool {
    const SHORTEST_ALONE: usize = 8;
    let run = hay[s..]
        .iter()
        .take(SHORTEST_ALONE)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if run == SHORTEST_ALONE {
        return false;
    }
    let next = hay.get(s + run).copied().unwrap_or(0);
    let after = hay.get(s + run + 1).copied().unwrap_or(0);
    let more = ((next == b'-') | (next == b'.') | (next == b' '))
        & (after.is_ascii_digit() | (after == b'('))
        | (next == b')');
    !more
}

/// `Some(None)`: it is a dotted quad but a non-personal one, so stop looking.
fn ipv4(hay: &[u8], g: &[Group]) -> Option<Option<Hit>> {
    if g.len() < 4 || g[1..4].iter().any(|x| x.sep != b'.') {
        return None;
    }
    if g.len() > 4 && g[4].sep == b'.' {
        return None;
    }
    if !g[..4].iter().all(|x| octet(&hay[x.start..x.end])) || !boundary_ok(hay, g[3].end) {
        return None;
    }
    let text = &hay[g[0].start..g[3].end];
    // "The whole internet" and broadcast say something about a rule, not a person.
    if text == b"0.0.0.0" || text == b"255.255.255.255" {
        return Some(None);
    }
    Some(Some((g[0].start, g[3].end, PiiKind::Ipv4)))
}

fn ssn_or_account_dashed(hay: &[u8], g: &[Group]) -> Option<Hit> {
    if g.len() < 3 || g[1].sep != b'-' || g[2].sep != b'-' || !boundary_ok(hay, g[2].end) {
        return None;
    }
    let lens = (g[0].len(), g[1].len(), g[2].len());
    let at = |x: &Group| &hay[x.start..x.end];
    if lens == (3, 2, 4) && ssn_ok(at(&g[0]), at(&g[1]), at(&g[2])) {
        return Some((g[0].start, g[2].end, PiiKind::Ssn));
    }
    if lens == (4, 4, 4) {
        return Some((g[0].start, g[2].end, PiiKind::AccountId));
    }
    None
}

fn card(hay: &[u8], g: &[Group]) -> Option<Hit> {
    let mut digits = [0u8; 24];
    if g[0].len() >= 13 {
        let d = &hay[g[0].start..g[0].end];
        return (boundary_ok(hay, g[0].end) && card_issuer_ok(d) && luhn(d)).then_some((
            g[0].start,
            g[0].end,
            PiiKind::CreditCard,
        ));
    }
    if g[0].len() != 4 || g.len() < 3 {
        return None;
    }
    let sep = g[1].sep;
    if sep != b' ' && sep != b'-' {
        return None;
    }
    // Longest grouping first: 4-4-4-4-3 before 4-4-4-4.
    let k_max = g
        .iter()
        .take_while(|x| x.sep == 0 || x.sep == sep)
        .count()
        .min(5);
    for k in (3..=k_max).rev() {
        let total: usize = g[..k].iter().map(Group::len).sum();
        if !(13..=19).contains(&total) || g[1..k].iter().any(|x| !(3..=6).contains(&x.len())) {
            continue;
        }
        if !boundary_ok(hay, g[k - 1].end) || (k < g.len() && g[k].sep == sep && sep == b'-') {
            continue;
        }
        let mut m = 0;
        for x in &g[..k] {
            digits[m..m + x.len()].copy_from_slice(&hay[x.start..x.end]);
            m += x.len();
        }
        let d = &digits[..m];
        if card_issuer_ok(d) && luhn(d) {
            return Some((g[0].start, g[k - 1].end, PiiKind::CreditCard));
        }
    }
    None
}

/// Phone numbers: international (`+…`, `00…`), parenthesised area codes,
/// North American 3-3-4, and national numbers with a trunk `0` in groups.
fn phone(hay: &[u8], s: usize, g: &[Group], plus: bool, paren: bool) -> Option<Hit> {
    let total = |k: usize| g[..k].iter().map(Group::len).sum::<usize>();
    let seps_plain = |k: usize| g[1..k].iter().all(|x| matches!(x.sep, b'-' | b'.' | b' '));
    let first = &hay[g[0].start..g[0].end];
    let ends_ok = |end: usize| boundary_ok(hay, end + extension(hay, end));
    let best = |lo: usize, hi: usize, ok_seps: &dyn Fn(usize) -> bool| {
        (1..=g.len())
            .rev()
            .find(|&k| (lo..=hi).contains(&total(k)) && ok_seps(k) && ends_ok(g[k - 1].end))
    };
    let (start, k) = if plus {
        (s - 1, best(8, 15, &|_| true)?)
    } else if first.starts_with(b"00") && (3..=5).contains(&first.len()) && g.len() > 1 {
        (s, best(10, 17, &|_| true)?)
    } else if paren {
        if g.len() < 2 || g[1].sep != b')' || !(2..=4).contains(&g[0].len()) {
            return None;
        }
        (
            s - 1,
            best(8, 12, &|k| {
                k >= 2 && g[2..k].iter().all(|x| x.sep != b'(' && x.sep != b')')
            })?,
        )
    } else if let Some(k) = nanp(g) {
        if !ends_ok(g[k - 1].end) {
            return None;
        }
        (s, k)
    } else if first[0] == b'0' && g.len() > 1 && (2..=5).contains(&first.len()) {
        let k = best(9, 12, &|k| {
            k > 1 && seps_plain(k) && g[1..k].iter().all(|x| x.sep == g[1].sep && x.len() >= 2)
        })?;
        (s, k)
    } else {
        return loose_phone(hay, s, g);
    };
    let end = g[k - 1].end + extension(hay, g[k - 1].end);
    // `00860561-8751-abce-…` is a UUID, not a number with a suffix.
    let hex_after = hay
        .get(end + 1..end + 5)
        .is_some_and(|w| w.iter().all(u8::is_ascii_hexdigit));
    if hay.get(end) == Some(&b'-') && hex_after {
        return None;
    }
    Some((start, end, PiiKind::Phone))
}

/// Shapes too common in logs to call phones on their own (`737 219 628`,
/// `60-56-85-91`, `5403926876`): phones only next to a word that says so
/// (`phone: 737 219 628`, `737 219 628 office`, `5403926876-Fax`).
fn loose_phone(hay: &[u8], s: usize, g: &[Group]) -> Option<Hit> {
    let total = |k: usize| g[..k].iter().map(Group::len).sum::<usize>();
    if g.len() >= 3 && g[0].len() == 4 && g[1].len() == 2 && g[2].len() == 2 {
        // A date, whatever the separator.
        return None;
    }
    let k = (1..=g.len()).rev().find(|&k| {
        let digits = total(k);
        let grouped = k >= 2
            && g[1..k]
                .iter()
                .all(|x| x.sep == g[1].sep && matches!(x.sep, b' ' | b'-' | b'.'));
        ((grouped && (7..=12).contains(&digits)) || (k == 1 && (10..=11).contains(&digits)))
            && boundary_ok(hay, g[k - 1].end)
    })?;
    let end = g[k - 1].end;
    (phone_context(hay, s) || phone_suffix(hay, end)).then_some((s, end, PiiKind::Phone))
}

/// Whether a label of address blocks (`office`, `fax`, `mobile`, …) follows
/// the number within a separator or two, as in `416 60 039 office`.
fn phone_suffix(hay: &[u8], end: usize) -> bool {
    const WORDS: [&[u8]; 6] = [b"office", b"fax", b"mobile", b"cell", b"home", b"work"];
    let gap = hay[end..]
        .iter()
        .take(3)
        .take_while(|b| matches!(b, b' ' | b'-' | b'\t' | b'(' | b','))
        .count();
    if gap == 0 {
        return false;
    }
    let rest = &hay[end + gap..];
    WORDS.iter().any(|w| {
        rest.len() >= w.len()
            && rest[..w.len()].eq_ignore_ascii_case(w)
            && rest.get(w.len()).is_none_or(|b| !b.is_ascii_alphabetic())
    })
}

/// Whether "card" or "cc" appears in the 40 bytes before `s`.
fn card_context(hay: &[u8], s: usize) -> bool {
    let win = &hay[s.saturating_sub(40)..s];
    win.windows(4).any(|x| x.eq_ignore_ascii_case(b"card"))
        || win.windows(3).any(|x| x.eq_ignore_ascii_case(b"cc "))
}

/// Whether a phone word (`Phone:`, `mobile`, `tel`, `fax`, `call me on`)
/// ends at most 24 bytes before `s` with no digit in between (so the word
/// belongs to this number, not to a number before it).
fn phone_context(hay: &[u8], s: usize) -> bool {
    const WORDS: [&[u8]; 7] = [
        b"phone", b"mobile", b"tel", b"fax", b"desk", b"cell", b"call",
    ];
    let from = s.saturating_sub(24);
    let win = &hay[from..s];
    let after_last_digit = win
        .iter()
        .rposition(u8::is_ascii_digit)
        .map_or(0, |p| p + 1);
    let win = &win[after_last_digit..];
    // The word must start a word: "Patel" does not say "tel". Only bytes
    // that start one of the words are compared (this runs for every
    // ten-digit number, and epoch seconds are common).
    (0..win.len()).any(|i| {
        matches!(win[i] | 0x20, b'p' | b'm' | b't' | b'f' | b'd' | b'c')
            && (i == 0 || !win[i - 1].is_ascii_alphabetic())
            && WORDS.iter().any(|w| {
                win[i..]
                    .get(..w.len())
                    .is_some_and(|x| x.eq_ignore_ascii_case(w))
            })
    })
}

/// Length of an extension `x123` right after a phone number, or 0.
fn extension(hay: &[u8], end: usize) -> usize {
    if hay.get(end) != Some(&b'x') {
        return 0;
    }
    let ext = hay[end + 1..]
        .iter()
        .take(6)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if (1..=5).contains(&ext) { 1 + ext } else { 0 }
}

/// North American `[1-]555-010-0000`: returns how many groups it uses.
fn nanp(g: &[Group]) -> Option<usize> {
    let off = usize::from(g[0].len() == 1 && g.len() >= 4);
    let rest = g.get(off..off + 3)?;
    let lens = (rest[0].len(), rest[1].len(), rest[2].len());
    let sep = rest[1].sep;
    (lens == (3, 3, 4) && rest[2].sep == sep && matches!(sep, b'-' | b'.' | b' '))
        .then_some(off + 3)
}

/// IPv6 or MAC starting at `s` (a hex digit, or `:` of a leading `::`).
/// Returns the hit, if any, and the end of the hex run read, so the caller
/// does not read the same run again from a later position.
pub(super) fn hex(hay: &[u8], s: usize) -> (Option<Hit>, usize) {
    let run = hay[s..]
        .iter()
        .take(46)
        .take_while(|b| b.is_ascii_hexdigit() || **b == b':' || **b == b'.')
        .count();
    let end = s + run;
    if run > 45 {
        return (None, end);
    }
    if let Some(hit) = mac(hay, s) {
        return (Some(hit), end);
    }
    let mut cand = &hay[s..end];
    while let [rest @ .., b'.'] = cand {
        cand = rest;
    }
    // A trailing single `:` is punctuation ("on fe80::1: timeout").
    if cand.ends_with(b":") && !cand.ends_with(b"::") {
        cand = &cand[..cand.len() - 1];
    }
    let e = s + cand.len();
    let colons = cand.iter().filter(|b| **b == b':').count();
    if colons < 2 || !cand.iter().any(u8::is_ascii_digit) || !boundary_ok(hay, e) {
        return (None, end);
    }
    let Ok(text) = std::str::from_utf8(cand) else {
        return (None, end);
    };
    match text.parse::<Ipv6Addr>() {
        // `::` (as in `::/0`) is "any address": a rule, not a person.
        Ok(addr) if !addr.is_unspecified() => (Some((s, e, PiiKind::Ipv6)), end),
        _ => (None, end),
    }
}

fn mac(hay: &[u8], s: usize) -> Option<Hit> {
    let m = hay.get(s..s + 17)?;
    let sep = m[2];
    if sep != b':' && sep != b'-' {
        return None;
    }
    let ok = m.chunks(3).all(|c| {
        c[0].is_ascii_hexdigit() && c[1].is_ascii_hexdigit() && (c.len() == 2 || c[2] == sep)
    });
    let next_ok = match hay.get(s + 17) {
        None => true,
        Some(c) => !(c.is_ascii_alphanumeric() || *c == b'_' || *c == sep),
    };
    (ok && next_ok).then_some((s, s + 17, PiiKind::Mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<(String, PiiKind)> {
        let h = text.as_bytes();
        let s = h.iter().position(u8::is_ascii_digit)?;
        numeric(h, s).map(|(a, b, k)| (text[a..b].to_owned(), k))
    }

    #[test]
    fn phones_in_common_formats() {
        for p in [
            "+1 (555) 010-0000",
            "0171 1234567",
            "+44 20 7946 0958",
            "(555) 010-0000",
            "555-010-0000",
            "1-800-555-0100",
            "07700 900 123",
            "03.93.92.16.85",
            "+15550100000",
            "0044 20 7946 0958",
            "345-899-3560x4587",
            "+46 (0)8 928 571 38",
        ] {
            assert_eq!(
                kind(&format!("call {p} now")),
                Some((p.to_owned(), PiiKind::Phone)),
                "{p}"
            );
        }
    }

    #[test]
    fn bare_digit_groups_are_phones_only_next_to_a_phone_word() {
        assert_eq!(
            kind("416 60 039 office"),
            Some(("416 60 039".into(), PiiKind::Phone))
        );
        assert_eq!(
            kind("3660170548-Fax"),
            Some(("3660170548".into(), PiiKind::Phone))
        );
        assert_eq!(
            kind("phone: 737 219 628"),
            Some(("737 219 628".into(), PiiKind::Phone))
        );
        assert_eq!(kind("read 416 60 039 bytes"), None);
        assert_eq!(kind("416 60 039 offices4u"), None);
        assert_eq!(kind("416 60 039office"), None);
    }

    #[test]
    fn dates_prices_versions_are_not_phones() {
        for t in [
            "2026-11-25",
            "1234.56",
            "1.24.3",
            "10:30:45",
            "01.12.2024",
            "8080 9090",
        ] {
            assert_eq!(kind(&format!("x {t} y")), None, "{t}");
        }
    }

    #[test]
    fn ipv4_and_its_near_misses() {
        assert_eq!(
            kind("at 10.1.2.3:443"),
            Some(("10.1.2.3".into(), PiiKind::Ipv4))
        );
        assert_eq!(kind("v 1.2.3.4.5"), None);
        assert_eq!(kind("x 256.1.1.1 y"), None);
        assert_eq!(kind("x 0.0.0.0/0"), None);
    }

    #[test]
    fn account_ssn_card() {
        assert_eq!(
            kind("arn:aws:iam::123456789012:role/x"),
            Some(("123456789012".into(), PiiKind::AccountId))
        );
        assert_eq!(kind("x 1234567890123 y"), None);
        assert_eq!(
            kind("ssn 123-45-6789."),
            Some(("123-45-6789".into(), PiiKind::Ssn))
        );
        assert_eq!(kind("ssn 000-45-6789."), None);
        assert_eq!(
            kind("cc 4111 1111 1111 1111 exp"),
            Some(("4111 1111 1111 1111".into(), PiiKind::CreditCard))
        );
        assert_eq!(
            kind("cc 4111-1111-1111-1111"),
            Some(("4111-1111-1111-1111".into(), PiiKind::CreditCard))
        );
        assert_eq!(kind("cc 4111111111111112"), None);
        assert_eq!(kind("ts 1732579200000"), None);
    }

    #[test]
    fn ipv6_and_mac() {
        let h = b"at 2001:db8::8a2e:370:7334/64 and 00:1a:2b:3c:4d:5e, ::/0";
        assert_eq!(hex(h, 3).0, Some((3, 26, PiiKind::Ipv6)));
        assert_eq!(hex(h, 34).0, Some((34, 51, PiiKind::Mac)));
        assert_eq!(hex(h, 53).0, None);
        assert_eq!(hex(b"10:30:45", 0).0, None);
    }
}
