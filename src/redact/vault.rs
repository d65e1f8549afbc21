//! The placeholder ↔ value mapping of one request: `<EMAIL_1>` for the first
//! distinct e-mail address, `<EMAIL_2>` for the next, and the same
//! placeholder again for a value seen before.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::patterns::{self, PiiKind};

/// Distinct values a [`Vault::numbering_only`] vault remembers, all kinds
/// together, at 16 to 40 bytes each (a hash table entry of a digest and a
/// number): under 6 MiB, whatever the input size.
pub const NUMBERING_LIMIT: usize = 1 << 17;

/// The placeholder ↔ value mapping of one request. Memory only.
///
/// A vault made by `default()` keeps every value, so [`Vault::restore`]
/// can put them back. One made by [`Vault::numbering_only`] keeps only a
/// 64-bit keyed digest per value (two values with one digest, about one
/// chance in 10^9 at the limit, would share a placeholder), for output that is never restored (`draco
/// redact`): it numbers the same value the same way for the first
/// [`NUMBERING_LIMIT`] distinct values; later new values
/// still get a new placeholder each, but one not remembered, so a repeat of
/// such a value gets another number.
#[derive(Default)]
pub struct Vault {
    kinds: Vec<Issued>,
    digests: Option<Digests>,
    /// Digests remembered, all kinds together.
    remembered: usize,
    /// Kinds left as they are (bit `kind as usize`): a publishing vault
    /// replaces only what its policy removes.
    kept: u32,
}

/// What one kind's placeholders stand for: value `n - 1` is `<KIND_n>`.
#[derive(Default)]
struct Issued {
    numbers: HashMap<Arc<str>, u32>,
    values: Vec<Arc<str>>,
    /// In a numbering-only vault: digest → number.
    by_digest: HashMap<u64, u32>,
    /// Placeholders issued (also those no longer remembered).
    count: u32,
}

/// SipHash with a key drawn for this vault: a digest of a value that
/// nobody outside can aim a collision at.
struct Digests(RandomState);

impl Digests {
    fn of(&self, value: &str) -> u64 {
        self.0.hash_one(value)
    }
}

impl fmt::Debug for Vault {
    // Never print the values: a vault in a log line would undo the redaction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("placeholders", &self.len())
            .finish()
    }
}

/// `<LABEL_n>` appended to `out`.
fn write_placeholder(out: &mut String, kind: PiiKind, n: u32) {
    out.push('<');
    out.push_str(kind.label());
    out.push('_');
    out.push_str(itoa::Buffer::new().format(n));
    out.push('>');
}

impl Vault {
    /// A vault that keeps no values, only enough to number them (see the
    /// type's documentation); its memory is bounded by [`NUMBERING_LIMIT`].
    pub fn numbering_only() -> Self {
        Self {
            kinds: Vec::new(),
            digests: Some(Digests(RandomState::new())),
            remembered: 0,
            kept: 0,
        }
    }

    /// A numbering-only vault that replaces only values of the `removed`
    /// kinds and leaves every other kind as it is: what a publication
    /// policy (`gitops.github.publish_redact`) asks for.
    pub fn publishing(removed: &[PiiKind]) -> Self {
        let mut vault = Self::numbering_only();
        vault.kept = PiiKind::ALL
            .iter()
            .filter(|k| !removed.contains(k))
            .fold(0, |bits, k| bits | (1 << (*k as u32)));
        vault
    }

    fn issued(&mut self, kind: PiiKind) -> &mut Issued {
        let k = kind as usize;
        if self.kinds.len() <= k {
            self.kinds.resize_with(PiiKind::ALL.len(), Issued::default);
        }
        &mut self.kinds[k]
    }

    /// The number of `value`'s placeholder, issuing one if it is new.
    fn number(&mut self, kind: PiiKind, value: &str) -> u32 {
        if let Some(digests) = &self.digests {
            let digest = digests.of(value);
            let room = self.remembered < NUMBERING_LIMIT;
            let issued = self.issued(kind);
            if let Some(&n) = issued.by_digest.get(&digest) {
                return n;
            }
            issued.count += 1;
            let n = issued.count;
            if room {
                issued.by_digest.insert(digest, n);
                self.remembered += 1;
            }
            return n;
        }
        let issued = self.issued(kind);
        if let Some(&n) = issued.numbers.get(value) {
            return n;
        }
        let value: Arc<str> = Arc::from(value);
        issued.values.push(Arc::clone(&value));
        issued.count += 1;
        let n = issued.count;
        issued.numbers.insert(value, n);
        n
    }

