//! Credentials with a fixed shape: AWS access key ids, Slack and Google
//! tokens, Twilio key SIDs, JWTs, IBANs, PEM private keys and URL userinfo;
//! prefixed provider tokens (GitHub, OpenAI, …) are read by [`vendors`].
//!
//! Every reader starts only where the previous byte cannot belong to the
//! same token, and reads forward over that token's alphabet, so each byte
//! is read by at most one reader per kind: linear in the input.

use super::numeric::Hit;
use super::patterns::PiiKind;
use super::validate::{iban_ok, is_b64url};
use super::vendors;

fn run(hay: &[u8], from: usize, max: usize, class: impl Fn(u8) -> bool) -> usize {
    hay[from..]
        .iter()
        .take(max)
        .take_while(|b| class(**b))
        .count()
}

fn prev_is(hay: &[u8], s: usize, class: impl Fn(u8) -> bool) -> bool {
    s > 0 && class(hay[s - 1])
}

/// First three bytes of the tokens read here: every vendor prefix, and
/// `AKI`/`ASI`/`ABI`/`ACC`/`AIz` (AWS, Google), `SK` and a hex digit
/// (Twilio), `xox` (Slack), `eyJ` (JWT). IBANs are told by their digits.
const STARTS: vendors::Starts = {
    let mut set = vendors::PREFIX_STARTS;
    let fixed: [&[u8; 3]; 7] = [b"AKI", b"ASI", b"ABI", b"ACC", b"AIz", b"xox", b"eyJ"];
    let mut i = 0;
    while i < fixed.len() {
        vendors::add_start(&mut set, fixed[i][0], fixed[i][1], fixed[i][2]);
        i += 1;
    }
    let hex = b"0123456789abcdef";
    let mut i = 0;
    while i < hex.len() {
        vendors::add_start(&mut set, b'S', b'K', hex[i]);
        i += 1;
    }
    set
};

/// Called at a word start `s` whose word (`[A-Za-z0-9_]+`, starting with a
/// letter) ends at `e`.
#[inline]
pub(super) fn at_word(hay: &[u8], s: usize, e: usize) -> Option<Hit> {
    let at = |i: usize| hay.get(s + i).copied().unwrap_or(0);
    // Most words start no token: one bit test on their first three bytes
    // and a look at the IBAN check digits, with no call.
    if !(vendors::may_start(&STARTS, hay, s) | (at(2).is_ascii_digit() & at(3).is_ascii_digit())) {
        return None;
    }
    shaped(hay, s, e)
}

#[inline(never)]
fn shaped(hay: &[u8], s: usize, e: usize) -> Option<Hit> {
    if let Some(hit) = vendors::at_word(hay, s) {
        return Some(hit);
    }
    let w = &hay[s..e];
    // Access key ids of users (AKIA), sessions (ASIA), bearer-token
    // principals (ABIA) and CloudFront key pairs (ACCA).
    if w.len() == 20
        && [b"AKIA", b"ASIA", b"ABIA", b"ACCA"]
            .iter()
            .any(|p| w.starts_with(*p))
    {
        return w
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .then_some((s, e, PiiKind::AwsAccessKey));
    }
    if w.starts_with(b"AIza") && !prev_is(hay, s, is_b64url) {
        let n = run(hay, s, 40, is_b64url);
        return (n == 39).then_some((s, s + n, PiiKind::GoogleApiKey));
    }
    // Twilio API key SID: `SK` + 32 lowercase hex (account SIDs, `AC…`,
    // are identifiers and stay).
    if w.len() == 34
        && w.starts_with(b"SK")
        && w[2..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Some((s, e, PiiKind::TwilioKey));
    }
    if w.len() == 4 && w.starts_with(b"xox") && hay.get(e) == Some(&b'-') {
        if !b"abeoprs".contains(&w[3]) || prev_is(hay, s, slack_char) {
            return None;
        }
        let n = run(hay, s, 256, slack_char);
        return (15..256)
            .contains(&n)
            .then_some((s, s + n, PiiKind::SlackToken));
    }
    if w.starts_with(b"eyJ") {
        return jwt(hay, s);
    }
    iban(hay, s, e)
}

