//! The vocabulary every stage shares: accounts, findings, severities,
//! fingerprints, row ids, and decisions on change requests.
//!
//! Values here are parsed at the edge (`AccountId::parse`) so the rest of the
//! code can trust them instead of re-checking strings.

mod decision;
mod ids;

pub use decision::{Approved, ChangeRequestState, DecisionRecord, Rejected};
pub use ids::{ChangeRequestId, FindingId, InvalidId, ScanId};

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an AWS account id (expected exactly 12 digits)")]
pub struct InvalidAccountId(pub String);

impl AccountId {
    pub fn parse(raw: &str) -> Result<Self, InvalidAccountId> {
        if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidAccountId(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = InvalidAccountId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AccountId> for String {
    fn from(value: AccountId) -> Self {
        value.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How urgently a human should look. Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL_DESCENDING: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Severity of money that is being wasted or overspent, by monthly dollars.
    pub fn for_monthly_cost(usd: f64) -> Severity {
        if usd >= 5_000.0 {
            Severity::Critical
        } else if usd >= 1_000.0 {
            Severity::High
        } else if usd >= 100.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// What a finding is about. The snake_case names are a public contract
/// (`draco findings --json`, template ids): never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    SgOpenAdminPort,
    SgOpenDbPort,
    SgOpenAll,
    EbsUnencrypted,
    EbsDefaultEncryptionOff,
    EbsUnattached,
    SnapshotPublic,
    SnapshotOrphaned,
    EipUnassociated,
    #[serde(rename = "imdsv1_allowed")]
    ImdsV1Allowed,
    InstancePublicExposed,
    InstanceStoppedLong,
    AmiPublic,
    InstancePreviousGeneration,
    CostSpike,
    CostLevelShift,
    CostNewService,
}

impl FindingKind {
    pub const ALL: [FindingKind; 17] = [
        FindingKind::SgOpenAdminPort,
        FindingKind::SgOpenDbPort,
        FindingKind::SgOpenAll,
        FindingKind::EbsUnencrypted,
        FindingKind::EbsDefaultEncryptionOff,
        FindingKind::EbsUnattached,
        FindingKind::SnapshotPublic,
        FindingKind::SnapshotOrphaned,
        FindingKind::EipUnassociated,
        FindingKind::ImdsV1Allowed,
        FindingKind::InstancePublicExposed,
        FindingKind::InstanceStoppedLong,
        FindingKind::AmiPublic,
        FindingKind::InstancePreviousGeneration,
        FindingKind::CostSpike,
        FindingKind::CostLevelShift,
        FindingKind::CostNewService,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::SgOpenAdminPort => "sg_open_admin_port",
            FindingKind::SgOpenDbPort => "sg_open_db_port",
            FindingKind::SgOpenAll => "sg_open_all",
            FindingKind::EbsUnencrypted => "ebs_unencrypted",
            FindingKind::EbsDefaultEncryptionOff => "ebs_default_encryption_off",
            FindingKind::EbsUnattached => "ebs_unattached",
            FindingKind::SnapshotPublic => "snapshot_public",
            FindingKind::SnapshotOrphaned => "snapshot_orphaned",
            FindingKind::EipUnassociated => "eip_unassociated",
            FindingKind::ImdsV1Allowed => "imdsv1_allowed",
            FindingKind::InstancePublicExposed => "instance_public_exposed",
            FindingKind::InstanceStoppedLong => "instance_stopped_long",
            FindingKind::AmiPublic => "ami_public",
            FindingKind::InstancePreviousGeneration => "instance_previous_generation",
            FindingKind::CostSpike => "cost_spike",
            FindingKind::CostLevelShift => "cost_level_shift",
            FindingKind::CostNewService => "cost_new_service",
        }
    }

    pub fn is_cost_anomaly(self) -> bool {
        matches!(
            self,
            FindingKind::CostSpike | FindingKind::CostLevelShift | FindingKind::CostNewService
        )
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FindingKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FindingKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// Stable identity of a problem across scans: the same problem found again
/// maps to the same fingerprint, so it is updated rather than duplicated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Hashes the identifying parts. Parts are length-prefixed so that
    /// `("ab", "c")` and `("a", "bc")` never collide.
    pub fn of(parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"draco-fingerprint-v1");
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        Self(hex::encode(hasher.finalize()))
    }

    /// Rebuilds a fingerprint read back from the store.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Twelve hex digits: enough to be unique in one installation, short enough for branch names.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A problem found by a detector in one scan, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub title: String,
    /// The resource id (`sg-…`, `vol-…`) or, for cost anomalies, the series (`service:Amazon RDS`).
    pub resource: String,
    pub account: AccountId,
    /// `None` for global things such as cost series.
    pub region: Option<String>,
    pub expected: Option<f64>,
    pub actual: Option<f64>,
    pub impact_usd_monthly: Option<f64>,
    /// Structured facts backing the finding. May contain personal data (tags):
    /// it only leaves the host through the redactor.
    pub evidence: serde_json::Value,
    pub fingerprint: Fingerprint,
}

impl Finding {
    /// Neutralises every piece of outside text the finding carries: the
    /// title, the resource, the region and every string (and object key) in
    /// the evidence, so that nothing a tag, a group description or a service
    /// name holds can add a line to a script, a commit message or a terminal.
    /// The fingerprint is left as computed from the raw values, so a finding
    /// keeps its identity. Idempotent.
    pub fn neutralise(&mut self) {
        neutralise_in_place(&mut self.title);
        neutralise_in_place(&mut self.resource);
        if let Some(region) = &mut self.region {
            neutralise_in_place(region);
        }
        neutralise_json(&mut self.evidence);
    }
}

/// The characters outside text may not carry as they are: control characters
/// (Unicode category Cc: C0 with `\n`, `\r`, `\t`, vertical tab, form feed,
/// ESC, DEL and C1 with NEL U+0085 and CSI U+009B), format characters (Cf: bidi
/// embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, marks
/// U+200E/U+200F/U+061C, zero-width U+200B–U+200D, U+2060, U+FEFF, soft hyphen,
/// tag characters U+E0000–U+E007F) and the line and paragraph separators
/// U+2028 (Zl) and U+2029 (Zp). What they share: each either breaks a line,
/// drives a terminal (ANSI/OSC escapes start with ESC or a C1 control), or is
/// invisible or reorders what is shown, so a reviewer would not see it.
fn unsafe_chars() -> &'static Regex {
    static UNSAFE: OnceLock<Regex> = OnceLock::new();
    UNSAFE.get_or_init(|| {
        Regex::new(r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]")
            .expect("the unsafe character class is a valid regex")
    })
}

/// Whether `text` holds a character [`neutralise`] would escape.
pub fn has_unsafe_chars(text: &str) -> bool {
    unsafe_chars().is_match(text)
}

/// Outside text (cloud tags, names, descriptions, service names, a model's
/// words) made safe to store, render into a `#` comment or a commit message
/// and print to a terminal: every character of the classes above is replaced
/// by a visible escape, `\n`, `\r`, `\t` or `\u{…}` (lowercase hex, as Rust
/// writes it), so the text stays on one line and cannot drive a terminal.
/// Everything printable is kept as it is, names in any script included, and
/// backslashes are not doubled, so neutralising twice changes nothing more.
///
/// ```
/// use draco::domain::neutralise;
/// assert_eq!(neutralise("web\naws iam create-user"), "web\\naws iam create-user");
/// assert_eq!(neutralise("\u{1b}[31mred"), "\\u{1b}[31mred");
/// assert_eq!(neutralise("Zürich-東京"), "Zürich-東京");
/// ```
pub fn neutralise(text: &str) -> Cow<'_, str> {
    unsafe_chars().replace_all(text, |caps: &regex::Captures<'_>| {
        caps[0]
            .chars()
            .map(|c| match c {
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                other => format!("\\u{{{:x}}}", u32::from(other)),
            })
            .collect::<String>()
    })
}

fn neutralise_in_place(text: &mut String) {
    if let Cow::Owned(safe) = neutralise(text) {
        *text = safe;
    }
}

/// Neutralises every string and object key in a JSON value.
pub fn neutralise_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => neutralise_in_place(s),
        Value::Array(items) => items.iter_mut().for_each(neutralise_json),
        Value::Object(map) => {
            if map.keys().any(|k| has_unsafe_chars(k)) {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    neutralise_json(&mut v);
                    map.insert(neutralise(&key).into_owned(), v);
                }
            } else {
                map.values_mut().for_each(neutralise_json);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Displays outside text neutralised (see [`neutralise`]), for terminal
/// output and documents built from stored values.
#[derive(Debug, Clone, Copy)]
pub struct Neutral<'a>(pub &'a str);

impl fmt::Display for Neutral<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&neutralise(self.0))
    }
}

