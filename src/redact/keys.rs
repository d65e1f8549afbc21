//! Values after secret-like keys, whatever their shape: `DB_PASSWORD=…`,
//! `GITHUB_TOKEN: …`, `"client_secret": "…"`, `api_key = "…"`,
//! `--api-key …`, `Authorization: Bearer …`, `X-Api-Key: …`, and a bearer
//! token anywhere. This is the rule secret scanners call "generic API key":
//! the key names a secret, so its value is one even when no provider format
//! matches (a Twilio auth token is 32 hex digits, like any MD5).
//!
//! A key is recognised by its last segment (`_`, `-`, `.` and camelCase
//! humps separate segments), so `stripeSecretKey`, `X-Auth-Token` and
//! `aws.secret` all qualify while `bypass` and `oauth` do not. Keys whose
//! value is by nature not secret (`NextToken`, `ClientToken`, `PublicKey`,
//! `PartitionKey`, …) are excluded, and values that name rather than hold a
//! secret (`$VAR`, `${{ secrets.X }}`, `<placeholder>`, paths, ARNs, `null`)
//! are left alone.
//!
//! Linear: a key is looked at only when the byte after its word can start a
//! separator, the key is read backwards at most 64 bytes, and value ends
//! are found through [`ValueEnds`], which never searches the same bytes
//! twice.

use super::numeric::Hit;
use super::patterns::{PiiKind, is_placeholder};

/// Longest value taken after a key; a longer run is not one value.
const MAX_VALUE: usize = 1024;
/// Longest bearer token taken.
const MAX_BEARER: usize = 4096;

/// How sure the key makes us, which decides what value is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `password`, `passwd`, `pwd`, `pass`, `passphrase`: any value of 4+
    /// bytes, spaces included when the key starts a line (YAML, env).
    Password,
    /// `secret`, `token`, `api_key`, `auth`, `credentials`, …: 8+ bytes, not
    /// a lower-case word (`required`, `disabled`).
    Strong,
    /// Any other `*_key` / `*Key`: only a value that looks random.
    Weak,
    /// `Authorization` / `Proxy-Authorization`: the credential after the scheme.
    Authorization,
}

/// Key suffixes (lower case, separators removed) whose value is not a secret.
const NOT_SECRET_KEYS: &[&[u8]] = &[
    b"nexttoken",
    b"continuationtoken",
    b"paginationtoken",
    b"pagetoken",
    b"clienttoken",
    b"idempotencytoken",
    b"idempotencykey",
    b"maxtoken",
    b"publickey",
    b"pubkey",
    b"hostkey",
    b"sshkey",
    b"sortkey",
    b"partitionkey",
    b"hashkey",
    b"rangekey",
    b"primarykey",
    b"foreignkey",
    b"objectkey",
    b"s3key",
    b"cachekey",
    b"routingkey",
    b"tagkey",
    b"keykey",
    b"publishablekey",
];

/// Password keys, and whether the suffix must start a segment: `pass` and
/// `pwd` end ordinary words (`bypass`), `password` does not (`PGPASSWORD`).
const PASSWORD_KEYS: &[(&[u8], bool)] = &[
    (b"password", false),
    (b"passwd", false),
    (b"passphrase", false),
    (b"pwd", true),
    (b"pass", true),
];

const STRONG_KEYS: &[(&[u8], bool)] = &[
    (b"secret", false),
    (b"token", false),
    (b"apikey", false),
    (b"secretkey", false),
    (b"privatekey", false),
    (b"accesskey", false),
    (b"accountkey", false),
    (b"signingkey", false),
    (b"encryptionkey", false),
    (b"masterkey", false),
    (b"secretkeybase", false),
    (b"credential", false),
    (b"credentials", false),
    // `oauth`, `unauth` are not keys naming a secret.
    (b"auth", true),
];

/// Values that say "no secret here".
const NOT_SECRETS: &[&[u8]] = &[
    b"null",
    b"none",
    b"nil",
    b"true",
    b"false",
    b"yes",
    b"no",
    b"on",
    b"off",
    b"undefined",
    b"n/a",
    b"tbd",
    b"redacted",
    b"[redacted]",
    b"[filtered]",
    b"hidden",
    b"masked",
    b"secret",
    b"password",
    b"token",
    b"string",
    b"empty",
];

