//! Keys and tokens that announce themselves by a documented prefix: GitHub,
//! OpenAI, Anthropic, Stripe, Twilio, SendGrid, GitLab, npm, PyPI and the
//! other providers of gitleaks' default rule set whose format is fixed by
//! the provider (rules that need a keyword nearby are the job of
//! [`super::keys`]).
//!
//! Each [`Rule`] is written from the provider's documentation of its format:
//! a prefix, the alphabet of the body, and the body's length range. The
//! whole run of body characters after the prefix is taken (a token longer
//! than the documented minimum is redacted to its last byte, so no tail
//! survives); a run longer than `max` is something else and is left alone.
//!
//! Linear: a rule starts only at a word start whose previous byte is outside
//! its alphabet, so two runs of one alphabet never overlap, and it reads at
//! most `max + 1` bytes.

use super::numeric::Hit;
use super::patterns::PiiKind;

/// The characters a token body is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `[A-Za-z0-9]`
    Alnum,
    /// `[0-9a-fA-F]`
    Hex,
    /// `[A-Za-z0-9_-]`
    B64url,
    /// `[A-Za-z0-9_.-]`: base64url segments joined by dots (JWT-like tokens).
    B64urlDot,
    /// `[A-Za-z0-9_+/=-]`: either base64 alphabet, with padding.
    B64any,
    /// `[A-Za-z0-9/_-]`: a URL path (webhook URLs).
    Path,
}

impl Body {
    fn has(self, b: u8) -> bool {
        let alnum = b.is_ascii_alphanumeric();
        match self {
            Body::Alnum => alnum,
            Body::Hex => b.is_ascii_hexdigit(),
            Body::B64url => alnum || b == b'_' || b == b'-',
            Body::B64urlDot => alnum || matches!(b, b'_' | b'-' | b'.'),
            Body::B64any => alnum || matches!(b, b'_' | b'-' | b'+' | b'/' | b'='),
            Body::Path => alnum || matches!(b, b'_' | b'-' | b'/'),
        }
    }
}

/// One documented format.
#[derive(Debug, Clone, Copy)]
struct Rule {
    prefix: &'static [u8],
    body: Body,
    /// Body length range, inclusive.
    min: usize,
    max: usize,
    kind: PiiKind,
    /// The prefix names where the secret goes, not the secret (a webhook
    /// URL's host): the span starts after it.
    keep_prefix: bool,
}

const fn r(prefix: &'static [u8], body: Body, min: usize, max: usize, kind: PiiKind) -> Rule {
    Rule {
        prefix,
        body,
        min,
        max,
        kind,
        keep_prefix: false,
    }
}

use Body::{Alnum, B64any, B64url, B64urlDot, Hex, Path};
use PiiKind::{AnthropicKey, ApiKey, GithubToken, OpenaiKey, SendgridKey, SlackToken, StripeKey};

/// Upper bound for tokens of open-ended length (GitHub's stateless
/// installation tokens are ~520 bytes; 1Password service-account tokens ~900).
const LONG: usize = 4096;

