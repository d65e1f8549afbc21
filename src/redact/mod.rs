//! Redaction of personal and secret data before anything leaves the host.
//!
//! The boundary is a type: outbound clients accept only [`Redacted<T>`], and
//! only [`Redactor`] can build one. Redaction is reversible through a
//! [`Vault`] that lives in memory for one request and is never serialised,
//! logged or stored, so real values are put back only on this host.
//!
//! Detection is one linear pass per string ([`scan`]); what each kind means
//! and why is documented next to its reader ([`numeric`], [`tokens`],
//! [`vendors`], [`keys`], [`names`]) and its checksum ([`validate`]).

mod keys;
mod names;
mod numeric;
mod patterns;
mod scan;
mod stream;
mod tokens;
mod validate;
mod vault;
mod vendors;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use names::PersonKeys;
pub use patterns::PiiKind;
pub use scan::Span;
pub use stream::{StreamError, StreamOutput};
pub use vault::{NUMBERING_LIMIT, Restored, Vault};

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

    /// Builds an outbound message around a redacted value. `build` sees only
    /// the redacted value; what it adds must be Draco's own text (prompts,
    /// schemas, the template catalogue), never data read from outside. Crate
    /// only, so that holding a `Redacted` still means the redactor ran.
    pub(crate) fn embed<U>(&self, build: impl FnOnce(&T) -> U) -> Redacted<U> {
        Redacted {
            inner: build(&self.inner),
        }
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

/// Finds and replaces personal and secret data.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Tag or field names whose value names a person.
    person_keys: PersonKeys,
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
        let keys = DEFAULT_PERSON_KEYS
            .into_iter()
            .chain(extra_person_keys.iter().map(String::as_str));
        Self {
            person_keys: PersonKeys::new(keys),
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

    /// `value` as it may be published (a pull request, its files and
    /// comments): every string passed through the redactor, replacing only
    /// the `removed` kinds; placeholders are never restored (publication
    /// leaves the host for good), so no value is kept.
    pub fn publishable<T: Serialize + DeserializeOwned>(
        &self,
        value: &T,
        removed: &[PiiKind],
    ) -> Result<Redacted<T>, RedactError> {
        let mut vault = Vault::publishing(removed);
        let mut json = serde_json::to_value(value).map_err(RedactError::Serialize)?;
        self.walk(&mut json, &mut vault);
        let inner = serde_json::from_value(json).map_err(RedactError::Deserialize)?;
        Ok(Redacted { inner })
    }

    /// Redacts free text.
    pub fn redact_text(&self, text: &str) -> (Redacted<String>, Vault) {
        let mut vault = Vault::default();
        let inner = self.text(text, &mut vault);
        (Redacted { inner }, vault)
    }

    /// Byte spans of everything [`Redactor::redact_text`] would replace:
    /// sorted, non-overlapping, on char boundaries (for `draco redact --spans`).
    pub fn spans(&self, text: &str) -> Vec<Span> {
        scan::spans(text, &self.person_keys)
    }

    fn text(&self, text: &str, vault: &mut Vault) -> String {
        let spans = self.spans(text);
        if spans.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for s in spans {
            out.push_str(&text[last..s.start]);
            vault.push_placeholder(&mut out, s.kind, &text[s.start..s.end]);
            last = s.end;
        }
        out.push_str(&text[last..]);
        out
    }

    fn is_person_key(&self, key: &str) -> bool {
        let key = key.trim();
        // A plural names a list of people: `owners`, `contacts`.
        let singular = key.strip_suffix(['s', 'S']).unwrap_or(key);
        self.person_keys.matches(key.as_bytes()) || self.person_keys.matches(singular.as_bytes())
    }

    /// A value under a person key is a name unless it is something more
    /// specific (an email), which the text patterns name better.
    fn person_value(&self, value: &str, vault: &mut Vault) -> String {
        let trimmed = value.trim();
        if trimmed.is_empty() || patterns::is_placeholder(trimmed) {
            return value.to_owned();
        }
        let as_text = self.text(value, vault);
        if as_text != value {
            as_text
        } else {
            vault.placeholder(PiiKind::Name, trimmed)
        }
    }

    /// A value under a secret-like key: its own kind when the text patterns
    /// find it whole (a GitHub token), or else the whole value as `kind`,
    /// so no part of it (`Bearer`, an `@` inside a password) stays behind.
    fn keyed_secret(&self, value: &str, kind: PiiKind, vault: &mut Vault) -> String {
        let spans = self.spans(value);
        let whole = value.trim();
        let start = value.len() - value.trim_start().len();
        match spans.as_slice() {
            [s] if s.start == start && s.end == start + whole.len() => self.text(value, vault),
            _ => vault.placeholder(kind, value),
        }
    }

    /// A 40-character base64 value under a key that says "secret" is an AWS
    /// secret access key; without such a key it is left alone, since hashes
    /// and ids have the same shape.
    fn secret_value(key: &str, value: &str) -> bool {
        value.len() == 40
            && value.bytes().all(validate::is_b64)
            && key.to_ascii_lowercase().contains("secret")
    }

    fn walk(&self, value: &mut Value, vault: &mut Vault) {
        match value {
            Value::String(s) => *s = self.text(s, vault),
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, vault)),
            Value::Object(map) => self.walk_object(map, vault),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn walk_object(&self, map: &mut Map<String, Value>, vault: &mut Vault) {
        // EC2-style tag: {"Key": "Owner", "Value": "Jane Doe"} (any case of Key/Value).
        let tag_key = map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("key"))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned);
        let tag_key = tag_key.as_deref();
        let tag_is_person = tag_key.is_some_and(|k| self.is_person_key(k));
        let tag_is_secret = tag_key.is_some_and(|k| k.to_ascii_lowercase().contains("secret"));
        let entries = std::mem::take(map);
        for (key, mut v) in entries {
            let is_value = key.eq_ignore_ascii_case("value");
            let person = (is_value && tag_is_person) || self.is_person_key(&key);
            let keyed = match &v {
                Value::String(s) => keys::json_value(&key, s).or_else(|| {
                    tag_key
                        .filter(|_| is_value)
                        .and_then(|k| keys::json_value(k, s))
                }),
                _ => None,
            };
            match &mut v {
                Value::String(s)
                    if Self::secret_value(&key, s)
                        || (is_value && tag_is_secret && Self::secret_value("secret", s)) =>
                {
                    *s = vault.placeholder(PiiKind::AwsSecretKey, s);
                }
                Value::String(s) if person => *s = self.person_value(s, vault),
                // `"client_secret": "…"`, `{"Key": "DB_PASSWORD", "Value": "…"}`.
                Value::String(s) if keyed.is_some() => {
                    if let Some(kind) = keyed {
                        *s = self.keyed_secret(s, kind, vault);
                    }
                }
                // `"owners": ["Jane Doe", "Li Wei"]`: every name in the list.
                Value::Array(items) if person => {
                    for item in items {
                        match item {
                            Value::String(s) => *s = self.person_value(s, vault),
                            other => self.walk(other, vault),
                        }
                    }
                }
                _ => self.walk(&mut v, vault),
            }
            // Keys are structure and stay, unless they are data themselves
            // (tags rendered as an object: `{"jane@corp.com": "on-call"}`).
            let key = self.text(&key, vault);
            map.insert(key, v);
        }
    }
}

#[cfg(test)]
mod tests;
