//! Text from outside (a cloud's tags, a person's input, a model's notes)
//! made safe to show: it can neither drive a terminal nor add lines nor
//! read differently from what is stored.

/// Characters that change how text is shown rather than showing something:
/// controls, separators, bidi embeddings/overrides/isolates (U+202A–U+202E,
/// U+2066–U+2069, U+200E/U+200F, U+061C) and zero-width ones (U+200B–U+200D,
/// U+2060, U+FEFF, U+180E).
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{85}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}' | '\u{200F}' | '\u{061C}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}' | '\u{FEFF}' | '\u{180E}'
        )
}

/// `text` on one line with every [`is_hidden_or_control`] character escaped
/// (`\u{1b}`); printable characters in any script are kept as they are.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden_or_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_drives_a_terminal_and_keeps_every_script() {
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ny"), "x\\ny");
        assert_eq!(printable("ab\u{202e}c"), "ab\\u{202e}c");
        assert_eq!(printable("José 李小龍"), "José 李小龍");
    }
}