/// Last bytes of the keys this module knows (`password`, `token`, `key`, …).
pub(super) const LAST: [bool; 256] = {
    let mut t = [false; 256];
    let ends = b"dDeEsStTnNyYlLhHrR";
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

/// The scan's filter, run on every word `s..e`: could it start a key's
/// value (its last byte ends a known key, and a separator, a flag's space
/// or `Bearer `'s space follows)? Two table lookups for most words.
#[inline]
pub(super) fn candidate(hay: &[u8], s: usize, e: usize) -> bool {
    if e - s < 3 || !LAST[usize::from(hay[e - 1])] {
        return false;
    }
    match hay.get(e) {
        Some(b':' | b'=' | b'"' | b'\'' | b'\\') => true,
        Some(b' ' | b'\t') => {
            is_flag(hay, s)
                || matches!(hay.get(e + 1), Some(b':' | b'=' | b' ' | b'\t'))
                || (e - s == 6 && hay[s..e].eq_ignore_ascii_case(b"bearer"))
        }
        _ => false,
    }
}

/// Whether the word at `s` ends a command-line flag's name: `--secret`, and
/// also a dotted or dashed one such as `--app.secret` or `--db-password`
/// (the flag's name runs back over key characters to a `-`).
fn is_flag(hay: &[u8], s: usize) -> bool {
    let mut ks = s;
    while ks > 0 && s - ks < 64 && key_char(hay[ks - 1]) {
        ks -= 1;
    }
    ks < s && hay[ks] == b'-'
}

/// Whether a word ending at `e` could end a secret-like key: a test on its
/// last three letters before anything else is read.
fn may_end_key(hay: &[u8], s: usize, e: usize) -> bool {
    if e - s < 3 {
        return false;
    }
    let l = |i: usize| hay[e - i].to_ascii_lowercase();
    matches!(
        [l(3), l(2), l(1)],
        [b'o', b'r', b'd']
            | [b's', b'w', b'd']
            | [b'p', b'w', b'd']
            | [b'a', b's', b'e']
            | [b'a', b's', b's']
            | [b'r', b'e', b't']
            | [b'k', b'e', b'n']
            | [b'k', b'e', b'y']
            | [b'i', b'a', b'l']
            | [b'a', b'l', b's']
            | [b'u', b't', b'h']
            | [b'i', b'o', b'n']
            | [b'r', b'e', b'r']
    )
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The key's segments, lower-cased and joined (at most 64 bytes), and where
/// each segment starts in that string.
fn normalise(key: &[u8]) -> ([u8; 64], usize, u64) {
    let mut out = [0u8; 64];
    let mut n = 0;
    let mut starts = 0u64;
    let mut new_segment = true;
    for (i, &b) in key.iter().enumerate() {
        if !b.is_ascii_alphanumeric() {
            new_segment = true;
            continue;
        }
        let hump = i > 0 && b.is_ascii_uppercase() && {
            let p = key[i - 1];
            p.is_ascii_lowercase()
                || p.is_ascii_digit()
                || (p.is_ascii_uppercase() && key.get(i + 1).is_some_and(u8::is_ascii_lowercase))
        };
        if new_segment || hump {
            starts |= 1 << n;
        }
        new_segment = false;
        out[n] = b.to_ascii_lowercase();
        n += 1;
        if n == 64 {
            break;
        }
    }
    (out, n, starts)
}

/// What a key (`DB_PASSWORD`, `x-api-key`, `clientSecret`) announces.
fn classify(key: &[u8]) -> Option<Class> {
    let (buf, n, starts) = normalise(key);
    let k = &buf[..n];
    let ends_with = |suffix: &[u8], boundary: bool| {
        k.len() >= suffix.len()
            && k.ends_with(suffix)
            && (!boundary || starts & (1 << (k.len() - suffix.len())) != 0)
    };
    if NOT_SECRET_KEYS.iter().any(|s| k.ends_with(s)) {
        return None;
    }
    if ends_with(b"authorization", false) {
        return Some(Class::Authorization);
    }
    if PASSWORD_KEYS.iter().any(|(s, b)| ends_with(s, *b)) {
        return Some(Class::Password);
    }
    if STRONG_KEYS.iter().any(|(s, b)| ends_with(s, *b)) {
        return Some(Class::Strong);
    }
    // `*_key` with a segment before it (`monkey` is not); a bare `key` is a tag's key.
    (k.len() > 3 && ends_with(b"key", true)).then_some(Class::Weak)
}

fn kind(class: Class) -> PiiKind {
    match class {
        Class::Password => PiiKind::Password,
        Class::Strong | Class::Weak | Class::Authorization => PiiKind::Secret,
    }
}

/// The kind of secret a JSON object key announces for its string value, if
/// `value` is one (for the JSON walk, where key and value arrive apart).
pub(super) fn json_value(key: &str, value: &str) -> Option<PiiKind> {
    let class = classify(key.trim().as_bytes())?;
    let v = value.trim().as_bytes();
    let ok = match class {
        Class::Authorization => credential_ok(skip_scheme(v), v.len(), true),
        _ => value_ok(v, class, true),
    };
    ok.then_some(kind(class))
}

/// Whether `cred`, what an `Authorization` value holds after its scheme
/// word (`full_len` long with it), is a credential. After a scheme
/// (`Bearer wibvguqta`) it is one whatever its letters, 8 bytes or more:
/// the lower-case-word exception (`client_secret: required`) names a mode,
/// and no scheme is followed by a mode (found by a property test). Without
/// a scheme the value is judged as any strong key's.
fn credential_ok(cred: &[u8], full_len: usize, spaces_allowed: bool) -> bool {
    if cred.len() < full_len {
        cred.len() >= 8 && value_ok(cred, Class::Password, spaces_allowed)
    } else {
        value_ok(cred, Class::Authorization, spaces_allowed)
    }
}

/// `Bearer abc…` → `abc…`: the credential after an auth scheme word.
fn skip_scheme(v: &[u8]) -> &[u8] {
    let w = v
        .iter()
        .take(32)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .count();
    if w > 0 && v.get(w) == Some(&b' ') {
        &v[w + 1..]
    } else {
        v
    }
}

fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'%')
}

