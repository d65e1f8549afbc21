//! Generated credentials of every format the redactor must take whole, and
//! benign cloud identifiers it must keep: the corpus behind the credential
//! part of `draco bench redact`.
//!
//! Every key is made here from a seed, in the shape its provider documents
//! (prefix, alphabet, length); none is a real key. Each is planted in one
//! of the ways configuration and logs carry secrets (env, YAML, JSON, TOML,
//! a header, a CLI flag, a URL query, prose) and labelled with its exact
//! byte span, so the bench can tell a whole redaction from a partial one.
//!
//! The benign identifiers (EC2 ids, ARNs, regions, digests, UUIDs, request
//! ids, S3 keys, provider object ids such as Twilio account SIDs) are
//! planted under the keys they come with in AWS and provider output, some of
//! which look secret-like (`NextToken`, `ClientToken`, `KmsKeyId`).

use super::{Labelled, Rng};
use crate::redact::{PiiKind, Span};

const HEX: &[u8] = b"0123456789abcdef";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const UPPER_NUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_NUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Password characters that need no quoting in env files and YAML.
const PASSWORD: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!@%^*-_+=.~";

/// Where a format's value may be planted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere: its own shape announces it.
    Anywhere,
    /// Only after a key or a header that names a secret.
    Keyed(&'static [&'static str]),
}

/// One documented credential format.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub name: &'static str,
    /// The kind the redactor should report.
    pub kind: PiiKind,
    pub placement: Placement,
    make: fn(&mut Rng) -> String,
}

impl Format {
    pub fn make(&self, rng: &mut Rng) -> String {
        (self.make)(rng)
    }
}

/// `min..min + spread` characters of `alphabet`.
fn var(r: &mut Rng, alphabet: &[u8], min: usize, spread: usize) -> String {
    let n = min + r.below(spread);
    r.chars(alphabet, n)
}

fn b64url_json(rng: &mut Rng, n: usize) -> String {
    format!("eyJ{}", rng.chars(B64URL, n))
}

/// A JWT-shaped string: header, payload, signature (RS256 signatures are 342 bytes).
fn jwt(rng: &mut Rng, payload: usize, signature: usize) -> String {
    format!(
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
        b64url_json(rng, payload),
        rng.chars(B64URL, signature)
    )
}

const ENV_TOKEN: &[&str] = &[
    "GITHUB_TOKEN",
    "SLACK_BOT_TOKEN",
    "API_TOKEN",
    "VAULT_TOKEN",
    "npm_token",
    "accessToken",
    "refresh_token",
    "X-Auth-Token",
    "Private-Token",
];
const SECRET_KEYS: &[&str] = &[
    "client_secret",
    "CLIENT_SECRET",
    "webhook_secret",
    "jwtSecret",
    "app.secret",
    "SECRET",
    "consumerSecret",
];
const API_KEYS: &[&str] = &[
    "api_key",
    "apiKey",
    "API_KEY",
    "x-api-key",
    "X-Api-Key",
    "api-key",
    "OPENAI_API_KEY",
    "stripeSecretKey",
    "secret_key",
    "AccountKey",
];
const PASSWORD_KEYS: &[&str] = &[
    "password",
    "DB_PASSWORD",
    "db_pass",
    "smtpPassword",
    "passwd",
    "PGPASSWORD",
    "admin-password",
    "passphrase",
    "REDIS_PASS",
];
const TWILIO_KEYS: &[&str] = &[
    "TWILIO_AUTH_TOKEN",
    "twilio_auth_token",
    "authToken",
    "auth_token",
];
const AWS_SECRET_KEYS: &[&str] = &[
    "aws_secret_access_key",
    "AWS_SECRET_ACCESS_KEY",
    "SecretAccessKey",
    "secretAccessKey",
];
const WEAK_KEYS: &[&str] = &[
    "SENDGRID_KEY",
    "mapsKey",
    "Ocp-Apim-Subscription-Key",
    "license_key",
];
const AUTHORIZATION: &[&str] = &["Authorization"];

