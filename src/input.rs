//! Text checks shared by every reader: whether a ticket or example has any text a
//! person could see, reading a text field that must be a string, and capping a text
//! field's length (answer fields, secondary reasons).

use std::collections::BTreeMap;

use serde_json::Value;

/// Characters that render as nothing: zero-width spaces and joiners, direction
/// marks and embeddings, the word joiner and invisible operators, the byte-order
/// mark, soft hyphen, variation selectors, tag characters, Hangul fillers, the
/// Braille blank and the other default-ignorable code points (Unicode
/// `Default_Ignorable_Code_Point`), plus the format characters (`Cf`) that are not
/// in that set.
fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x0600..=0x0605
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Whether `c` shows anything: not whitespace, not a control character, not invisible.
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !is_invisible(c)
}

/// Why `text` cannot be classified or stored as an example, or `None` when it has at
/// least one visible character. Empty or whitespace-only text and text made only of
/// control and invisible characters (NUL, zero-width spaces, direction marks, ...)
/// are both empty to a reader, and to a model they are noise it would still label.
pub fn blank_reason(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("empty ticket: no text to classify")
    } else if !text.chars().any(is_visible) {
        Some("empty ticket: the text holds only control or invisible characters (zero-width, direction marks, NUL, ...)")
    } else {
        None
    }
}

/// A text field of an input row: `Ok(None)` when absent or null, an error naming the
/// JSON type when it is not a string (`{"text": true}` is not the text "true").
pub fn text_field(fields: &BTreeMap<String, Value>, name: &str) -> Result<Option<String>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("field {name:?} is {}, not a string", json_type(other))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` cut to at most `max` characters, ending with `…` when cut.
pub fn cap_chars(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s,
        Some(_) => {
            let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
            t.push('…');
            t
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn invisible_only_text_is_blank() {
        for t in ["", "  \n\t", "\0\0\0", "\u{200B}\u{200C}\u{200D}\u{FEFF}", "\u{202E}\u{2066}\u{2069}", "\u{00AD}\u{2060}\u{3164}",
            "\u{E0041}\u{E007F}", "\u{FE0F} \u{2800}", "\u{1}\u{7f}\u{85}\u{200B}"]
        {
            assert!(blank_reason(t).is_some(), "{t:?} should be blank");
        }
        assert_eq!(blank_reason("   "), Some("empty ticket: no text to classify"));
        assert!(blank_reason("\u{200B}").unwrap().contains("invisible"));
    }

    #[test]
    fn visible_text_is_kept_whatever_else_it_holds() {
        for t in ["refund", "\u{200B}refund\u{200B}", "\0x", "日本語", "😀", "\u{0301}", "é", "\u{2800}a"] {
            assert_eq!(blank_reason(t), None, "{t:?} has visible text");
        }
    }

    #[test]
    fn text_fields_must_be_strings() {
        let row: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"text": true, "n": 3, "s": "ok", "z": null, "a": [1]}"#).unwrap();
        assert_eq!(text_field(&row, "s"), Ok(Some("ok".into())));
        assert_eq!(text_field(&row, "z"), Ok(None));
        assert_eq!(text_field(&row, "missing"), Ok(None));
        assert_eq!(text_field(&row, "text").unwrap_err(), "field \"text\" is a boolean, not a string");
        assert!(text_field(&row, "n").unwrap_err().contains("a number"));
        assert!(text_field(&row, "a").unwrap_err().contains("an array"));
    }
}