fn value_ok(v: &[u8], class: Class, spaces_allowed: bool) -> bool {
    let min = match class {
        Class::Password => 4,
        Class::Strong | Class::Authorization => 8,
        Class::Weak => 16,
    };
    if v.len() < min || v.len() > MAX_VALUE {
        return false;
    }
    // A reference to a secret, not the secret: `$VAR`, `${{ … }}`, `{{ … }}`,
    // `<your token>`, `%(x)s`, `****`, a path, an ARN.
    if matches!(v[0], b'$' | b'<' | b'{' | b'[' | b'#')
        || v.starts_with(b"%(")
        || is_path(v)
        || v.starts_with(b"arn:")
        || v.iter().all(|b| *b == v[0])
        || NOT_SECRETS.iter().any(|n| v.eq_ignore_ascii_case(n))
        || std::str::from_utf8(v).is_ok_and(is_placeholder)
    {
        return false;
    }
    if !spaces_allowed && v.iter().any(u8::is_ascii_whitespace) {
        return false;
    }
    // `password: username: x`: a key, not a value.
    if v.last() == Some(&b':') {
        return false;
    }
    // `a=b=c…`: assignments run together, not one value (padding `=` only
    // ends a base64 value).
    if !spaces_allowed && v.windows(2).any(|w| w[0] == b'=' && w[1] != b'=') {
        return false;
    }
    match class {
        Class::Password => true,
        // A lower-case word names a mode or a resource (`required`,
        // `my-db-creds`). An underscore is not taken for one: `pil_brhg`
        // under `client_secret` is a password (found by a property test),
        // and a kept value must be plainly not one.
        Class::Strong | Class::Authorization => {
            v.len() >= 16
                || !v
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || matches!(b, b'-' | b' '))
        }
        Class::Weak => looks_random(v),
    }
}

/// `/run/secrets/db`, `~/.pgpass`, `./token.txt`: lower-case path segments.
fn is_path(v: &[u8]) -> bool {
    let rest = if let Some(r) = v.strip_prefix(b"~/") {
        r
    } else if let Some(r) = v.strip_prefix(b"./").or_else(|| v.strip_prefix(b"../")) {
        r
    } else if let Some(r) = v.strip_prefix(b"/") {
        r
    } else {
        return false;
    };
    rest.iter().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'/' | b'.' | b'_' | b'-')
    })
}

