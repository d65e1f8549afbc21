//! The patterns the redactor looks for. One combined regex, so the input is
//! read once and matching stays linear in its length (the `regex` crate
//! guarantees that; no backtracking).

use std::sync::OnceLock;

use regex::{Captures, Match, Regex};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Ipv4,
    AccountId,
    Name,
}

impl PiiKind {
    /// The word inside placeholders: `<EMAIL_1>`.
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Ipv4 => "IPV4",
            PiiKind::AccountId => "ACCOUNT_ID",
            PiiKind::Name => "NAME",
        }
    }
}

const OCTET: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

pub(super) fn detector_regex() -> Regex {
    let pattern = format!(
        r"(?P<email>[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{{2,}})|(?P<ipv4>\b{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}\b)|(?P<account>\b[0-9]{{12}}\b)"
    );
    Regex::new(&pattern).expect("the built-in redaction pattern is a valid regex")
}

/// Addresses that say something about a rule, not about anybody: "the whole
/// internet" must stay readable for the advisor to reason about exposure.
const NON_PERSONAL_IPV4: [&str; 2] = ["0.0.0.0", "255.255.255.255"];

pub(super) fn classify<'h>(caps: &Captures<'h>) -> Option<(PiiKind, Match<'h>)> {
    if let Some(m) = caps.name("email") {
        return Some((PiiKind::Email, m));
    }
    if let Some(m) = caps.name("ipv4") {
        if NON_PERSONAL_IPV4.contains(&m.as_str()) {
            return None;
        }
        return Some((PiiKind::Ipv4, m));
    }
    caps.name("account").map(|m| (PiiKind::AccountId, m))
}

pub(super) fn placeholder_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"<[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_[0-9]+>")
            .expect("the placeholder pattern is a valid regex")
    })
}
