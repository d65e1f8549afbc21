//! A template's value pattern (a parameter's `pattern`, a
//! `[lines.values]` entry): an anchored regular expression a value must
//! match whole, kept for the daemon's lifetime with the catalog.
//!
//! Built with regex-automata's meta engine (the `regex` crate's, with its
//! options exposed) on the Thompson NFA alone (bounded backtracker and
//! PikeVM): values are at most a few hundred bytes, and the lazy and
//! one-pass DFAs, with the reverse NFA the lazy DFA needs, made a pattern
//! such as a cost series' service (`[^\n]{0,256}`: Unicode classes under
//! bounded repeats) weigh 573 kB instead of 175 kB. Each search uses a
//! cache of its own, dropped after it: the `regex` crate keeps one per
//! thread inside the regex, which would hold what the last scan's checks
//! built through hours of idling.

use regex_automata::{Anchored, Input, meta};

/// An anchored pattern, with the source it was written as.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As written in the template (unanchored).
    source: String,
    regex: meta::Regex,
}

impl Pattern {
    /// Compiles `source` to match whole values only. Errors: the regex
    /// syntax error, as text.
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .hybrid(false)
                    .dfa(false)
                    .onepass(false)
                    .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit),
            )
            .build(&format!("^(?:{source})$"))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether `value` matches the pattern whole.
    pub fn is_match(&self, value: &str) -> bool {
        let mut cache = self.regex.create_cache();
        self.regex
            .search_half_with(
                &mut cache,
                &Input::new(value).anchored(Anchored::Yes).earliest(true),
            )
            .is_some()
    }

    /// The pattern as written in the template, without anchors.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_values_match() {
        let region = Pattern::new("[a-z]{2}(-gov)?-[a-z]+-[0-9]").expect("pattern");
        assert!(region.is_match("eu-west-1"));
        assert!(region.is_match("us-gov-west-1"));
        assert!(!region.is_match("eu-west-1; rm -rf /"));
        assert!(!region.is_match("xeu-west-1"));
        assert!(!region.is_match(""));
        assert_eq!(region.as_str(), "[a-z]{2}(-gov)?-[a-z]+-[0-9]");
        // Alternation binds inside the anchors.
        let either = Pattern::new("a|b").expect("pattern");
        assert!(either.is_match("b"));
        assert!(!either.is_match("ab"));
        // Unicode classes count characters, not bytes.
        let service = Pattern::new(r"tag:[^=\s]{1,128}=[^\n]{0,3}").expect("pattern");
        assert!(service.is_match("tag:team=été"));
        assert!(!service.is_match("tag:team=étés"));
        assert!(!service.is_match("tag:team=a\nb"));
        assert!(Pattern::new("(").is_err());
    }
}