/// Every format, with how its keys are made.
pub const FORMATS: &[Format] = &[
    Format {
        name: "github classic (ghp_/gho_/ghu_/ghs_/ghr_)",
        kind: PiiKind::GithubToken,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]);
            format!("{p}{}", r.chars(ALNUM, 36))
        },
    },
    Format {
        name: "github fine-grained (github_pat_)",
        kind: PiiKind::GithubToken,
        placement: Placement::Anywhere,
        make: |r| format!("github_pat_{}_{}", r.chars(ALNUM, 22), r.chars(ALNUM, 59)),
    },
    Format {
        name: "github stateless installation (ghs_<app>_<JWT>)",
        kind: PiiKind::GithubToken,
        placement: Placement::Anywhere,
        make: |r| {
            let payload = 120 + r.below(60);
            if r.chance(70) {
                let app = var(r, b"0123456789", 6, 3);
                let j = jwt(r, payload, 342);
                format!("ghs_{app}_{j}")
            } else {
                format!("ghs_{}", jwt(r, payload, 342))
            }
        },
    },
    Format {
        name: "openai project/service/admin (sk-proj-, sk-svcacct-, sk-admin-)",
        kind: PiiKind::OpenaiKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["sk-proj-", "sk-svcacct-", "sk-admin-"]);
            format!("{p}{}T3BlbkFJ{}", r.chars(B64URL, 74), r.chars(B64URL, 74))
        },
    },
    Format {
        name: "openai legacy (sk-…T3BlbkFJ…)",
        kind: PiiKind::OpenaiKey,
        placement: Placement::Anywhere,
        make: |r| format!("sk-{}T3BlbkFJ{}", r.chars(ALNUM, 20), r.chars(ALNUM, 20)),
    },
    Format {
        name: "anthropic (sk-ant-api03-, sk-ant-admin01-)",
        kind: PiiKind::AnthropicKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["sk-ant-api03-", "sk-ant-admin01-"]);
            format!("{p}{}AA", r.chars(B64URL, 93))
        },
    },
    Format {
        name: "google / gemini api key (AIza)",
        kind: PiiKind::GoogleApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("AIza{}", r.chars(B64URL, 35)),
    },
    Format {
        name: "google oauth client secret (GOCSPX-)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("GOCSPX-{}", r.chars(B64URL, 28)),
    },
    Format {
        name: "twilio api key sid (SK + 32 hex)",
        kind: PiiKind::TwilioKey,
        placement: Placement::Anywhere,
        make: |r| format!("SK{}", r.chars(HEX, 32)),
    },
    Format {
        name: "twilio auth token (32 hex after its key)",
        kind: PiiKind::Secret,
        placement: Placement::Keyed(TWILIO_KEYS),
        make: |r| r.chars(HEX, 32),
    },
    Format {
        name: "sendgrid (SG.<22>.<43>)",
        kind: PiiKind::SendgridKey,
        placement: Placement::Anywhere,
        make: |r| format!("SG.{}.{}", r.chars(B64URL, 22), r.chars(B64URL, 43)),
    },
    Format {
        name: "slack (xoxb-/xoxp-/xoxe.xoxp-/xapp-)",
        kind: PiiKind::SlackToken,
        placement: Placement::Anywhere,
        make: |r| match r.below(4) {
            0 => format!(
                "xoxb-{}-{}-{}",
                r.digits(11),
                r.digits(13),
                r.chars(ALNUM, 24)
            ),
            1 => format!(
                "xoxp-{}-{}-{}-{}",
                r.digits(11),
                r.digits(11),
                r.digits(13),
                r.chars(HEX, 32)
            ),
            2 => format!("xoxe.xoxp-1-{}", r.chars(ALNUM, 140)),
            _ => format!(
                "xapp-1-A{}-{}-{}",
                r.chars(UPPER_NUM, 10),
                r.digits(13),
                r.chars(HEX, 64)
            ),
        },
    },
    Format {
        name: "slack webhook path (hooks.slack.com/services/…)",
        kind: PiiKind::SlackToken,
        placement: Placement::Anywhere,
        make: |r| {
            format!(
                "T{}/B{}/{}",
                r.chars(UPPER_NUM, 10),
                r.chars(UPPER_NUM, 10),
                r.chars(ALNUM, 24)
            )
        },
    },
    Format {
        name: "aws access key id (AKIA/ASIA/ABIA/ACCA)",
        kind: PiiKind::AwsAccessKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["AKIA", "ASIA", "ABIA", "ACCA"]);
            format!("{p}{}", r.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))
        },
    },
    Format {
        name: "aws secret access key (after its key)",
        kind: PiiKind::AwsSecretKey,
        placement: Placement::Keyed(AWS_SECRET_KEYS),
        make: |r| r.chars(B64, 40),
    },
    Format {
        name: "stripe (sk_live_/rk_test_/whsec_)",
        kind: PiiKind::StripeKey,
        placement: Placement::Anywhere,
        make: |r| {
            if r.chance(20) {
                format!("whsec_{}", r.chars(ALNUM, 32))
            } else {
                let p = *r.pick(&["sk_live_", "sk_test_", "rk_live_", "rk_test_"]);
                format!("{p}{}", var(r, ALNUM, 24, 76))
            }
        },
    },
    Format {
        name: "gitlab (glpat-/gldt-/glrt-/glptt-)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["glpat-", "gldt-", "glrt-", "glptt-", "glft-"]);
            if r.chance(50) {
                format!("{p}{}", r.chars(B64URL, 20))
            } else {
                format!("{p}{}.01.{}", r.chars(B64URL, 27), r.chars(LOWER_NUM, 9))
            }
        },
    },
    Format {
        name: "npm (npm_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("npm_{}", r.chars(ALNUM, 36)),
    },
    Format {
        name: "pypi (pypi-AgEIcHlwaS5vcmc…)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("pypi-AgEIcHlwaS5vcmc{}", r.chars(B64URL, 150)),
    },
    Format {
        name: "docker hub (dckr_pat_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("dckr_pat_{}", r.chars(B64URL, 27)),
    },
    Format {
        name: "hugging face (hf_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            format!(
                "hf_{}",
                r.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34)
            )
        },
    },
    Format {
        name: "model providers (gsk_, xai-, pplx-, r8_, lsv2_pt_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| match r.below(5) {
            0 => format!("gsk_{}", r.chars(ALNUM, 52)),
            1 => format!("xai-{}", r.chars(ALNUM, 80)),
            2 => format!("pplx-{}", r.chars(ALNUM, 48)),
            3 => format!("r8_{}", r.chars(ALNUM, 37)),
            _ => format!("lsv2_pt_{}_{}", r.chars(HEX, 32), r.chars(HEX, 10)),
        },
    },
    Format {
        name: "digitalocean (dop_v1_/doo_v1_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["dop_v1_", "doo_v1_", "dor_v1_"]);
            format!("{p}{}", r.chars(HEX, 64))
        },
    },
    Format {
        name: "hashicorp vault (hvs./hvb.)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["hvs.", "hvb."]);
            format!("{p}{}", var(r, B64URL, 90, 60))
        },
    },
    Format {
        name: "shopify (shpat_/shpss_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            let p = *r.pick(&["shpat_", "shpca_", "shppa_", "shpss_"]);
            format!("{p}{}", r.chars(HEX, 32))
        },
    },
    Format {
        name: "doppler (dp.pt.)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("dp.pt.{}", r.chars(ALNUM, 43)),
    },
    Format {
        name: "pulumi (pul-)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("pul-{}", r.chars(HEX, 40)),
    },
    Format {
        name: "postman (PMAK-)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("PMAK-{}-{}", r.chars(HEX, 24), r.chars(HEX, 34)),
    },
    Format {
        name: "linear (lin_api_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("lin_api_{}", r.chars(ALNUM, 40)),
    },
    Format {
        name: "atlassian (ATATT3)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            format!(
                "ATATT3xFfGF0{}={}",
                r.chars(B64URL, 170),
                r.chars(UPPER_NUM, 8)
            )
        },
    },
    Format {
        name: "databricks (dapi)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("dapi{}", r.chars(HEX, 32)),
    },
    Format {
        name: "grafana (glc_/glsa_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            if r.chance(50) {
                format!("glc_{}", r.chars(ALNUM, 80))
            } else {
                format!("glsa_{}_{}", r.chars(ALNUM, 32), r.chars(HEX, 8))
            }
        },
    },
    Format {
        name: "new relic (NRAK-)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("NRAK-{}", r.chars(UPPER_NUM, 27)),
    },
    Format {
        name: "sentry (sntrys_/sntryu_)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| {
            if r.chance(50) {
                format!("sntrys_eyJ{}=_{}", r.chars(ALNUM, 120), r.chars(B64, 43))
            } else {
                format!("sntryu_{}", r.chars(HEX, 64))
            }
        },
    },
    Format {
        name: "mailgun (key-)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("key-{}", r.chars(HEX, 32)),
    },
    Format {
        name: "age secret key (AGE-SECRET-KEY-1)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("AGE-SECRET-KEY-1{}", r.chars(UPPER_NUM, 58)),
    },
    Format {
        name: "alibaba (LTAI)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("LTAI{}", r.chars(ALNUM, 20)),
    },
    Format {
        name: "square / facebook (sq0atp-, sq0csp-, EAA…)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| match r.below(3) {
            0 => format!("sq0atp-{}", r.chars(B64URL, 22)),
            1 => format!("sq0csp-{}", r.chars(B64URL, 43)),
            _ => format!("EAA{}", var(r, ALNUM, 100, 80)),
        },
    },
    Format {
        name: "1password service account (ops_eyJ)",
        kind: PiiKind::ApiKey,
        placement: Placement::Anywhere,
        make: |r| format!("ops_eyJ{}", r.chars(B64URL, 600)),
    },
    Format {
        name: "private key (PEM)",
        kind: PiiKind::PrivateKey,
        placement: Placement::Anywhere,
        make: |r| {
            let label = *r.pick(&[
                "RSA PRIVATE KEY",
                "EC PRIVATE KEY",
                "OPENSSH PRIVATE KEY",
                "PRIVATE KEY",
            ]);
            let body: Vec<String> = (0..4).map(|_| r.chars(B64, 64)).collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----",
                body.join("\n")
            )
        },
    },
    Format {
        name: "jwt",
        kind: PiiKind::Jwt,
        placement: Placement::Anywhere,
        make: |r| jwt(r, 80, 43),
    },
    Format {
        name: "value after *_TOKEN / token key",
        kind: PiiKind::Secret,
        placement: Placement::Keyed(ENV_TOKEN),
        make: |r| var(r, ALNUM, 16, 48),
    },
    Format {
        name: "value after *_SECRET / client_secret",
        kind: PiiKind::Secret,
        placement: Placement::Keyed(SECRET_KEYS),
        make: |r| var(r, B64URL, 24, 40),
    },
    Format {
        name: "value after api_key / x-api-key",
        kind: PiiKind::Secret,
        placement: Placement::Keyed(API_KEYS),
        make: |r| var(r, ALNUM, 20, 44),
    },
    Format {
        name: "value after *_KEY (random-looking)",
        kind: PiiKind::Secret,
        placement: Placement::Keyed(WEAK_KEYS),
        make: |r| format!("{}{}", r.chars(UPPER, 2), r.chars(ALNUM, 30)),
    },
    Format {
        name: "value after password / passwd / pwd",
        kind: PiiKind::Password,
        placement: Placement::Keyed(PASSWORD_KEYS),
        // Policies ask for a letter or digit first; a leading `-` after a
        // CLI flag would read as the next flag.
        make: |r| format!("{}{}", r.chars(ALNUM, 1), var(r, PASSWORD, 7, 16)),
    },
    Format {
        name: "Authorization header credential (Bearer/Basic/token)",
        kind: PiiKind::Secret,
        placement: Placement::Keyed(AUTHORIZATION),
        make: |r| var(r, B64, 24, 40),
    },
];

