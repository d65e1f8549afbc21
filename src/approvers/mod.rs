//! The approver directory (`[[approvers]]`) and the approval policy
//! (`[approval]`, in [`policy`]): who may decide, for which
//! severities, and how each person is reached and recognised on each
//! channel. Phone numbers, e-mail addresses and GitHub logins are parsed
//! into types when the configuration loads, so a malformed one is a config
//! error, never a silent mismatch when a reply arrives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod policy;

use crate::domain::{Severity, has_unsafe_chars};

/// A phone number in E.164 form: `+`, a country code not starting with 0,
/// at most 15 digits in all (ITU-T E.164 §6; Twilio's `From` and `To`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl FromStr for PhoneNumber {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let digits = raw.strip_prefix('+').unwrap_or("");
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(
                "is not an E.164 phone number (`+`, country code, number: 2 to 15 digits, no spaces)"
                    .into(),
            )
        }
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse()
    }
}

impl From<PhoneNumber> for String {
    fn from(phone: PhoneNumber) -> String {
        phone.0
    }
}

impl PhoneNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but its last two digits hidden, for logs and the
    /// audit log (`+1555•••••67`).
    pub fn masked(&self) -> String {
        let keep_head = 5.min(self.0.len());
        let keep_tail = 2.min(self.0.len() - keep_head);
        let hidden = self.0.len() - keep_head - keep_tail;
        format!(
            "{}{}{}",
            &self.0[..keep_head],
            "•".repeat(hidden),
            &self.0[self.0.len() - keep_tail..]
        )
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address as RFC 5321 accepts it in an envelope (checked by
/// `lettre::Address`). Compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl FromStr for EmailAddress {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        lettre::Address::from_str(raw)
            .map(|_| Self(raw.to_owned()))
            .map_err(|_| "is not an e-mail address (`user@domain`)".into())
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse()
    }
}

impl From<EmailAddress> for String {
    fn from(email: EmailAddress) -> String {
        email.0
    }
}

impl EmailAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A GitHub login: 1 to 39 ASCII letters, digits and single hyphens, not
/// starting or ending with one (GitHub's sign-up rules). Compared
/// case-insensitively, as GitHub does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GitHubLogin(String);

impl FromStr for GitHubLogin {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let ok = (1..=39).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !raw.starts_with('-')
            && !raw.ends_with('-')
            && !raw.contains("--");
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("is not a GitHub login (1 to 39 letters, digits and single hyphens)".into())
        }
    }
}

impl TryFrom<String> for GitHubLogin {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse()
    }
}

impl From<GitHubLogin> for String {
    fn from(login: GitHubLogin) -> String {
        login.0
    }
}

impl GitHubLogin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether `login`, as GitHub sent it, is this one.
    pub fn is(&self, login: &str) -> bool {
        self.0.eq_ignore_ascii_case(login)
    }
}

fn all_severities() -> Vec<Severity> {
    Severity::ALL_DESCENDING.to_vec()
}

/// One `[[approvers]]` entry as configured.
///
/// ```toml
/// [[approvers]]
/// name = "Ada Lovelace"
/// phone = "+15551234567"   # E.164
/// email = "ada@example.com"
/// github = "ada-l"
/// severities = ["critical", "high", "medium", "low"]   # default: all
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubLogin>,
    /// What this person may approve or reject.
    #[serde(default = "all_severities")]
    pub severities: Vec<Severity>,
}

impl ApproverEntry {
    /// Whether this person may decide on a change of `severity`.
    pub fn may_decide(&self, severity: Severity) -> bool {
        self.severities.contains(&severity)
    }
}

/// The validated directory. Lookups by phone, e-mail and login find at most
/// one person: duplicates are refused at load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    entries: Vec<ApproverEntry>,
}