/// Mixed case with digits (or 24+ bytes of mixed case), or 32+ bytes of
/// letters and digits (hex); never a UUID (ids under `*_key` names:
/// idempotency keys, KMS key ids).
fn looks_random(v: &[u8]) -> bool {
    if !v
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b'_' | b'-'))
    {
        return false;
    }
    let uuid = v.len() == 36
        && v.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    let digit = v.iter().any(u8::is_ascii_digit);
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    !uuid
        && ((upper && lower && (digit || v.len() >= 24))
            || (digit && (upper || lower) && v.len() >= 32))
}

/// Remembers the next stop byte of one class at or after the last query,
/// so repeated keys on one long line never search the same bytes twice.
#[derive(Debug, Default, Clone, Copy)]
struct NextStop {
    /// Queries from `from` up to `stop` have their answer in `stop`.
    from: usize,
    /// `Some(p)`: the first stop at or after `from`; `None`: none before `searched`.
    stop: Option<usize>,
    /// Bytes before this were searched.
    searched: usize,
}

impl NextStop {
    /// The first position at or after `v` whose byte is a stop, looking at
    /// most `cap` bytes past `v`; the end of the text counts as a stop.
    fn find(
        &mut self,
        hay: &[u8],
        v: usize,
        cap: usize,
        is_stop: impl Fn(u8) -> bool,
    ) -> Option<usize> {
        let mut begin = v;
        if v >= self.from {
            match self.stop {
                Some(p) if p >= v => return (p - v <= cap).then_some(p),
                None if self.searched > v => begin = self.searched,
                _ => {}
            }
        }
        let limit = hay.len().min(v.saturating_add(cap).saturating_add(1));
        let found = hay
            .get(begin..limit)
            .and_then(|w| w.iter().position(|b| is_stop(*b)))
            .map(|i| begin + i);
        self.from = v;
        self.stop = found;
        self.searched = limit.max(begin);
        match found {
            Some(p) => Some(p),
            None if limit == hay.len() => Some(hay.len()),
            None => None,
        }
    }
}

/// The ends of values: one memo per way a value can end.
#[derive(Debug, Default)]
pub(super) struct ValueEnds {
    bare: NextStop,
    double: NextStop,
    single: NextStop,
    line: NextStop,
    token: NextStop,
}

fn ends_bare(b: u8) -> bool {
    b.is_ascii_whitespace() || b",;&\"'<>()[]{}`\\".contains(&b)
}

/// Whether only indentation, a YAML list dash or `export` precede `ks` on its line.
fn line_start(hay: &[u8], ks: usize) -> bool {
    let mut p = ks;
    let floor = ks.saturating_sub(16);
    while p > floor && matches!(hay[p - 1], b' ' | b'\t') {
        p -= 1;
    }
    if p >= 7 && &hay[p - 7..p] == b"export " {
        p -= 7;
    } else if p >= 1 && hay[p - 1] == b'-' && p != ks {
        p -= 1;
        while p > floor && matches!(hay[p - 1], b' ' | b'\t') {
            p -= 1;
        }
    }
    p == 0 || hay[p - 1] == b'\n'
}

