//! Values after keys: person names after a person key (`Owner: Jane Doe`,
//! `owner=jane.doe`, `"CreatedBy": "Jane Doe"`, `{"Key": "Owner", "Value":
//! "Jane Doe"}` as text), and AWS secret keys after a key that says
//! "secret". Both look only a bounded distance around a key, so the cost is
//! a constant per key.

use super::numeric::Hit;
use super::patterns::PiiKind;
use super::validate::is_b64;

/// Lower-cased person keys, with a quick filter on their last byte so most
/// words are rejected with one table lookup.
#[derive(Debug, Clone)]
pub(super) struct PersonKeys {
    keys: Vec<Vec<u8>>,
    last: [bool; 256],
    /// `last`, the secret keys' last bytes read here (`y`, `t`) and those
    /// [`super::keys`] reads: any word ending otherwise has no value after it.
    any_last: [bool; 256],
}

impl PersonKeys {
    pub(super) fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self {
            keys: Vec::new(),
            last: [false; 256],
            any_last: super::keys::LAST,
        };
        for b in SECRET_LAST {
            out.any_last[usize::from(b)] = true;
        }
        for k in keys {
            let k = k.trim().to_ascii_lowercase().into_bytes();
            if let Some(&b) = k.last() {
                for b in [b, b.to_ascii_uppercase()] {
                    out.last[usize::from(b)] = true;
                    out.any_last[usize::from(b)] = true;
                }
                if !out.keys.contains(&k) {
                    out.keys.push(k);
                }
            }
        }
        out
    }

    /// Whether a word ending in `b` may be a person key, a secret key read
    /// here or a key [`super::keys`] reads.
    #[inline]
    pub(super) fn may_end_key(&self, b: u8) -> bool {
        self.any_last[usize::from(b)]
    }

    /// Whether `key` names a person: it is a person key, or ends in one
    /// after a separator (`aws:createdBy`, `team_owner`, `Tag.Owner`).
    pub(super) fn matches(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|k| {
            key.len() >= k.len()
                && key[key.len() - k.len()..].eq_ignore_ascii_case(k)
                && (key.len() == k.len() || !key[key.len() - k.len() - 1].is_ascii_alphanumeric())
        })
    }
}

/// Last bytes of the keys [`secret_before`] is asked about (`…Key`, `…secret`).
const SECRET_LAST: [u8; 4] = [b'y', b'Y', b't', b'T'];

/// Called at the end `e` of a word. Returns a secret or a name value that
/// follows the key ending there.
pub(super) fn after_key(hay: &[u8], e: usize, keys: &PersonKeys) -> Option<Hit> {
    let last = hay[e - 1];
    let person = keys.last[usize::from(last)];
    let secret = SECRET_LAST.contains(&last);
    if !person && !secret {
        return None;
    }
    let (v, quote) = separator(hay, e).or_else(|| {
        person
            .then(|| tag_value(hay, e))
            .flatten()
            .map(|v| (v, Some(b'"')))
    })?;
    if secret {
        let n = hay[v..].iter().take(41).take_while(|b| is_b64(**b)).count();
        // Exactly 40 characters: a longer token that happens to hold 40
        // base64 characters before a `_` or `-` is some other secret, taken
        // whole by the secret-key rules instead of cut after 40.
        let continues = hay.get(v + 40).is_some_and(|b| matches!(b, b'_' | b'-'));
        if n == 40 && !continues && secret_before(hay, e) {
            return Some((v, v + 40, PiiKind::AwsSecretKey));
        }
    }
    if person {
        let ks = key_start(hay, e);
        if keys.matches(&hay[ks..e]) {
            return name_value(hay, v, quote);
        }
    }
    None
}

fn key_start(hay: &[u8], e: usize) -> usize {
    let mut ks = e;
    while ks > 0
        && e - ks < 64
        && (hay[ks - 1].is_ascii_alphanumeric() || b"_.:/-".contains(&hay[ks - 1]))
    {
        ks -= 1;
    }
    ks
}

fn skip_spaces(hay: &[u8], mut p: usize) -> usize {
    let stop = p + 3;
    while p < stop && matches!(hay.get(p), Some(b' ' | b'\t')) {
        p += 1;
    }
    p
}

/// `key: v`, `key=v`, `"key": "v"`, `'key' = 'v'`: where the value starts,
/// and its opening quote.
fn separator(hay: &[u8], e: usize) -> Option<(usize, Option<u8>)> {
    let mut p = e;
    if matches!(hay.get(p), Some(b'"' | b'\'')) {
        p += 1;
    }
    p = skip_spaces(hay, p);
    if !matches!(hay.get(p), Some(b':' | b'=')) {
        return None;
    }
    p = skip_spaces(hay, p + 1);
    match hay.get(p) {
        Some(&q @ (b'"' | b'\'')) => Some((p + 1, Some(q))),
        Some(_) => Some((p, None)),
        None => None,
    }
}

/// `"Key": "Owner", "Value": "` (an EC2 tag as JSON text): the value start.
fn tag_value(hay: &[u8], e: usize) -> Option<usize> {
    if hay.get(e) != Some(&b'"') {
        return None;
    }
    let mut p = skip_spaces(hay, e + 1);
    if hay.get(p) != Some(&b',') {
        return None;
    }
    p = skip_spaces(hay, p + 1);
    let lit = hay.get(p..p + 7)?;
    if !lit.eq_ignore_ascii_case(b"\"value\"") {
        return None;
    }
    p = skip_spaces(hay, p + 7);
    if hay.get(p) != Some(&b':') {
        return None;
    }
    p = skip_spaces(hay, p + 1);
    (hay.get(p) == Some(&b'"')).then_some(p + 1)
}