    /// Appends the placeholder of `value` (a `kind`) to `out`.
    pub(super) fn push_placeholder(&mut self, out: &mut String, kind: PiiKind, value: &str) {
        if self.kept & (1 << (kind as u32)) != 0 {
            out.push_str(value);
            return;
        }
        let n = self.number(kind, value);
        write_placeholder(out, kind, n);
    }

    pub(super) fn placeholder(&mut self, kind: PiiKind, value: &str) -> String {
        let mut out = String::new();
        self.push_placeholder(&mut out, kind, value);
        out
    }

    /// Placeholders issued per kind (`EMAIL` → 2), kinds with none left out:
    /// what was kept back, without a single value.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u32> {
        PiiKind::ALL
            .iter()
            .zip(&self.kinds)
            .filter(|(_, issued)| issued.count > 0)
            .map(|(kind, issued)| (kind.label().to_owned(), issued.count))
            .collect()
    }

    /// Placeholders issued.
    pub fn len(&self) -> usize {
        self.kinds.iter().map(|k| k.count as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value behind `<LABEL_n>`, if this vault issued it and kept it.
    fn value(&self, placeholder: &str) -> Option<&str> {
        let inner = placeholder.strip_prefix('<')?.strip_suffix('>')?;
        let (label, n) = inner.rsplit_once('_')?;
        let kind = PiiKind::ALL.into_iter().find(|k| k.label() == label)?;
        // Only the spelling this vault writes: `<EMAIL_01>` is not `<EMAIL_1>`.
        if n.starts_with('0') {
            return None;
        }
        let n: usize = n.parse().ok()?;
        let values = &self.kinds.get(kind as usize)?.values;
        values.get(n.checked_sub(1)?).map(|v| &**v)
    }

    /// Every value this vault keeps, with its placeholder.
    fn entries(&self) -> impl Iterator<Item = (&str, String)> {
        PiiKind::ALL.into_iter().flat_map(move |kind| {
            self.kinds
                .get(kind as usize)
                .into_iter()
                .flat_map(|k| k.values.iter())
                .zip(1u32..)
                .map(move |(value, n)| {
                    let mut placeholder = String::new();
                    write_placeholder(&mut placeholder, kind, n);
                    (&**value, placeholder)
                })
        })
    }

    /// The opposite of `restore`, for text made locally from restored
    /// values (an error message quoting a parameter): every value this vault
    /// holds goes back behind its placeholder before the text is shown or sent.
    pub fn mask(&self, text: &str) -> String {
        let mut values: Vec<(&str, String)> = self
            .entries()
            .filter(|(value, _)| !value.is_empty())
            .collect();
        // Longer values first, so that one containing another is masked whole.
        values.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        values
            .into_iter()
            .fold(text.to_owned(), |masked, (value, placeholder)| {
                masked.replace(value, &placeholder)
            })
    }

    /// Puts the real values back into text that came back from outside.
    /// Placeholders this vault never issued are left as they are and reported.
    pub fn restore(&self, text: &str) -> Restored {
        let mut unknown = Vec::new();
        let restored = patterns::placeholder_regex().replace_all(text, |caps: &regex::Captures| {
            let placeholder = &caps[0];
            match self.value(placeholder) {
                Some(value) => value.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_per_kind_and_restores() {
        let mut v = Vault::default();
        assert_eq!(v.placeholder(PiiKind::Email, "a@b.io"), "<EMAIL_1>");
        assert_eq!(v.placeholder(PiiKind::Ipv4, "10.0.0.1"), "<IPV4_1>");
        assert_eq!(v.placeholder(PiiKind::Email, "c@d.io"), "<EMAIL_2>");
        assert_eq!(v.placeholder(PiiKind::Email, "a@b.io"), "<EMAIL_1>");
        assert_eq!(v.len(), 3);
        let back = v.restore("<EMAIL_2> <IPV4_1> <EMAIL_3> <ACCOUNT_ID_1>");
        assert_eq!(back.text, "c@d.io 10.0.0.1 <EMAIL_3> <ACCOUNT_ID_1>");
        assert_eq!(back.unknown_placeholders, ["<EMAIL_3>", "<ACCOUNT_ID_1>"]);
    }

    #[test]
    fn numbering_only_numbers_alike_and_keeps_no_value() {
        let mut v = Vault::numbering_only();
        assert_eq!(v.placeholder(PiiKind::Email, "a@b.io"), "<EMAIL_1>");
        assert_eq!(v.placeholder(PiiKind::Email, "c@d.io"), "<EMAIL_2>");
        assert_eq!(v.placeholder(PiiKind::Email, "a@b.io"), "<EMAIL_1>");
        assert_eq!(v.len(), 2);
        assert_eq!(v.restore("<EMAIL_1>").text, "<EMAIL_1>");
        assert_eq!(v.mask("a@b.io"), "a@b.io");
    }
}