/// One format's samples.
#[derive(Debug, Clone)]
pub struct FormatSamples {
    pub format: &'static Format,
    pub docs: Vec<Labelled>,
}

impl Labelled {
    /// Appends a labelled value.
    fn secret(&mut self, kind: PiiKind, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.spans.push(Span {
            start,
            end: self.text.len(),
            kind,
        });
    }
}

/// `stripeSecretKey`, `DB_PASSWORD` → `stripe-secret-key`, `db-password`.
fn kebab(key: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('-');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(if c == '_' {
            '-'
        } else {
            c.to_ascii_lowercase()
        });
    }
    out
}

/// Plants `v` in `doc` after `key`, in one of the shapes configuration,
/// headers and command lines use.
fn keyed(rng: &mut Rng, doc: &mut Labelled, key: &str, kind: PiiKind, v: &str) {
    if key == "Authorization" {
        let scheme = *rng.pick(&["Bearer", "Basic", "token", "Bearer"]);
        let shape = rng.below(3);
        match shape {
            0 => doc
                .text
                .push_str(&format!("GET /v1/x HTTP/1.1\r\nAuthorization: {scheme} ")),
            1 => doc
                .text
                .push_str(&format!("curl -s -H 'Authorization: {scheme} ")),
            _ => doc
                .text
                .push_str(&format!("{{\"headers\": {{\"Authorization\": \"{scheme} ")),
        }
        doc.secret(kind, v);
        doc.text.push_str(match shape {
            0 => "\r\nHost: api.example.com\r\n",
            1 => "' https://api.example.com/v1/x\n",
            _ => "\"}}\n",
        });
        return;
    }
    let (before, after) = match rng.below(8) {
        0 => (format!("{key}="), "\n".to_owned()),
        1 => (format!("export {key}=\""), "\"\n".to_owned()),
        2 => (format!("  {key}: "), "\n  region: us-east-1\n".to_owned()),
        3 => (
            format!("{{\"{key}\": \""),
            "\", \"region\": \"us-east-1\"}\n".to_owned(),
        ),
        4 => (format!("{key} = \""), "\"\n".to_owned()),
        // A value that starts with `-` needs `=` after a flag, or it reads as the next flag.
        5 if v.starts_with('-') => (format!("app --{}=", kebab(key)), " --verbose\n".to_owned()),
        5 => (format!("app --{} ", kebab(key)), " --verbose\n".to_owned()),
        6 => (format!("{key}: "), "\r\n".to_owned()),
        _ => (
            format!("level=info msg=\"loaded\" {key}="),
            " status=200\n".to_owned(),
        ),
    };
    doc.text.push_str(&before);
    doc.secret(kind, v);
    doc.text.push_str(&after);
}

