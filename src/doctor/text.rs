//! Findings about an example's text alone: empty or junk text, and languages the
//! embedding model does not cover (their neighbours and head probabilities mean little).

use crate::lang::{self, Coverage};

/// Texts that are placeholders, not tickets (compared lowercase, punctuation trimmed).
const PLACEHOLDERS: [&str; 22] = [
    "test", "testing", "test test", "asdf", "asdfgh", "qwerty", "lorem ipsum", "n/a", "na", "null", "none", "nil",
    "undefined", "todo", "tbd", "xxx", "foo", "bar", "foobar", "dummy", "placeholder", "sample",
];

/// Longest run of non-space characters that still counts as text (longer: encoded data,
/// a hash, a token).
const LONGEST_WORD: usize = 40;

/// Why `text` is not a usable example, or `None`.
pub fn junk_reason(text: &str) -> Option<String> {
    if let Some(r) = crate::input::blank_reason(text) {
        return Some(r.replace("empty ticket", "empty text"));
    }
    let visible: Vec<char> = text.chars().filter(|c| crate::input::is_visible(*c)).collect();
    if !visible.iter().any(|c| c.is_alphabetic()) {
        return Some("no letters: only digits, punctuation or symbols".into());
    }
    let lower = text.trim().trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace()).to_lowercase();
    let words = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    if PLACEHOLDERS.contains(&words.as_str()) {
        return Some(format!("a placeholder ({words:?}), not a ticket"));
    }
    let mut distinct: Vec<char> = visible.iter().flat_map(|c| c.to_lowercase()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if visible.len() >= 3 && distinct.len() <= 2 {
        return Some("one or two characters repeated".into());
    }
    // ASCII only: Japanese or Chinese text has no spaces between its words.
    if text.split_whitespace().count() == 1 && visible.len() > LONGEST_WORD && visible.iter().all(char::is_ascii) {
        return Some(format!("one unbroken string of {} characters (encoded data, a hash or a token), no words", visible.len()));
    }
    None
}

/// The language of `text` when the model does not cover it.
pub fn uncovered_language(text: &str, coverage: Option<&Coverage>) -> Option<String> {
    let a = lang::assess(text, coverage);
    if a.covered {
        None
    } else {
        a.lang
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_named_and_tickets_are_left_alone() {
        for (t, why) in [
            ("   ", "empty"),
            ("\u{200B}\u{200B}", "invisible"),
            ("12345 !!", "no letters"),
            ("Test.", "placeholder"),
            ("N/A", "placeholder"),
            ("aaaaaaaa", "repeated"),
            ("ababab", "repeated"),
            ("dGhpcyBpcyBiYXNlNjQgZW5jb2RlZCBkYXRhIGluIGEgdGlja2V0", "unbroken"),
        ] {
            let r = junk_reason(t).unwrap_or_else(|| panic!("{t:?} is junk"));
            assert!(r.contains(why), "{t:?}: {r}");
        }
        for t in ["refund pls", "ok", "My test invoice was charged twice", "500 error on /api/v2/export", "VPN",
            "ダッシュボードにログインするとエラー500が表示されます。チーム30名全員が同じ状態で、朝から仕事ができていません。"]
        {
            assert_eq!(junk_reason(t), None, "{t:?} is a ticket");
        }
    }

    #[test]
    fn languages_the_model_does_not_cover_are_named() {
        let en = Coverage { languages: vec!["en".into()], words: Default::default() };
        assert_eq!(uncovered_language("Mi paquete llegó roto y nadie me responde desde hace una semana", Some(&en)).as_deref(), Some("es"));
        assert_eq!(uncovered_language("My package arrived broken and nobody answers", Some(&en)), None);
        assert_eq!(uncovered_language("Mi paquete llegó roto y nadie me responde desde hace una semana", None), None, "unknown model: nothing said");
    }
}
