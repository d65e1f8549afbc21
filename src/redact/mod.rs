//! Redaction of personal and secret data before anything leaves the host.
//!
//! The boundary is a type: outbound clients accept only [`Redacted<T>`], and
//! only [`Redactor`] can build one. Redaction is reversible through a
//! [`Vault`] that lives in memory for one request and is never serialised,
//! logged or stored, so real values are put back only on this host.

mod patterns;

use std::collections::HashMap;
use std::fmt;

use regex::Regex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use patterns::PiiKind;

/// A value whose strings have been passed through the redactor.
///
/// There is no public constructor: holding a `Redacted<T>` proves the
/// redactor ran over it.
#[derive(Clone, PartialEq)]
pub struct Redacted<T> {
    inner: T,
}

impl<T> Redacted<T> {
    pub fn get(&self) -> &T {
        &self.inner
    }
}

impl<T: Serialize> Redacted<T> {
    /// The redacted value as JSON, for request bodies and template contexts.
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.inner)
    }
}

impl<T: fmt::Debug> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Redacted").field(&self.inner).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("cannot redact a value that does not convert to JSON: {0}")]
    Serialize(serde_json::Error),
    #[error("a redacted value no longer fits its type (a redacted field must be a string): {0}")]
    Deserialize(serde_json::Error),
}

/// The placeholder ↔ value mapping of one request. Memory only.
#[derive(Default)]
pub struct Vault {
    by_value: HashMap<(PiiKind, String), String>,
    by_placeholder: HashMap<String, String>,
    counters: HashMap<PiiKind, usize>,
}

impl fmt::Debug for Vault {
    // Never print the values: a vault in a log line would undo the redaction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("placeholders", &self.by_placeholder.len())
            .finish()
    }
}

impl Vault {
    fn placeholder(&mut self, kind: PiiKind, value: &str) -> String {
        if let Some(existing) = self.by_value.get(&(kind, value.to_owned())) {
            return existing.clone();
        }
        let n = self.counters.entry(kind).or_insert(0);
        *n += 1;
        let placeholder = format!("<{}_{}>", kind.label(), n);
        self.by_value
            .insert((kind, value.to_owned()), placeholder.clone());
        self.by_placeholder
            .insert(placeholder.clone(), value.to_owned());
        placeholder
    }