/// Plants a self-announcing value in prose, a log line, a URL or config.
fn anywhere(rng: &mut Rng, doc: &mut Labelled, format: &Format, v: &str) {
    if format.name.starts_with("slack webhook") {
        doc.text
            .push_str("notify: https://hooks.slack.com/services/");
        doc.secret(format.kind, v);
        doc.text.push('\n');
        return;
    }
    if format.kind == PiiKind::PrivateKey {
        doc.text.push_str("tls_key: |\n");
        doc.secret(format.kind, v);
        doc.text.push_str("\nport: 443\n");
        return;
    }
    let (before, after) = *rng.pick(&[
        ("rotated the key ", " yesterday.\n"),
        ("see (", ") in the ticket\n"),
        ("value=", " status=200\n"),
        ("{\"value\": \"", "\"}\n"),
        ("https://api.example.com/v1/items?access=", "&page=2\n"),
        ("leaked: ", ".\n"),
        ("x = '", "'\n"),
        ("ENV_VALUE=", "\n"),
    ]);
    doc.text.push_str(before);
    doc.secret(format.kind, v);
    doc.text.push_str(after);
}

/// `per_format` samples of every format from `seed`, each a short document
/// with some ordinary text around the planted value.
pub fn samples(seed: u64, per_format: usize) -> Vec<FormatSamples> {
    let mut rng = Rng::new(seed);
    FORMATS
        .iter()
        .map(|format| {
            let docs = (0..per_format)
                .map(|_| {
                    let mut doc = Labelled::default();
                    doc.text.push_str(
                        "2026-12-05T08:00:00Z INFO deploy i-0abc1234def567890 in us-east-1\n",
                    );
                    let v = format.make(&mut rng);
                    match format.placement {
                        Placement::Keyed(keys) => {
                            let key = *rng.pick(keys);
                            keyed(&mut rng, &mut doc, key, format.kind, &v);
                        }
                        Placement::Anywhere => {
                            // A webhook path and a PEM block announce
                            // themselves only in their own setting.
                            let own_setting = format.kind == PiiKind::PrivateKey
                                || format.name.starts_with("slack webhook");
                            if !own_setting && rng.chance(25) {
                                let key = *rng.pick(&["TOKEN", "api_key", "secret", "credentials"]);
                                keyed(&mut rng, &mut doc, key, format.kind, &v);
                            } else {
                                anywhere(&mut rng, &mut doc, format, &v);
                            }
                        }
                    }
                    doc.text.push_str("done in 12ms\n");
                    doc
                })
                .collect();
            FormatSamples { format, docs }
        })
        .collect()
}

