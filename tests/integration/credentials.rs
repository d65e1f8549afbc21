//! Credentials through `draco redact`: every format Draco handles (and the
//! documented formats secret scanners look for) is redacted whole, with no
//! piece of the secret longer than four bytes left, and benign cloud
//! identifiers pass untouched.

use draco::bench::redact_corpus::Rng;
use draco::bench::redact_corpus::credentials::{FORMATS, samples};
use draco::redact::Redactor;
use regex::Regex;

/// Runs `draco redact` on `input`.
fn redact(input: &str) -> String {
    crate::support::run_with_stdin(&["redact"], input)
}

/// Panics when a piece of `secret` longer than four bytes is in `output`
/// (placeholders removed), unless that piece was in the input outside the
/// secret too.
fn assert_gone(secret: &str, input: &str, output: &str) {
    let placeholder = Regex::new(r"<[A-Z][A-Z0-9_]*_[0-9]+>").expect("regex");
    let left = placeholder.replace_all(output, " ");
    let around = input.replace(secret, " ");
    let s = secret.as_bytes();
    for w in s.windows(5) {
        let Ok(piece) = std::str::from_utf8(w) else {
            continue;
        };
        assert!(
            !left.contains(piece) || around.contains(piece),
            "{piece:?} of {secret:?} survived in {output:?}"
        );
    }
}

fn check(input: &str, secret: &str, placeholder: &str) {
    let out = redact(input);
    assert_gone(secret, input, &out);
    assert!(out.contains(placeholder), "{placeholder} not in {out:?}");
}

fn chars(rng: &mut Rng, alphabet: &[u8], n: usize) -> String {
    rng.chars(alphabet, n)
}

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[test]
fn github_stateless_installation_token_is_redacted_whole() {
    let mut rng = Rng::new(1);
    // `ghs_<app id>_<JWT>`: about 520 bytes, two dots.
    let token = format!(
        "ghs_1234567_eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
        chars(&mut rng, B64URL, 120),
        chars(&mut rng, B64URL, 342)
    );
    assert!(token.len() > 500 && token.matches('.').count() == 2);
    for input in [
        format!("installation token {token}. expires in 1h\n"),
        format!("GITHUB_TOKEN={token}\n"),
        format!("{{\"token\": \"{token}\", \"expires_at\": \"2026-12-05T09:00:00Z\"}}"),
        format!("Authorization: Bearer {token}\r\n"),
        format!("git clone https://x-access-token:{token}@github.com/o/r.git"),
    ] {
        let out = redact(&input);
        assert_gone(&token, &input, &out);
    }
    check(&format!("t={token} ok"), &token, "<GITHUB_TOKEN_1>");
}

#[test]
fn github_classic_and_fine_grained_tokens_are_redacted_whole() {
    let mut rng = Rng::new(2);
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        let t = format!("{prefix}{}", chars(&mut rng, ALNUM, 36));
        check(&format!("token {t} used"), &t, "<GITHUB_TOKEN_1>");
    }
    let pat = format!(
        "github_pat_{}_{}",
        chars(&mut rng, ALNUM, 22),
        chars(&mut rng, ALNUM, 59)
    );
    check(&format!("GH_PAT=\"{pat}\""), &pat, "<GITHUB_TOKEN_1>");
}

#[test]
fn openai_keys_of_every_prefix_are_redacted_whole() {
    let mut rng = Rng::new(3);
    for prefix in ["sk-proj-", "sk-svcacct-", "sk-admin-"] {
        let k = format!(
            "{prefix}{}T3BlbkFJ{}",
            chars(&mut rng, B64URL, 74),
            chars(&mut rng, B64URL, 74)
        );
        check(&format!("using {k} for the advisor"), &k, "<OPENAI_KEY_1>");
    }
    let legacy = format!(
        "sk-{}T3BlbkFJ{}",
        chars(&mut rng, ALNUM, 20),
        chars(&mut rng, ALNUM, 20)
    );
    check(
        &format!("openai.api_key = '{legacy}'"),
        &legacy,
        "<OPENAI_KEY_1>",
    );
}

#[test]
fn anthropic_keys_are_redacted_whole() {
    let mut rng = Rng::new(4);
    for prefix in ["sk-ant-api03-", "sk-ant-admin01-"] {
        let k = format!("{prefix}{}AA", chars(&mut rng, B64URL, 93));
        check(&format!("x-api-key: {k}\r\n"), &k, "<ANTHROPIC_KEY_1>");
    }
}