    pub fn len(&self) -> usize {
        self.by_placeholder.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// Puts the real values back into text that came back from outside.
    /// Placeholders this vault never issued are left as they are and reported.
    pub fn restore(&self, text: &str) -> Restored {
        let mut unknown = Vec::new();
        let restored = patterns::placeholder_regex().replace_all(text, |caps: &regex::Captures| {
            let placeholder = &caps[0];
            match self.by_placeholder.get(placeholder) {
                Some(value) => value.clone(),
                None => {
                    unknown.push(placeholder.to_owned());
                    placeholder.to_owned()
                }
            }
        });
        Restored {
            text: restored.into_owned(),
            unknown_placeholders: unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub text: String,
    /// Placeholders that were not issued by the vault (the model invented them).
    pub unknown_placeholders: Vec<String>,
}

/// Finds and replaces personal and secret data.
#[derive(Debug, Clone)]
pub struct Redactor {
    detector: Regex,
    /// Lower-cased tag or field names whose value names a person.
    person_keys: Vec<String>,
}

/// Tag keys that, by convention, hold a person.
pub const DEFAULT_PERSON_KEYS: [&str; 8] = [
    "owner",
    "createdby",
    "created_by",
    "contact",
    "author",
    "requester",
    "maintainer",
    "user",
];

impl Default for Redactor {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Redactor {
    /// `extra_person_keys` are operator-configured tag names that hold people, on top of the defaults.
    pub fn new(extra_person_keys: &[String]) -> Self {
        let mut person_keys: Vec<String> =
            DEFAULT_PERSON_KEYS.iter().map(|k| k.to_string()).collect();
        person_keys.extend(extra_person_keys.iter().map(|k| k.to_lowercase()));
        Self {
            detector: patterns::detector_regex(),
            person_keys,
        }
    }

    /// Redacts every string in `value` (object keys are kept) and returns the
    /// redacted value with the vault that can restore it.
    pub fn redact<T: Serialize + DeserializeOwned>(
        &self,
        value: &T,
    ) -> Result<(Redacted<T>, Vault), RedactError> {
        let mut vault = Vault::default();
        let mut json = serde_json::to_value(value).map_err(RedactError::Serialize)?;
        self.walk(&mut json, &mut vault);
        let inner = serde_json::from_value(json).map_err(RedactError::Deserialize)?;
        Ok((Redacted { inner }, vault))
    }

    /// Redacts free text.
    pub fn redact_text(&self, text: &str) -> (Redacted<String>, Vault) {
        let mut vault = Vault::default();
        let inner = self.text(text, &mut vault);
        (Redacted { inner }, vault)
    }

    /// Byte spans `(start, end, kind)` of everything the redactor would replace in free text.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize, PiiKind)> {
        self.detector
            .captures_iter(text)
            .filter_map(|caps| {
                let (kind, m) = patterns::classify(&caps)?;
                Some((m.start(), m.end(), kind))
            })
            .collect()
    }

    fn text(&self, text: &str, vault: &mut Vault) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for caps in self.detector.captures_iter(text) {
            let Some((kind, m)) = patterns::classify(&caps) else {
                continue;
            };
            out.push_str(&text[last..m.start()]);
            out.push_str(&vault.placeholder(kind, m.as_str()));
            last = m.end();
        }
        out.push_str(&text[last..]);
        out
    }

    fn is_person_key(&self, key: &str) -> bool {
        let key = key.to_lowercase();
        self.person_keys.contains(&key)
    }

    /// A value under a person key is a name unless it is something more
    /// specific (an email), which the text patterns name better.
    fn person_value(&self, value: &str, vault: &mut Vault) -> String {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return value.to_owned();
        }
        let as_text = self.text(value, vault);
        if as_text != value {
            as_text
        } else {
            vault.placeholder(PiiKind::Name, trimmed)
        }
    }

    fn walk(&self, value: &mut Value, vault: &mut Vault) {
        match value {
            Value::String(s) => *s = self.text(s, vault),
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, vault)),
            Value::Object(map) => {
                // EC2-style tag: {"Key": "Owner", "Value": "Jane Doe"}
                let tag_key_is_person = map
                    .get("Key")
                    .and_then(Value::as_str)
                    .is_some_and(|k| self.is_person_key(k));
                for (key, v) in map.iter_mut() {
                    let person = (key == "Value" && tag_key_is_person) || self.is_person_key(key);
                    match v {
                        Value::String(s) if person => *s = self.person_value(s, vault),
                        _ => self.walk(v, vault),
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_value_gets_the_same_placeholder() {
        let r = Redactor::default();
        let (red, vault) = r.redact_text("a@b.io wrote to c@d.io, then a@b.io again");
        assert_eq!(
            red.get(),
            "<EMAIL_1> wrote to <EMAIL_2>, then <EMAIL_1> again"
        );
        assert_eq!(vault.len(), 2);
    }

    #[test]
    fn restore_puts_values_back_and_flags_invented_placeholders() {
        let r = Redactor::default();
        let (red, vault) = r.redact_text("host 10.1.2.3 in 123456789012");
        let answer = format!("{} and <EMAIL_9>", red.get());
        let restored = vault.restore(&answer);
        assert_eq!(restored.text, "host 10.1.2.3 in 123456789012 and <EMAIL_9>");
        assert_eq!(restored.unknown_placeholders, vec!["<EMAIL_9>"]);
    }

    #[test]
    fn json_keys_are_kept_and_tag_names_redacted() {
        let r = Redactor::default();
        let value = json!({
            "Tags": [{"Key": "CreatedBy", "Value": "Jane Doe"}, {"Key": "Name", "Value": "web"}],
            "tags": {"Owner": "jane@example.com", "Contact": "Jane Doe"},
            "arn": "arn:aws:iam::123456789012:role/x",
            "cidr": "0.0.0.0/0",
        });
        let (red, _) = r.redact(&value).unwrap();
        assert_eq!(
            red.get(),
            &json!({
                "Tags": [{"Key": "CreatedBy", "Value": "<NAME_1>"}, {"Key": "Name", "Value": "web"}],
                "tags": {"Owner": "<EMAIL_1>", "Contact": "<NAME_1>"},
                "arn": "arn:aws:iam::<ACCOUNT_ID_1>:role/x",
                "cidr": "0.0.0.0/0",
            })
        );
    }
}