/// A value of one of the formats of `kind` (for the mixed corpus and the
/// property tests); an empty string for kinds this module does not make.
pub fn of_kind(rng: &mut Rng, kind: PiiKind) -> String {
    let formats: Vec<&Format> = FORMATS.iter().filter(|f| f.kind == kind).collect();
    if formats.is_empty() {
        return String::new();
    }
    let format = *rng.pick(&formats);
    format.make(rng)
}

/// One class of benign identifier and how it is written.
pub struct BenignClass {
    pub name: &'static str,
    make: fn(&mut Rng) -> (String, String, String),
}

fn res(rng: &mut Rng, p: &str) -> String {
    let n = if rng.chance(80) { 17 } else { 8 };
    format!("{p}-{}", rng.chars(HEX, n))
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        rng.chars(HEX, 8),
        rng.chars(HEX, 4),
        rng.chars(HEX, 3),
        *rng.pick(&["8", "9", "a", "b"]),
        rng.chars(HEX, 3),
        rng.chars(HEX, 12)
    )
}

fn json_field(key: &str, v: String) -> (String, String, String) {
    (format!("{{\"{key}\": \""), v, "\"}".to_owned())
}

fn region(rng: &mut Rng) -> String {
    (*rng.pick(&crate::bench::AWS_REGIONS)).to_owned()
}