impl Directory {
    /// Checks every entry: a usable name, at least one severity, and no
    /// name, phone, e-mail or login used twice. Errors: `(index, message)`.
    pub fn new(entries: Vec<ApproverEntry>) -> Result<Self, (usize, String)> {
        for (i, entry) in entries.iter().enumerate() {
            let name = &entry.name;
            if name.trim().is_empty() || name.chars().count() > 100 || has_unsafe_chars(name) {
                return Err((
                    i,
                    "name: 1 to 100 printable characters (no control, bidirectional or zero-width characters)".into(),
                ));
            }
            if name.trim() != name {
                return Err((i, "name: no leading or trailing spaces".into()));
            }
            if entry.severities.is_empty() {
                return Err((
                    i,
                    "severities is empty: this person could decide nothing".into(),
                ));
            }
            for earlier in &entries[..i] {
                let same = |what: &str| Err((i, format!("the same {what} as an earlier approver")));
                if earlier.name.to_lowercase() == entry.name.to_lowercase() {
                    return same("name");
                }
                if entry.phone.is_some() && earlier.phone == entry.phone {
                    return same("phone");
                }
                if let (Some(a), Some(b)) = (&earlier.email, &entry.email)
                    && a.0.eq_ignore_ascii_case(&b.0)
                {
                    return same("email");
                }
                if let (Some(a), Some(b)) = (&earlier.github, &entry.github)
                    && a.is(&b.0)
                {
                    return same("github login");
                }
            }
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[ApproverEntry] {
        &self.entries
    }

    /// The person named `name` (exactly, as configured; case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<&ApproverEntry> {
        let name = name.trim();
        self.entries
            .iter()
            .find(|e| e.name.to_lowercase() == name.to_lowercase())
    }

    /// The person whose phone is `phone` (as Twilio sends `From`).
    pub fn by_phone(&self, phone: &str) -> Option<&ApproverEntry> {
        self.entries
            .iter()
            .find(|e| e.phone.as_ref().is_some_and(|p| p.0 == phone))
    }

    /// The person whose GitHub login is `login`.
    pub fn by_github(&self, login: &str) -> Option<&ApproverEntry> {
        self.entries
            .iter()
            .find(|e| e.github.as_ref().is_some_and(|g| g.is(login)))
    }

    /// Everyone who may decide on `severity`, in configured order (the order
    /// escalation follows).
    pub fn for_severity(&self, severity: Severity) -> impl Iterator<Item = &ApproverEntry> {
        self.entries.iter().filter(move |e| e.may_decide(severity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ApproverEntry {
        ApproverEntry {
            name: name.into(),
            phone: None,
            email: None,
            github: None,
            severities: all_severities(),
        }
    }

    #[test]
    fn phone_numbers_must_be_e164() {
        for good in ["+15551234567", "+447911123456", "+33612345678"] {
            assert!(good.parse::<PhoneNumber>().is_ok(), "{good}");
        }
        for bad in [
            "15551234567",
            "+1 555 123 4567",
            "+0123456",
            "+1234567890123456",
            "+",
            "+1",
            "tel:+15551234567",
            "+1555123456x",
        ] {
            assert!(bad.parse::<PhoneNumber>().is_err(), "{bad}");
        }
        let masked = "+15551234567".parse::<PhoneNumber>().unwrap().masked();
        assert!(
            masked.starts_with("+1555") && masked.ends_with("67"),
            "{masked}"
        );
        assert!(!masked.contains("1234"), "{masked}");
    }

    #[test]
    fn logins_and_addresses_are_checked() {
        for good in ["ada-l", "a", "Octo-Cat9"] {
            assert!(good.parse::<GitHubLogin>().is_ok(), "{good}");
        }
        for bad in [
            "-ada",
            "ada-",
            "a--b",
            "ada l",
            "",
            &"a".repeat(40),
            "ada[bot]",
        ] {
            assert!(bad.parse::<GitHubLogin>().is_err(), "{bad}");
        }
        assert!("ada@example.com".parse::<EmailAddress>().is_ok());
        for bad in ["ada", "ada@", "@example.com", "ada example@x.com"] {
            assert!(bad.parse::<EmailAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicates_and_empty_severities_are_refused() {
        let mut a = entry("Ada");
        a.phone = Some("+15551234567".parse().unwrap());
        a.github = Some("ada-l".parse().unwrap());
        let mut b = entry("Bob");
        b.phone = a.phone.clone();
        assert!(
            Directory::new(vec![a.clone(), b])
                .unwrap_err()
                .1
                .contains("phone")
        );
        let mut c = entry("Cy");
        c.github = Some("ADA-L".parse().unwrap());
        assert!(
            Directory::new(vec![a.clone(), c])
                .unwrap_err()
                .1
                .contains("github")
        );
        assert!(
            Directory::new(vec![a.clone(), entry("ada")])
                .unwrap_err()
                .1
                .contains("name")
        );
        let mut d = entry("Di");
        d.severities.clear();
        assert_eq!(Directory::new(vec![d]).unwrap_err().0, 0);
        assert!(Directory::new(vec![entry("Ada\u{202e}x")]).is_err());

        let directory = Directory::new(vec![a, entry("Bob")]).unwrap();
        assert_eq!(directory.by_phone("+15551234567").unwrap().name, "Ada");
        assert_eq!(directory.by_github("Ada-L").unwrap().name, "Ada");
        assert!(directory.by_phone("+15550000000").is_none());
        assert_eq!(directory.by_name("bob").unwrap().name, "Bob");
    }
}