/// Called at the end `e` of a word that starts at `s`: the secret value
/// after it, when the word ends a secret-like key or is `Bearer`.
pub(super) fn after_key(hay: &[u8], s: usize, e: usize, ends: &mut ValueEnds) -> Option<Hit> {
    let next = *hay.get(e)?;
    if !matches!(next, b':' | b'=' | b'"' | b'\'' | b' ' | b'\t' | b'\\') || !may_end_key(hay, s, e)
    {
        return None;
    }
    if next == b' ' && hay[s..e].eq_ignore_ascii_case(b"bearer") {
        return bearer(hay, e + 1, ends);
    }
    let mut ks = s;
    while ks > 0 && e - ks < 64 && key_char(hay[ks - 1]) {
        ks -= 1;
    }
    let flag = hay[ks..s].first() == Some(&b'-');
    while ks < s && matches!(hay[ks], b'-' | b'.' | b'_') {
        ks += 1;
    }
    let class = classify(&hay[ks..e])?;
    // Separator: `key=v`, `key: v`, `"key": "v"`, `\"key\":\"v\"`, `key := v`, `--key v`.
    let mut p = e;
    let quoted_key = match hay.get(p) {
        Some(b'\\') if matches!(hay.get(p + 1), Some(b'"' | b'\'')) => {
            p += 2;
            true
        }
        Some(b'"' | b'\'') => {
            p += 1;
            true
        }
        _ => false,
    };
    let spaces = |mut p: usize| {
        let stop = p + 3;
        while p < stop && matches!(hay.get(p), Some(b' ' | b'\t')) {
            p += 1;
        }
        p
    };
    let q = spaces(p);
    // `arn:aws:secretsmanager:…:secret:prod/db`: a segment of a colon path, not a key.
    if hay.get(q) == Some(&b':') && ks > 0 && hay[ks - 1] == b':' {
        return None;
    }
    let (mut v, assigned) = match hay.get(q) {
        Some(b':') if hay.get(q + 1) == Some(&b'=') => (spaces(q + 2), true),
        Some(b':' | b'=') => (spaces(q + 1), true),
        Some(_) if flag && !quoted_key && next == b' ' && q == e + 1 => (q, false),
        _ => return None,
    };
    let mut quote = None;
    match hay.get(v) {
        Some(b'\\') if matches!(hay.get(v + 1), Some(b'"' | b'\'')) => {
            quote = hay.get(v + 1).copied();
            v += 2;
        }
        Some(&c @ (b'"' | b'\'')) => {
            quote = Some(c);
            v += 1;
        }
        Some(b'-') if !assigned => return None,
        Some(_) => {}
        None => return None,
    }
    let closed = quote.and_then(|c| {
        let memo = if c == b'"' {
            &mut ends.double
        } else {
            &mut ends.single
        };
        let close = memo.find(hay, v, MAX_VALUE, |b| b == c)?;
        let eol = ends.line.find(hay, v, MAX_VALUE, |b| b == b'\n');
        (close < hay.len() && eol.is_none_or(|l| l > close)).then_some(close)
    });
    // A quote left open on its line: the value is read as if unquoted.
    if closed.is_none() {
        quote = None;
    }
    if class == Class::Authorization && quote.is_none() {
        // `Authorization: Bearer abc…` unquoted: the credential after the scheme.
        let cred = skip_scheme(&hay[v..hay.len().min(v + 64)]);
        let c = v + (hay.len().min(v + 64) - v - cred.len());
        let end = ends
            .token
            .find(hay, c, MAX_BEARER, |b| !is_token68(b))
            .unwrap_or(c);
        let full_len = if c > v { usize::MAX } else { end - c };
        return credential_ok(&hay[c..end], full_len, false).then_some((c, end, kind(class)));
    }
    let mut end = match closed {
        Some(close) => {
            if close > v && hay[close - 1] == b'\\' {
                close - 1
            } else {
                close
            }
        }
        None if class == Class::Password && assigned && !quoted_key && line_start(hay, ks) => {
            let eol = ends.line.find(hay, v, MAX_VALUE, |b| b == b'\n')?;
            let line = &hay[v..eol];
            let cut = memchr::memmem::find(line, b" #").unwrap_or(line.len());
            v + cut
        }
        None => ends.bare.find(hay, v, MAX_VALUE, ends_bare)?,
    };
    while end > v && hay[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    let spaces_allowed = class == Class::Password && quote.is_none() || quote.is_some();
    if class == Class::Authorization {
        let value = &hay[v..end];
        let cred = skip_scheme(value);
        let after_scheme = cred.len() < value.len();
        v += value.len() - cred.len();
        end = v + cred.iter().take_while(|b| is_token68(**b)).count();
        let full_len = if after_scheme { usize::MAX } else { end - v };
        return credential_ok(&hay[v..end], full_len, spaces_allowed).then_some((
            v,
            end,
            kind(class),
        ));
    }
    value_ok(&hay[v..end], class, spaces_allowed).then_some((v, end, kind(class)))
}

/// `Bearer <token68>` (RFC 6750): the token, 16 bytes or more.
fn bearer(hay: &[u8], v: usize, ends: &mut ValueEnds) -> Option<Hit> {
    if !hay.get(v).copied().is_some_and(is_token68) {
        return None;
    }
    let end = ends
        .token
        .find(hay, v, MAX_BEARER, |b| !is_token68(b))
        .unwrap_or(v + MAX_BEARER);
    let t = &hay[v..end];
    (t.len() >= 16 && value_ok(t, Class::Strong, false)).then_some((v, end, PiiKind::Secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Vec<(&str, PiiKind)> {
        let h = text.as_bytes();
        let mut ends = ValueEnds::default();
        let mut out = Vec::new();
        let mut i = 0;
        while i < h.len() {
            if !(h[i].is_ascii_alphanumeric() || h[i] == b'_') {
                i += 1;
                continue;
            }
            let s = i;
            while i < h.len() && (h[i].is_ascii_alphanumeric() || h[i] == b'_') {
                i += 1;
            }
            if let Some((a, b, k)) = after_key(h, s, i, &mut ends) {
                out.push((&text[a..b], k));
            }
        }
        out
    }

    #[test]
    fn values_in_every_shape() {
        use PiiKind::{Password, Secret};
        assert_eq!(
            find("GITHUB_TOKEN=abc123def456"),
            vec![("abc123def456", Secret)]
        );
        assert_eq!(find("db_password: hunter22"), vec![("hunter22", Password)]);
        assert_eq!(
            find("  password: correct horse battery # old\n"),
            vec![("correct horse battery", Password)]
        );
        assert_eq!(
            find(r#"{"client_secret": "Zx9-ab_Cd.ef"}"#),
            vec![("Zx9-ab_Cd.ef", Secret)]
        );
        assert_eq!(
            find("api_key = \"k-8812Abcd\""),
            vec![("k-8812Abcd", Secret)]
        );
        assert_eq!(
            find("run --api-key Xy12ab34cd56 now"),
            vec![("Xy12ab34cd56", Secret)]
        );
        // After an auth scheme the credential is one whatever its letters
        // (seen by the redaction proptests); without one, a mode word is not.
        assert_eq!(
            find("Authorization: Bearer wibvguqta"),
            vec![("wibvguqta", Secret)]
        );
        assert_eq!(
            find(r#"{"Authorization": "Bearer wibvguqta"}"#),
            vec![("wibvguqta", Secret)]
        );
        assert_eq!(
            json_value("Authorization", "Bearer wibvguqta"),
            Some(Secret)
        );
        assert_eq!(json_value("authorization", "required"), None);
        // Dotted and dashed flag names (seen by the redaction proptests).
        for flag in [
            "--app.secret",
            "--db-password",
            "--service.api_key",
            "-client.secret",
        ] {
            let line = format!("app {flag} b8NhZ3d8Dfp_bSY9hMtpG7Kk --verbose");
            let found = find(&line);
            assert_eq!(found.len(), 1, "{line}: {found:?}");
            assert_eq!(found[0].0, "b8NhZ3d8Dfp_bSY9hMtpG7Kk", "{line}");
        }
        assert_eq!(
            find("Authorization: Basic dXNlcjpwYXNzd29yZA=="),
            vec![("dXNlcjpwYXNzd29yZA==", Secret)]
        );
        assert_eq!(
            find("curl -H 'Authorization: Bearer abcdEFGH1234ijkl5678'"),
            vec![
                ("abcdEFGH1234ijkl5678", Secret),
                ("abcdEFGH1234ijkl5678", Secret)
            ]
        );
        assert_eq!(
            find(r#"{\"dbPassword\":\"s3cr3t!x\"}"#),
            vec![("s3cr3t!x", Password)]
        );
        assert_eq!(
            find("STRIPE_KEY=Ab12Cd34Ef56Gh78Ij90"),
            vec![("Ab12Cd34Ef56Gh78Ij90", Secret)]
        );
    }

    #[test]
    fn references_and_ordinary_keys_are_left() {
        for t in [
            "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}",
            "password: $DB_PASSWORD",
            "token: <your-token-here>",
            "password: null",
            "\"NextToken\": \"eyJ2IjoxLCJjIjoiYWJjIn0abcdefgh\"",
            "\"ClientToken\": \"a7f3c2e1-1111-2222-3333-444455556666\"",
            "idempotency_key: 0f8fad5b-d9cb-469f-a165-70867728950e",
            "\"Key\": \"reports/2026/11/summary.csv\"",
            "s3_key=reports/2026/11/summary.csv",
            "max_tokens: 4096",
            "auth: required",
            "secret: arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
            "password: <PASSWORD_1>",
            "kms_key: 1234abcd-12ab-34cd-56ef-1234567890ab",
            "the token expired",
            "bypass: enabled",
            "PWD=/home/ops",
        ] {
            assert_eq!(find(t), vec![], "{t}");
        }
    }
}