/// Whether "secret" appears, any case, in the 48 bytes before `e` on the
/// same line (`aws_secret_access_key`, `"SecretAccessKey"`, `Secret access key`).
fn secret_before(hay: &[u8], e: usize) -> bool {
    let from = e.saturating_sub(48);
    let win = &hay[from..e];
    let win = match win.iter().rposition(|b| *b == b'\n') {
        Some(nl) => &win[nl + 1..],
        None => win,
    };
    win.windows(6).any(|w| w.eq_ignore_ascii_case(b"secret"))
}

fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"._'-".contains(&b)
}

fn starts_name(b: u8) -> bool {
    b.is_ascii_alphabetic() || b >= 0x80
}

const NOT_NAMES: [&[u8]; 9] = [
    b"null",
    b"none",
    b"nil",
    b"true",
    b"false",
    b"unknown",
    b"undefined",
    b"n/a",
    b"tbd",
];

fn name_value(hay: &[u8], v: usize, quote: Option<u8>) -> Option<Hit> {
    const MAX_NAME: usize = 128;
    if !hay.get(v).copied().is_some_and(starts_name) {
        return None;
    }
    let mut end = v;
    if quote.is_some() {
        // Inside quotes spaces are part of the name; anything else
        // (`<`, `@`, `(`) ends it and is left to the other detectors.
        while end < hay.len() && end - v < MAX_NAME && (name_char(hay[end]) || hay[end] == b' ') {
            end += 1;
        }
        // The length cap may fall inside a multi-byte character: back off to its start.
        while end > v && hay.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
            end -= 1;
        }
    } else {
        end += hay[v..]
            .iter()
            .take(MAX_NAME)
            .take_while(|b| name_char(**b))
            .count();
        let terminated = hay
            .get(end)
            .is_none_or(|b| b.is_ascii_whitespace() || b",;)}]\"'&|".contains(b));
        if !terminated {
            return None;
        }
        // `Owner: Jane Doe`: further capitalised words belong to the name.
        for _ in 0..3 {
            let starts_word = hay.get(end) == Some(&b' ')
                && hay
                    .get(end + 1)
                    .is_some_and(|b| b.is_ascii_uppercase() || *b >= 0x80);
            if !starts_word {
                break;
            }
            let w = hay[end + 1..]
                .iter()
                .take(MAX_NAME)
                .take_while(|b| name_char(**b))
                .count();
            let after = end + 1 + w;
            if !hay
                .get(after)
                .is_none_or(|b| b.is_ascii_whitespace() || b",;)}]\"'&|".contains(b))
            {
                break;
            }
            end = after;
        }
    }
    while end > v && matches!(hay[end - 1], b' ' | b'.' | b'-' | b'\'') {
        end -= 1;
    }
    let name = &hay[v..end];
    if name.is_empty() || NOT_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n)) {
        return None;
    }
    Some((v, end, PiiKind::Name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<(&str, PiiKind)> {
        let keys = PersonKeys::new(["owner", "createdby", "contact", "user"]);
        let h = text.as_bytes();
        (1..=h.len())
            .filter(|&e| {
                h[e - 1].is_ascii_alphanumeric()
                    && h.get(e).is_none_or(|b| !b.is_ascii_alphanumeric())
            })
            .find_map(|e| after_key(h, e, &keys))
            .map(|(a, b, k)| (&text[a..b], k))
    }

    #[test]
    fn names_after_person_keys() {
        assert_eq!(
            find("Owner: Jane Doe created it"),
            Some(("Jane Doe", PiiKind::Name))
        );
        assert_eq!(
            find("owner=jane.doe region=x"),
            Some(("jane.doe", PiiKind::Name))
        );
        assert_eq!(
            find(r#"{"CreatedBy": "Jane Doe"}"#),
            Some(("Jane Doe", PiiKind::Name))
        );
        assert_eq!(
            find(r#"{"Key": "Owner", "Value": "Jane Doe"}"#),
            Some(("Jane Doe", PiiKind::Name))
        );
        assert_eq!(find("aws:createdBy=Jane"), Some(("Jane", PiiKind::Name)));
        assert_eq!(
            find(r#""owner": "Jane Doe <jane@x.io>""#),
            Some(("Jane Doe", PiiKind::Name))
        );
    }

    #[test]
    fn not_names() {
        assert_eq!(find("Owner: <NAME_1>"), None);
        assert_eq!(find("owner: null"), None);
        assert_eq!(find("owner=jane@example.com"), None);
        assert_eq!(find("resourceOwner: Jane"), None);
        assert_eq!(find("the owner is Jane"), None);
        assert_eq!(find("Contact: +1 555 010 0000"), None);
    }

    #[test]
    fn secret_keys_only_in_context() {
        let k = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            find(&format!("aws_secret_access_key = {k}")),
            Some((k, PiiKind::AwsSecretKey))
        );
        assert_eq!(
            find(&format!(r#""SecretAccessKey": "{k}""#)),
            Some((k, PiiKind::AwsSecretKey))
        );
        assert_eq!(find(&format!("commit: {k}")), None);
        // 40 base64 characters that a longer value goes on from.
        assert_eq!(find(&format!("jwtSecret=\"{k}_3_PX7CKV3\"")), None);
        assert_eq!(find(&format!("jwt_secret={k}-more")), None);
    }
}