fn slack_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Header and payload are base64url JSON (`eyJ` is `{"`), then a signature
/// (empty for `alg: none`).
fn jwt(hay: &[u8], s: usize) -> Option<Hit> {
    if prev_is(hay, s, |b| is_b64url(b) || b == b'.') {
        return None;
    }
    const MAX_SEG: usize = 16 * 1024;
    let h = run(hay, s, MAX_SEG, is_b64url);
    let p0 = s + h + 1;
    if h < 10 || hay.get(s + h) != Some(&b'.') || !hay[p0..].starts_with(b"eyJ") {
        return None;
    }
    let p = run(hay, p0, MAX_SEG, is_b64url);
    let s0 = p0 + p + 1;
    if hay.get(p0 + p) != Some(&b'.') {
        return None;
    }
    let sig = run(hay, s0, MAX_SEG, is_b64url);
    let end = s0 + sig;
    // A full stop after the signature ends the sentence, not the token.
    let stop = |p: usize| hay.get(p).is_none_or(|b| !(is_b64url(*b) || *b == b'.'));
    let next_ok = stop(end) || (hay[end] == b'.' && stop(end + 1));
    next_ok.then_some((s, end, PiiKind::Jwt))
}

/// `GB82WEST12345698765432` or grouped by four, `GB82 WEST 1234 …`.
fn iban(hay: &[u8], s: usize, e: usize) -> Option<Hit> {
    let w = &hay[s..e];
    if w.len() < 4
        || !w[0].is_ascii_alphabetic()
        || !w[1].is_ascii_alphabetic()
        || !w[2].is_ascii_digit()
        || !w[3].is_ascii_digit()
    {
        return None;
    }
    if w.len() >= 15 {
        return iban_ok(w).then_some((s, e, PiiKind::Iban));
    }
    if w.len() != 4 {
        return None;
    }
    let mut buf = [0u8; 34];
    buf[..4].copy_from_slice(w);
    let mut n = 4;
    let mut i = e;
    while n < 34 && hay.get(i) == Some(&b' ') {
        let g = run(hay, i + 1, 5, |b| b.is_ascii_alphanumeric());
        if g == 0 || g > 4 || n + g > 34 {
            break;
        }
        buf[n..n + g].copy_from_slice(&hay[i + 1..i + 1 + g]);
        n += g;
        i += 1 + g;
        if n >= 15 && iban_ok(&buf[..n]) {
            return Some((s, i, PiiKind::Iban));
        }
        if g < 4 {
            break;
        }
    }
    None
}

/// `scheme://user:password@host`: the userinfo is the secret; scheme and
/// host stay readable so the model still knows what was connected to.
/// `c` is the position of `:` in `://`.
pub(super) fn url_credentials(hay: &[u8], c: usize) -> Option<Hit> {
    if !prev_is(hay, c, |b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let u = c + 3;
    let n = run(hay, u, 257, |b| {
        !(b.is_ascii_whitespace() || b"/?#@\"'<>\\[]{}".contains(&b))
    });
    if n == 0 || n > 256 || hay.get(u + n) != Some(&b'@') {
        return None;
    }
    let info = &hay[u..u + n];
    let host_ok = hay
        .get(u + n + 1)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'[');
    // `user:password`, or a bare token long enough to be one (`https://ghp_…@github.com`).
    let colon = info.iter().position(|b| *b == b':');
    let secret = match colon {
        Some(p) => p + 1 < info.len(),
        None => info.len() >= 20,
    };
    (secret && host_ok).then_some((u, u + n, PiiKind::UrlCredentials))
}

/// Finds the next `-----END` at or after a position, remembering the
/// answer so repeated `-----BEGIN` lines never search the same bytes twice.
#[derive(Default)]
pub(super) struct PemEnds {
    /// `Some(pos)`: the next END at or after the last query; `None`: none at all.
    next: Option<Option<usize>>,
}

impl PemEnds {
    fn find(&mut self, hay: &[u8], from: usize) -> Option<usize> {
        match self.next {
            Some(None) => return None,
            Some(Some(p)) if p >= from => return Some(p),
            _ => {}
        }
        let found = memchr::memmem::find(&hay[from..], b"-----END").map(|p| from + p);
        self.next = Some(found);
        found
    }
}