#[test]
fn gemini_twilio_sendgrid_stripe_slack_aws_keys_are_redacted_whole() {
    let mut rng = Rng::new(5);
    let hex = b"0123456789abcdef";
    let cases = [
        (
            format!("AIza{}", chars(&mut rng, B64URL, 35)),
            "<GOOGLE_API_KEY_1>",
        ),
        (format!("SK{}", chars(&mut rng, hex, 32)), "<TWILIO_KEY_1>"),
        (
            format!(
                "SG.{}.{}",
                chars(&mut rng, B64URL, 22),
                chars(&mut rng, B64URL, 43)
            ),
            "<SENDGRID_KEY_1>",
        ),
        (
            format!("sk_live_{}", chars(&mut rng, ALNUM, 99)),
            "<STRIPE_KEY_1>",
        ),
        (
            format!("whsec_{}", chars(&mut rng, ALNUM, 32)),
            "<STRIPE_KEY_1>",
        ),
        (
            format!(
                "xoxb-{}-{}-{}",
                rng.digits(11),
                rng.digits(13),
                chars(&mut rng, ALNUM, 24)
            ),
            "<SLACK_TOKEN_1>",
        ),
        (
            format!("xoxe.xoxp-1-{}", chars(&mut rng, ALNUM, 140)),
            "<SLACK_TOKEN_1>",
        ),
        (
            format!(
                "AKIA{}",
                chars(&mut rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            ),
            "<AWS_ACCESS_KEY_1>",
        ),
        (
            format!("glpat-{}", chars(&mut rng, B64URL, 20)),
            "<API_KEY_1>",
        ),
        (format!("npm_{}", chars(&mut rng, ALNUM, 36)), "<API_KEY_1>"),
    ];
    for (key, placeholder) in &cases {
        check(&format!("key: {key} (rotated)\n"), key, placeholder);
        check(&format!("see {key}."), key, placeholder);
    }
}

#[test]
fn twilio_auth_token_after_its_key_is_redacted_and_account_sid_kept() {
    let sid = "AC0123456789abcdef0123456789abcdef";
    let token = "9f86d081884c7d659a2feaa0c55ad015";
    let input = format!(
        "TWILIO_ACCOUNT_SID={sid}\nTWILIO_AUTH_TOKEN={token}\ntwilio:\n  auth_token: \"{token}\"\n"
    );
    let out = redact(&input);
    assert_gone(token, &input, &out);
    assert!(out.contains(sid), "{out}");
}

#[test]
fn values_after_secret_like_keys_are_redacted_in_every_shape() {
    let secret = "Zq8vT2mW5xL9pK3r";
    let password = "c0rrect-h0rse!";
    for (input, value, placeholder) in [
        (format!("MY_SERVICE_TOKEN={secret}\n"), secret, "<SECRET_1>"),
        (
            format!("oauth:\n  client_secret: {secret}\n"),
            secret,
            "<SECRET_1>",
        ),
        (
            format!("{{\"client_secret\": \"{secret}\"}}"),
            secret,
            "<SECRET_1>",
        ),
        (format!("api_key = \"{secret}\"\n"), secret, "<SECRET_1>"),
        (format!("X-Api-Key: {secret}\r\n"), secret, "<SECRET_1>"),
        (
            format!("Authorization: Bearer {secret}\r\n"),
            secret,
            "<SECRET_1>",
        ),
        (
            format!("deploy --api-token {secret} --region eu-west-1"),
            secret,
            "<SECRET_1>",
        ),
        (
            format!("DB_PASSWORD={password}\n"),
            password,
            "<PASSWORD_1>",
        ),
        (
            format!("  password: {password}\n"),
            password,
            "<PASSWORD_1>",
        ),
        (
            format!("PGPASSWORD='{password}' psql"),
            password,
            "<PASSWORD_1>",
        ),
    ] {
        check(&input, value, placeholder);
    }
}

#[test]
fn references_to_secrets_and_benign_cloud_identifiers_are_kept() {
    let input = "\
token: ${{ secrets.GITHUB_TOKEN }}
password: $DB_PASSWORD
i-0abc1234def567890 vol-0123456789abcdef0 snap-0a1b2c3d4e5f67890 sg-0123456789abcdef0
ami-0123456789abcdef0 eni-0a1b2c3d4e5f67890 subnet-0123abcd vpc-0a1b2c3d eipalloc-0b7d9f1a3c5e7b9d1
arn:aws:s3:::logs-bucket/cur/2026/11/part-00001.parquet in us-east-1 and eu-central-1a
commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b
image@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
{\"RequestId\": \"6f1c0a52-3d1e-4b8a-9c7e-2f0b1a4d5e6f\", \"NextToken\": \"eyJ2IjoxLCJrIjoiYWJjZGVmZ2hpamtsbW5vcCJ9\"}
{\"ClientToken\": \"a7f3c2e1-1111-4222-8333-444455556666\", \"KmsKeyId\": \"mrk-1234abcd12ab34cd56ef1234567890ab\"}
x-amz-request-id: 4442587FB7D0A2F9
account_sid=AC0123456789abcdef0123456789abcdef publishable_key=pk_live_51HabcdefghijklmnopqrstuV
";
    assert_eq!(redact(input), input);
}

/// Every format of the bench's generator, through the library (the binary
/// runs the same redactor; one process per sample would be slow).
#[test]
fn every_generated_format_is_redacted_whole() {
    let r = Redactor::default();
    for sample in samples(17, 20) {
        for doc in &sample.docs {
            let (red, _) = r.redact_text(&doc.text);
            for label in &doc.spans {
                assert_gone(&doc.text[label.start..label.end], &doc.text, red.get());
            }
        }
    }
    assert!(FORMATS.len() >= 40);
}