/// The formats, each from its provider's documentation. Lengths are body
/// lengths (after the prefix).
const RULES: &[Rule] = &[
    // GitHub: classic `gh?_` + 36 alphanumerics; since 2026-04 installation
    // tokens are `ghs_<app id>_<JWT>` (two dots, ~520 bytes), so the body
    // takes dots and base64url, and open-ended length.
    r(b"ghp_", B64urlDot, 30, LONG, GithubToken),
    r(b"gho_", B64urlDot, 30, LONG, GithubToken),
    r(b"ghu_", B64urlDot, 30, LONG, GithubToken),
    r(b"ghs_", B64urlDot, 30, LONG, GithubToken),
    r(b"ghr_", B64urlDot, 30, LONG, GithubToken),
    // Fine-grained PAT: `github_pat_<22>_<59>`.
    r(b"github_pat_", B64url, 22, 255, GithubToken),
    // OpenAI and Anthropic share `sk-`: told apart in `refine`.
    r(b"sk-", B64url, 20, 512, OpenaiKey),
    // Stripe secret and restricted keys, and webhook signing secrets.
    r(b"sk_live_", Alnum, 20, 255, StripeKey),
    r(b"sk_test_", Alnum, 20, 255, StripeKey),
    r(b"rk_live_", Alnum, 20, 255, StripeKey),
    r(b"rk_test_", Alnum, 20, 255, StripeKey),
    r(b"whsec_", B64any, 24, 128, StripeKey),
    // SendGrid: `SG.<22>.<43>`.
    r(b"SG.", B64urlDot, 66, 66, SendgridKey),
    // Slack tokens the `xox?-` reader does not cover.
    r(b"xoxe.xoxp-", B64url, 20, 512, SlackToken),
    r(b"xapp-", B64url, 20, 512, SlackToken),
    Rule {
        keep_prefix: true,
        ..r(b"hooks.slack.com/services/", Path, 20, 128, SlackToken)
    },
    Rule {
        keep_prefix: true,
        ..r(b"hooks.slack.com/workflows/", Path, 20, 128, SlackToken)
    },
    Rule {
        keep_prefix: true,
        ..r(b"hooks.slack.com/triggers/", Path, 20, 128, SlackToken)
    },
    // GitLab token prefixes (personal, deploy, runner, pipeline trigger,
    // feed, OAuth, SCIM, incoming mail, agent, CI build, feature flags).
    r(b"glpat-", B64urlDot, 20, 512, ApiKey),
    r(b"gldt-", B64urlDot, 20, 512, ApiKey),
    r(b"glrt-", B64urlDot, 20, 512, ApiKey),
    r(b"glptt-", B64urlDot, 20, 512, ApiKey),
    r(b"glft-", B64urlDot, 20, 512, ApiKey),
    r(b"gloas-", B64urlDot, 20, 512, ApiKey),
    r(b"glsoat-", B64urlDot, 20, 512, ApiKey),
    r(b"glimt-", B64urlDot, 20, 512, ApiKey),
    r(b"glagent-", B64urlDot, 20, 512, ApiKey),
    r(b"glcbt-", B64urlDot, 20, 512, ApiKey),
    r(b"glffct-", B64urlDot, 20, 512, ApiKey),
    r(b"GR1348941", B64url, 20, 64, ApiKey),
    // Google: OAuth client secret, OAuth access token.
    r(b"GOCSPX-", B64url, 28, 64, ApiKey),
    r(b"ya29.", B64urlDot, 30, LONG, ApiKey),
    // Amazon Bedrock long-term API key; Amazon MWS key.
    r(b"ABSK", B64any, 100, 300, ApiKey),
    r(b"amzn.mws.", B64url, 36, 36, ApiKey),
    // Model providers.
    r(b"gsk_", Alnum, 48, 56, ApiKey),
    r(b"xai-", Alnum, 70, 90, ApiKey),
    r(b"pplx-", Alnum, 40, 56, ApiKey),
    r(b"r8_", Alnum, 37, 40, ApiKey),
    r(b"hf_", Alnum, 30, 40, ApiKey),
    r(b"api_org_", Alnum, 30, 40, ApiKey),
    r(b"lsv2_pt_", B64url, 40, 48, ApiKey),
    r(b"lsv2_sk_", B64url, 40, 48, ApiKey),
    // Package registries and CI.
    r(b"npm_", Alnum, 36, 36, ApiKey),
    r(b"pypi-AgEIcHlwaS5vcmc", B64url, 50, LONG, ApiKey),
    r(b"dckr_pat_", B64url, 20, 64, ApiKey),
    r(b"rubygems_", Hex, 48, 48, ApiKey),
    r(b"oy2", Alnum, 43, 43, ApiKey),
    r(b"CLOJARS_", Alnum, 60, 60, ApiKey),
    r(b"pnu_", Alnum, 36, 36, ApiKey),
    r(b"rdme_", Alnum, 70, 70, ApiKey),
    r(b"squ_", Hex, 40, 40, ApiKey),
    r(b"sqp_", Hex, 40, 40, ApiKey),
    r(b"sqa_", Hex, 40, 40, ApiKey),
    // Cloud and infrastructure.
    r(b"dop_v1_", Hex, 64, 64, ApiKey),
    r(b"doo_v1_", Hex, 64, 64, ApiKey),
    r(b"dor_v1_", Hex, 64, 64, ApiKey),
    r(b"hvs.", B64urlDot, 24, 512, ApiKey),
    r(b"hvb.", B64urlDot, 24, 512, ApiKey),
    r(b"hvr.", B64urlDot, 24, 512, ApiKey),
    r(b"pul-", Hex, 40, 40, ApiKey),
    r(b"fo1_", B64url, 40, 48, ApiKey),
    r(b"pscale_tkn_", B64url, 32, 64, ApiKey),
    r(b"pscale_pw_", B64url, 32, 64, ApiKey),
    r(b"pscale_oauth_", B64url, 32, 64, ApiKey),
    r(b"dp.pt.", Alnum, 40, 44, ApiKey),
    r(b"dp.st.", B64urlDot, 40, 80, ApiKey),
    r(b"dp.ct.", Alnum, 40, 44, ApiKey),
    r(b"dp.sa.", Alnum, 40, 44, ApiKey),
    r(b"dp.scim.", Alnum, 40, 44, ApiKey),
    r(b"dp.audit.", Alnum, 40, 44, ApiKey),
    r(b"dt0c01.", B64urlDot, 80, 100, ApiKey),
    r(b"LTAI", Alnum, 20, 20, ApiKey),
    r(b"AKCp", Alnum, 60, 73, ApiKey),
    r(b"HRKU-", B64url, 50, 70, ApiKey),
    r(b"AGE-SECRET-KEY-1", Alnum, 58, 58, ApiKey),
    r(b"ops_eyJ", B64urlDot, 200, LONG, ApiKey),
    r(b"glc_", B64any, 32, 512, ApiKey),
    r(b"glsa_", B64url, 40, 48, ApiKey),
    r(b"NRAK-", Alnum, 27, 27, ApiKey),
    r(b"sntrys_eyJ", B64any, 50, 512, ApiKey),
    r(b"sntryu_", Hex, 64, 64, ApiKey),
    r(b"ATATT3", B64any, 100, 512, ApiKey),
    r(b"ATCTT3", B64any, 100, 512, ApiKey),
    r(b"PMAK-", B64url, 55, 64, ApiKey),
    r(b"lin_api_", Alnum, 40, 40, ApiKey),
    r(b"ntn_", Alnum, 40, 50, ApiKey),
    r(b"tfp_", B64urlDot, 50, 70, ApiKey),
    r(b"CFPAT-", B64url, 43, 43, ApiKey),
    r(b"fio-u-", B64url, 64, 64, ApiKey),
    r(b"dapi", Hex, 32, 32, ApiKey),
    r(b"key-", Hex, 32, 32, ApiKey),
    r(b"xkeysib-", B64url, 70, 90, ApiKey),
    r(b"ico-", Alnum, 32, 32, ApiKey),
    r(b"s-s4t2ud-", Hex, 64, 64, ApiKey),
    r(b"s-s4t2af-", Hex, 64, 64, ApiKey),
    // Payments and commerce.
    r(b"sq0atp-", B64url, 22, 22, ApiKey),
    r(b"sq0csp-", B64url, 43, 43, ApiKey),
    r(b"EAA", B64url, 60, 512, ApiKey),
    r(b"shpat_", Hex, 32, 32, ApiKey),
    r(b"shpca_", Hex, 32, 32, ApiKey),
    r(b"shppa_", Hex, 32, 32, ApiKey),
    r(b"shpss_", Hex, 32, 32, ApiKey),
    r(b"shippo_live_", Hex, 40, 40, ApiKey),
    r(b"shippo_test_", Hex, 40, 40, ApiKey),
    r(b"FLWSECK-", B64url, 32, 40, ApiKey),
    r(b"FLWSECK_TEST-", B64url, 32, 40, ApiKey),
    r(b"duffel_live_", B64url, 43, 43, ApiKey),
    r(b"duffel_test_", B64url, 43, 43, ApiKey),
    r(b"EZAK", Alnum, 54, 54, ApiKey),
    r(b"EZTK", Alnum, 54, 54, ApiKey),
    // Other SaaS.
    r(b"sk.eyJ", B64urlDot, 60, 512, ApiKey),
    r(b"sl.", B64urlDot, 130, LONG, ApiKey),
    r(b"p8e-", Alnum, 32, 32, ApiKey),
    r(b"dnkey-", B64url, 70, 90, ApiKey),
    r(b"API-", Alnum, 26, 26, ApiKey),
    r(b"tk-us-", B64url, 48, 48, ApiKey),
];