/// Where a finding stands in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    /// Detected, no change request yet.
    Open,
    /// A change request is open and waits for a human.
    AwaitingApproval,
    /// A human approved; the change was merged.
    Approved,
    /// A human rejected the proposed change.
    Rejected,
    /// The last scan no longer saw the problem.
    Resolved,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::AwaitingApproval => "awaiting_approval",
            FindingStatus::Approved => "approved",
            FindingStatus::Rejected => "rejected",
            FindingStatus::Resolved => "resolved",
        }
    }
}

impl FromStr for FindingStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(FindingStatus::Open),
            "awaiting_approval" => Ok(FindingStatus::AwaitingApproval),
            "approved" => Ok(FindingStatus::Approved),
            "rejected" => Ok(FindingStatus::Rejected),
            "resolved" => Ok(FindingStatus::Resolved),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

impl fmt::Display for FindingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `text` safe inside HTML or XML element content and quoted attribute
/// values: `& < > " '` escaped (`&#39;` is valid in both), control
/// characters other than a line feed dropped (XML 1.0 forbids most).
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_accepts_exactly_twelve_digits() {
        assert!(AccountId::parse("123456789012").is_ok());
        assert!(AccountId::parse("12345678901").is_err());
        assert!(AccountId::parse("1234567890123").is_err());
        assert!(AccountId::parse("12345678901a").is_err());
    }

    #[test]
    fn fingerprint_parts_are_unambiguous() {
        assert_ne!(Fingerprint::of(&["ab", "c"]), Fingerprint::of(&["a", "bc"]));
        assert_eq!(Fingerprint::of(&["a", "b"]), Fingerprint::of(&["a", "b"]));
    }

    #[test]
    fn neutralise_escapes_what_moves_lines_or_drives_terminals_and_keeps_the_rest() {
        for (raw, shown) in [
            ("a\nb", "a\\nb"),
            ("a\r\nb", "a\\r\\nb"),
            ("a\tb", "a\\tb"),
            ("a\u{b}\u{c}\u{0}\u{7f}", "a\\u{b}\\u{c}\\u{0}\\u{7f}"),
            (
                "\u{1b}[31mred\u{1b}]0;t\u{7}",
                "\\u{1b}[31mred\\u{1b}]0;t\\u{7}",
            ),
            ("\u{85}\u{9b}", "\\u{85}\\u{9b}"),
            ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
            (
                "\u{202e}\u{2066}\u{200f}\u{61c}",
                "\\u{202e}\\u{2066}\\u{200f}\\u{61c}",
            ),
            (
                "\u{200b}\u{200d}\u{feff}\u{ad}\u{e0041}",
                "\\u{200b}\\u{200d}\\u{feff}\\u{ad}\\u{e0041}",
            ),
            (
                "Zürich 東京 مجموعة Ελλάδα 🚀 a\\b",
                "Zürich 東京 مجموعة Ελλάδα 🚀 a\\b",
            ),
        ] {
            assert_eq!(neutralise(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn a_finding_is_neutralised_everywhere_but_keeps_its_fingerprint() {
        let fingerprint = Fingerprint::of(&["x"]);
        let mut finding = Finding {
            kind: FindingKind::SgOpenAdminPort,
            severity: Severity::High,
            title: "web\naws iam create-user".into(),
            resource: "sg-1\r".into(),
            account: AccountId::parse("123456789012").unwrap(),
            region: Some("us-east-1\u{202e}".into()),
            expected: None,
            actual: None,
            impact_usd_monthly: None,
            evidence: serde_json::json!({"tags": {"Na\nme": ["v\u{1b}[0m", 1, null]}}),
            fingerprint: fingerprint.clone(),
        };
        finding.neutralise();
        assert_eq!(finding.title, "web\\naws iam create-user");
        assert_eq!(finding.resource, "sg-1\\r");
        assert_eq!(finding.region.as_deref(), Some("us-east-1\\u{202e}"));
        assert_eq!(
            finding.evidence,
            serde_json::json!({"tags": {"Na\\nme": ["v\\u{1b}[0m", 1, null]}})
        );
        assert_eq!(finding.fingerprint, fingerprint);
    }

    proptest::proptest! {
        #[test]
        fn neutralised_text_is_one_safe_line_and_stays_as_it_is(text in "[\\x00-\\x{a0}\\x{2028}\\x{202e}\\x{200b}\\x{e9}\\x{6771}a-z\\\\]*") {
            let once = neutralise(&text).into_owned();
            proptest::prop_assert!(!has_unsafe_chars(&once));
            proptest::prop_assert_eq!(neutralise(&once), once.as_str());
            if !has_unsafe_chars(&text) {
                proptest::prop_assert_eq!(&once, &text);
            }
        }
    }

    #[test]
    fn finding_kind_names_round_trip() {
        for kind in FindingKind::ALL {
            assert_eq!(kind.as_str().parse::<FindingKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
