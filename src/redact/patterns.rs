//! The kinds of data the redactor replaces, and the placeholder syntax.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// What a redacted span was. Serialises snake_case for `draco redact --spans`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Ipv4,
    Ipv6,
    Mac,
    AccountId,
    AwsAccessKey,
    AwsSecretKey,
    GithubToken,
    SlackToken,
    GoogleApiKey,
    PrivateKey,
    Jwt,
    UrlCredentials,
    /// OpenAI API key: `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`, legacy `sk-…T3BlbkFJ…`.
    OpenaiKey,
    /// Anthropic API key: `sk-ant-api03-…`, `sk-ant-admin01-…`.
    AnthropicKey,
    /// Twilio API key SID `SK` + 32 hex (the SID that signs with its secret).
    TwilioKey,
    /// SendGrid API key `SG.<22>.<43>`.
    SendgridKey,
    /// Stripe secret or restricted key (`sk_live_…`, `rk_test_…`) and webhook secret (`whsec_…`).
    StripeKey,
    /// Another provider's key or token with a documented prefix (GitLab, npm,
    /// PyPI, Hugging Face, DigitalOcean, Vault, …).
    ApiKey,
    /// A value after a password-like key (`password`, `passwd`, `pwd`, `passphrase`).
    Password,
    /// A value after a secret-like key (`*_TOKEN=`, `client_secret`, `api_key`,
    /// `Authorization:`) or a bearer token, of no known shape.
    Secret,
    CreditCard,
    Ssn,
    Iban,
    Name,
}

impl PiiKind {
    /// Every kind, in declaration order (for reports).
    pub const ALL: [PiiKind; 26] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ipv4,
        PiiKind::Ipv6,
        PiiKind::Mac,
        PiiKind::AccountId,
        PiiKind::AwsAccessKey,
        PiiKind::AwsSecretKey,
        PiiKind::GithubToken,
        PiiKind::SlackToken,
        PiiKind::GoogleApiKey,
        PiiKind::PrivateKey,
        PiiKind::Jwt,
        PiiKind::UrlCredentials,
        PiiKind::OpenaiKey,
        PiiKind::AnthropicKey,
        PiiKind::TwilioKey,
        PiiKind::SendgridKey,
        PiiKind::StripeKey,
        PiiKind::ApiKey,
        PiiKind::Password,
        PiiKind::Secret,
        PiiKind::CreditCard,
        PiiKind::Ssn,
        PiiKind::Iban,
        PiiKind::Name,
    ];

    /// Whether values of this kind grant access (keys, tokens, passwords):
    /// one of them in a change request leaks it to every reader.
    pub fn is_credential(self) -> bool {
        matches!(
            self,
            PiiKind::AwsAccessKey
                | PiiKind::AwsSecretKey
                | PiiKind::GithubToken
                | PiiKind::SlackToken
                | PiiKind::GoogleApiKey
                | PiiKind::PrivateKey
                | PiiKind::Jwt
                | PiiKind::UrlCredentials
                | PiiKind::OpenaiKey
                | PiiKind::AnthropicKey
                | PiiKind::TwilioKey
                | PiiKind::SendgridKey
                | PiiKind::StripeKey
                | PiiKind::ApiKey
                | PiiKind::Password
                | PiiKind::Secret
        )
    }

    /// The word inside placeholders: `<EMAIL_1>`.
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Ipv4 => "IPV4",
            PiiKind::Ipv6 => "IPV6",
            PiiKind::Mac => "MAC",
            PiiKind::AccountId => "ACCOUNT_ID",
            PiiKind::AwsAccessKey => "AWS_ACCESS_KEY",
            PiiKind::AwsSecretKey => "AWS_SECRET_KEY",
            PiiKind::GithubToken => "GITHUB_TOKEN",
            PiiKind::SlackToken => "SLACK_TOKEN",
            PiiKind::GoogleApiKey => "GOOGLE_API_KEY",
            PiiKind::PrivateKey => "PRIVATE_KEY",
            PiiKind::Jwt => "JWT",
            PiiKind::UrlCredentials => "URL_CREDENTIALS",
            PiiKind::OpenaiKey => "OPENAI_KEY",
            PiiKind::AnthropicKey => "ANTHROPIC_KEY",
            PiiKind::TwilioKey => "TWILIO_KEY",
            PiiKind::SendgridKey => "SENDGRID_KEY",
            PiiKind::StripeKey => "STRIPE_KEY",
            PiiKind::ApiKey => "API_KEY",
            PiiKind::Password => "PASSWORD",
            PiiKind::Secret => "SECRET",
            PiiKind::CreditCard => "CREDIT_CARD",
            PiiKind::Ssn => "SSN",
            PiiKind::Iban => "IBAN",
            PiiKind::Name => "NAME",
        }
    }
}

/// Matches any placeholder the vault could issue (and ones a model invents
/// in the same shape). It starts with a literal `<`, so the search is a
/// memchr-driven scan.
pub(super) fn placeholder_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"<[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_[0-9]+>")
            .expect("the placeholder pattern is a valid regex")
    })
}

/// Whether `s` is exactly one placeholder, so a second pass leaves it alone.
pub(super) fn is_placeholder(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 4
        && b[0] == b'<'
        && b[b.len() - 1] == b'>'
        && placeholder_regex()
            .find(s)
            .is_some_and(|m| m.start() == 0 && m.end() == s.len())
}