/// `-----BEGIN … PRIVATE KEY-----` (or PGP's `… PRIVATE KEY BLOCK-----`) through its END line. Without an END
/// (a truncated key), everything that still looks like the key body.
pub(super) fn pem(hay: &[u8], b: usize, ends: &mut PemEnds) -> Option<Hit> {
    const MAX_KEY: usize = 64 * 1024;
    let line = &hay[b..hay.len().min(b + 80)];
    let close = memchr::memmem::find(&line[10..], b"-----")? + 10;
    if !is_private_key_label(&line[..close]) {
        return None;
    }
    let body = b + close + 5;
    if let Some(e) = ends.find(hay, body).filter(|e| e - body <= MAX_KEY) {
        let tail = &hay[e..hay.len().min(e + 80)];
        if let Some(t) = memchr::memmem::find(&tail[8..], b"-----")
            && is_private_key_label(&tail[..t + 8])
        {
            return Some((b, e + t + 13, PiiKind::PrivateKey));
        }
    }
    // Base64 lines only, raw or JSON-escaped: prose (with spaces) ends it.
    let n = run(hay, body, usize::MAX, |c| {
        c.is_ascii_alphanumeric() || b"+/=\\\r\n".contains(&c)
    });
    Some((b, body + n, PiiKind::PrivateKey))
}

fn is_private_key_label(label: &[u8]) -> bool {
    label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str) -> Option<&str> {
        let h = text.as_bytes();
        let s = h.iter().position(|b| b.is_ascii_alphanumeric())?;
        let e = s + h[s..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        at_word(h, s, e).map(|(a, b, _)| &text[a..b])
    }

    #[test]
    fn fixed_shape_tokens() {
        assert_eq!(word(" AKIAIOSFODNN7EXAMPLE "), Some("AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(word(" AKIAIOSFODNN7EXAMPL "), None);
        assert_eq!(word(" AKIAIOSFODNN7EXAMPLEX "), None);
        let gh = format!(" ghp_{} ", "a1B2".repeat(9));
        assert_eq!(word(&gh), Some(gh.trim()));
        assert_eq!(word(" ghp_short "), None);
        assert_eq!(
            word(" xoxb-1234567890-abcdefghij "),
            Some("xoxb-1234567890-abcdefghij")
        );
        let g = format!(
            " AIza{} ",
            "Sy-_a1b2c".repeat(4).get(..35).unwrap_or_default()
        );
        assert_eq!(word(&g), Some(g.trim()));
    }

    #[test]
    fn jwt_needs_json_header_and_payload() {
        let t = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(word(&format!(" {t};")), Some(t));
        assert_eq!(word(&format!(" {t}. Next")), Some(t));
        assert_eq!(word("eyJhbGciOiJIUzI1NiJ9.notjson.sig"), None);
    }

    #[test]
    fn iban_compact_and_grouped() {
        assert_eq!(
            word(" GB82WEST12345698765432 "),
            Some("GB82WEST12345698765432")
        );
        assert_eq!(
            word(" GB82 WEST 1234 5698 7654 32 x"),
            Some("GB82 WEST 1234 5698 7654 32")
        );
        assert_eq!(word(" GB82WEST12345698765433 "), None);
    }

    #[test]
    fn url_userinfo_only() {
        let h = b"postgres://app:s3cret@db.internal:5432/x";
        let c = 8;
        assert_eq!(
            url_credentials(h, c),
            Some((11, 21, PiiKind::UrlCredentials))
        );
        assert_eq!(url_credentials(b"https://example.com/a@b", 5), None);
    }

    #[test]
    fn pem_with_and_without_end() {
        let pgp = "x -----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK----- y";
        let (a, b, _) = pem(pgp.as_bytes(), 2, &mut PemEnds::default()).expect("a PGP key");
        assert_eq!(&pgp[a..b], &pgp[2..pgp.len() - 2]);
        let k = "x -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- y";
        let mut ends = PemEnds::default();
        let (a, b, _) = pem(k.as_bytes(), 2, &mut ends).expect("a key");
        assert_eq!(&k[a..b], &k[2..k.len() - 2]);
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(pem(cert.as_bytes(), 0, &mut PemEnds::default()), None);
    }
}