/// Benign identifiers, each with the text before and after it.
pub const BENIGN: &[BenignClass] = &[
    BenignClass {
        name: "ec2 resource ids",
        make: |r| {
            let p = *r.pick(&[
                "i", "vol", "snap", "sg", "ami", "eni", "subnet", "vpc", "eipalloc", "igw", "rtb",
                "nat", "acl", "lt",
            ]);
            let key = *r.pick(&["ResourceId", "id", "InstanceId", "resource"]);
            let v = res(r, p);
            if r.chance(50) {
                json_field(key, v)
            } else {
                (format!("{key}="), v, " state=running".to_owned())
            }
        },
    },
    BenignClass {
        name: "arns (no account, or account redacted as ACCOUNT_ID)",
        make: |r| {
            let v = match r.below(4) {
                0 => format!(
                    "arn:aws:s3:::logs-{}-bucket/key/{}.gz",
                    r.digits(4),
                    r.chars(HEX, 8)
                ),
                1 => format!(
                    "arn:aws:iam::aws:policy/{}",
                    r.pick(&["ReadOnlyAccess", "AdministratorAccess"])
                ),
                2 => format!(
                    "arn:aws:secretsmanager:{}:{}:secret:prod/db-{}",
                    region(r),
                    r.digits(12),
                    r.chars(ALNUM, 6)
                ),
                _ => format!("arn:aws:kms:{}:{}:key/{}", region(r), r.digits(12), uuid(r)),
            };
            let key = *r.pick(&["SecretArn", "KmsKeyArn", "Arn", "resource"]);
            json_field(key, v)
        },
    },
    BenignClass {
        name: "regions and zones",
        make: |r| {
            let mut v = region(r);
            if r.chance(40) {
                v.push(char::from(*r.pick(b"abc")));
            }
            (" in ".to_owned(), v, ", ".to_owned())
        },
    },
    BenignClass {
        name: "hex digests and commit shas",
        make: |r| {
            let (k, v) = match r.below(6) {
                0 => ("commit ", r.chars(HEX, 40)),
                1 => ("\"ETag\": \"\\\"", r.chars(HEX, 32)),
                2 => ("image@sha256:", r.chars(HEX, 64)),
                3 => ("sha1=", r.chars(HEX, 40)),
                4 => ("\"digest\": \"sha256:", r.chars(HEX, 64)),
                _ => ("checksum: ", r.chars(HEX, 64)),
            };
            (k.to_owned(), v, " ok".to_owned())
        },
    },
    BenignClass {
        name: "uuids and request ids",
        make: |r| match r.below(5) {
            0 => json_field("RequestId", uuid(r)),
            1 => (
                "x-amz-request-id: ".to_owned(),
                r.chars(b"0123456789ABCDEF", 16),
                "\r\n".to_owned(),
            ),
            2 => (
                "x-amz-id-2: ".to_owned(),
                format!("{}=", r.chars(B64, 75)),
                "\r\n".to_owned(),
            ),
            3 => json_field("ClientToken", uuid(r)),
            _ => (
                "X-Amzn-Trace-Id: Root=".to_owned(),
                format!("1-{}-{}", r.chars(HEX, 8), r.chars(HEX, 24)),
                "\r\n".to_owned(),
            ),
        },
    },
    BenignClass {
        name: "s3 keys and paths",
        make: |r| {
            let v = format!(
                "{}/2026/{:02}/{:02}/{}-{}.{}",
                r.pick(&["logs", "exports", "reports", "cur/daily"]),
                1 + r.below(12),
                1 + r.below(28),
                r.pick(&["app", "billing", "cur"]),
                r.digits(5),
                r.pick(&["gz", "csv", "parquet", "json"])
            );
            let key = *r.pick(&["Key", "s3_key", "ObjectKey", "path"]);
            json_field(key, v)
        },
    },
    BenignClass {
        name: "pagination and idempotency tokens",
        make: |r| {
            let key = *r.pick(&[
                "NextToken",
                "nextPageToken",
                "ContinuationToken",
                "ClientToken",
                "IdempotencyKey",
            ]);
            let v = if r.chance(50) {
                uuid(r)
            } else {
                format!("eyJ{}", r.chars(B64URL, 60))
            };
            json_field(key, v)
        },
    },
    BenignClass {
        name: "key ids and names (KmsKeyId, KeyName, PublicKey)",
        make: |r| match r.below(4) {
            0 => json_field("KmsKeyId", uuid(r)),
            1 => json_field("KmsKeyId", format!("mrk-{}", r.chars(HEX, 32))),
            2 => json_field("KeyName", format!("prod-{}-key", r.chars(LOWER_NUM, 6))),
            _ => json_field(
                "PublicKey",
                format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}", r.chars(B64, 43)),
            ),
        },
    },
    BenignClass {
        name: "provider object ids (Twilio AC/SM sids, OpenAI/Anthropic ids, pk_ keys)",
        make: |r| match r.below(6) {
            0 => json_field("account_sid", format!("AC{}", r.chars(HEX, 32))),
            1 => json_field("sid", format!("SM{}", r.chars(HEX, 32))),
            2 => json_field("id", format!("chatcmpl-{}", r.chars(ALNUM, 29))),
            3 => json_field("id", format!("msg_01{}", r.chars(ALNUM, 22))),
            4 => json_field("organization", format!("org-{}", r.chars(ALNUM, 24))),
            _ => json_field("publishable_key", format!("pk_live_{}", r.chars(ALNUM, 24))),
        },
    },
    BenignClass {
        name: "principal ids and stack ids",
        make: |r| match r.below(2) {
            0 => json_field(
                "principalId",
                format!("AROA{}:session-{}", r.chars(UPPER_NUM, 17), r.digits(4)),
            ),
            _ => json_field("StackId", format!("stack/web-{}/{}", r.digits(3), uuid(r))),
        },
    },
];

/// `per_class` benign identifiers of every class: documents with one
/// identifier each, labelled by its span (the kind field is unused).
pub fn benign(seed: u64, per_class: usize) -> Vec<(&'static str, Vec<Labelled>)> {
    let mut rng = Rng::new(seed);
    BENIGN
        .iter()
        .map(|class| {
            let docs = (0..per_class)
                .map(|_| {
                    let (before, v, after) = (class.make)(&mut rng);
                    let mut doc = Labelled::default();
                    doc.text.push_str("2026-12-05T08:00:00Z INFO ");
                    doc.text.push_str(&before);
                    doc.secret(PiiKind::Secret, &v);
                    doc.text.push_str(&after);
                    doc.text.push('\n');
                    doc
                })
                .collect();
            (class.name, docs)
        })
        .collect()
}