/// A hash of a prefix's first three or four bytes into 4096 buckets.
const fn gram(a: u8, b: u8, c: u8, d: u8) -> usize {
    let x = (a as u32) | (b as u32) << 8 | (c as u32) << 16 | (d as u32) << 24;
    (x.wrapping_mul(0x9E37_79B1) >> 20) as usize
}

/// Bucket of a rule: its first four prefix bytes, or its three and a zero
/// (only seven prefixes are three bytes long: `sk-`, `SG.`, `hf_`, …).
const fn rule_gram(p: &[u8]) -> usize {
    gram(p[0], p[1], p[2], if p.len() > 3 { p[3] } else { 0 })
}

const NO_RULE: u8 = u8::MAX;

/// Rules by bucket, chained: `HEADS[bucket]` is the first rule of the
/// bucket and `CHAIN[rule]` the next, or [`NO_RULE`]. A word looks up its
/// three- and four-byte buckets; most hit empty ones, and only the rules
/// in a non-empty one are compared with the text.
const BUCKETS: ([u8; 4096], [u8; RULES.len()]) = {
    assert!(RULES.len() < NO_RULE as usize, "rule indices fit a byte");
    let mut heads = [NO_RULE; 4096];
    let mut chain = [NO_RULE; RULES.len()];
    let mut i = RULES.len();
    while i > 0 {
        i -= 1;
        let p = RULES[i].prefix;
        assert!(p.len() >= 3, "the bucket needs three prefix bytes");
        let h = rule_gram(p);
        chain[i] = heads[h];
        heads[h] = i as u8;
    }
    (heads, chain)
};

/// The buckets of the three and four bytes at `s` (rules may be in either).
#[inline]
fn buckets(hay: &[u8], s: usize) -> (u8, u8) {
    let at = |i: usize| hay.get(s + i).copied().unwrap_or(0);
    let (a, b, c, d) = (at(0), at(1), at(2), at(3));
    let (heads, _) = &BUCKETS;
    (heads[gram(a, b, c, d)], heads[gram(a, b, c, 0)])
}

/// A set of three-byte starts, hashed into 64 Kib (8 KiB): a start not in
/// it is surely not one of those added; one in it may be (about one in
/// four hundred others collides).
pub(super) type Starts = [u64; 1024];

const fn start_bit(a: u8, b: u8, c: u8) -> usize {
    let x = (a as u32) | (b as u32) << 8 | (c as u32) << 16;
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

/// Adds the start `a b c` to `set`.
pub(super) const fn add_start(set: &mut Starts, a: u8, b: u8, c: u8) {
    let bit = start_bit(a, b, c);
    set[bit >> 6] |= 1 << (bit & 63);
}

/// Whether the three bytes at `s` (zeros past the end) may be in `set`.
#[inline]
pub(super) fn may_start(set: &Starts, hay: &[u8], s: usize) -> bool {
    let at = |i: usize| hay.get(s + i).copied().unwrap_or(0);
    let bit = start_bit(at(0), at(1), at(2));
    set[bit >> 6] >> (bit & 63) & 1 == 1
}

/// The first three bytes of every rule's prefix.
pub(super) const PREFIX_STARTS: Starts = {
    let mut set = [0u64; 1024];
    let mut i = 0;
    while i < RULES.len() {
        let p = RULES[i].prefix;
        add_start(&mut set, p[0], p[1], p[2]);
        i += 1;
    }
    set
};

/// A documented token starting at the word start `s`, if any.
pub(super) fn at_word(hay: &[u8], s: usize) -> Option<Hit> {
    let (four, three) = buckets(hay, s);
    if four == NO_RULE && three == NO_RULE {
        return None;
    }
    matching(hay, s, four).or_else(|| (three != four).then(|| matching(hay, s, three))?)
}

/// The first rule of the bucket chain from `first` that matches at `s`.
#[cold]
fn matching(hay: &[u8], s: usize, first: u8) -> Option<Hit> {
    let prev = s.checked_sub(1).map(|p| hay[p]);
    let rest = &hay[s..];
    let (_, chain) = &BUCKETS;
    let mut i = first;
    while i != NO_RULE {
        let rule = &RULES[usize::from(i)];
        i = chain[usize::from(i)];
        if !rest.starts_with(rule.prefix) {
            continue;
        }
        // The previous byte must not continue a token of this alphabet (a
        // prefix kept readable is a host name: only a word may not precede
        // it). `=` is let through: it assigns far more often than it pads,
        // and a re-read stays bounded by `max`.
        if prev.is_some_and(|p| {
            (!rule.keep_prefix && p != b'=' && rule.body.has(p))
                || p.is_ascii_alphanumeric()
                || matches!(p, b'_' | b'-' | b'+')
        }) {
            continue;
        }
        let b = s + rule.prefix.len();
        let mut n = hay[b..]
            .iter()
            .take(rule.max + 2)
            .take_while(|c| rule.body.has(**c))
            .count();
        if rule.body == B64urlDot && n <= rule.max + 1 {
            // A sentence's full stop is not part of the token.
            while n > 0 && hay[b + n - 1] == b'.' {
                n -= 1;
            }
        }
        if n < rule.min || n > rule.max {
            continue;
        }
        let Some(kind) = refine(rule, &hay[b..b + n]) else {
            continue;
        };
        let start = if rule.keep_prefix { b } else { s };
        return Some((start, b + n, kind));
    }
    None
}

/// The kind of a body that passed its rule's alphabet and length, or `None`
/// when a shared prefix turns out to be something else.
fn refine(rule: &Rule, body: &[u8]) -> Option<PiiKind> {
    if rule.prefix == b"SG." {
        // `SG.<22>.<43>`: one dot, at its place.
        let dots = body.iter().filter(|b| **b == b'.').count();
        return (body.len() == 66 && body[22] == b'.' && dots == 1).then_some(SendgridKey);
    }
    if rule.prefix != b"sk-" {
        return Some(rule.kind);
    }
    // Anthropic: `sk-ant-api03-…`, `sk-ant-admin01-…`, `sk-ant-oat01-…`.
    if body.starts_with(b"ant-") {
        return (body.len() >= 32).then_some(AnthropicKey);
    }
    // OpenAI: project, service-account and admin keys; legacy user keys
    // are 48 alphanumerics with `T3BlbkFJ` ("OpenAI" in base64) inside.
    if [&b"proj-"[..], b"svcacct-", b"admin-"]
        .iter()
        .any(|p| body.starts_with(p))
        || memchr::memmem::find(body, b"T3BlbkFJ").is_some()
    {
        return Some(OpenaiKey);
    }
    // Other providers copied the shape (`sk-<32 hex>`, `sk-or-v1-<64 hex>`):
    // random enough to be a key, not a kebab-case name like `sk-learn-…`.
    let digits = body.iter().filter(|b| b.is_ascii_digit()).count();
    let upper = body.iter().any(u8::is_ascii_uppercase);
    let lower = body.iter().any(u8::is_ascii_lowercase);
    let hexish = body
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b) || *b == b'-');
    let random = (digits >= 2 && upper && lower) || (hexish && digits >= 4);
    (body.len() >= 32 && random).then_some(ApiKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<(&str, PiiKind)> {
        let h = text.as_bytes();
        (0..h.len())
            .filter(|&s| {
                (s == 0 || !(h[s - 1].is_ascii_alphanumeric() || h[s - 1] == b'_'))
                    && h[s].is_ascii_alphanumeric()
            })
            .find_map(|s| at_word(h, s))
            .map(|(a, b, k)| (&text[a..b], k))
    }

    #[test]
    fn stateless_installation_token_is_taken_whole() {
        let t = format!(
            "ghs_123456_eyJhbGciOiJSUzI1NiJ9.eyJ{}.{}",
            "a1B2c3".repeat(50),
            "Zz9-_".repeat(50)
        );
        assert_eq!(
            find(&format!("token {t}. next")),
            Some((t.as_str(), GithubToken))
        );
    }

    #[test]
    fn sk_prefix_is_told_apart() {
        let body = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z".repeat(3);
        let proj = format!("sk-proj-{body}");
        assert_eq!(find(&proj), Some((proj.as_str(), OpenaiKey)));
        let ant = format!("sk-ant-api03-{body}AA");
        assert_eq!(find(&ant), Some((ant.as_str(), AnthropicKey)));
        assert_eq!(
            find("pip install sk-learn-model-training-pipeline-v2"),
            None
        );
    }

    #[test]
    fn exact_length_formats_reject_longer_runs() {
        let sg = format!("SG.{}.{}", "a".repeat(22), "B".repeat(43));
        assert_eq!(find(&sg), Some((sg.as_str(), SendgridKey)));
        assert_eq!(
            find(&format!("npm_{}", "a1".repeat(18))).map(|x| x.1),
            Some(ApiKey)
        );
        assert_eq!(find(&format!("npm_{}", "a1".repeat(19))), None);
    }

    #[test]
    fn slack_webhook_keeps_the_host() {
        let t = "post to https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx now";
        assert_eq!(
            find(t),
            Some(("T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx", SlackToken))
        );
    }
}
