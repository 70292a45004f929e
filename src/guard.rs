//! Guardrails: parse and validate the model's answer against the taxonomy, and
//! decide what goes to human review.

use serde_json::Value;

use crate::input::cap_chars;
use crate::prompt::MAX_SUMMARY_WORDS;
use crate::result::SecondaryIssue;
use crate::taxonomy::Taxonomy;

/// A validated answer, with canonical taxonomy names.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub category: String,
    pub subcategory: Option<String>,
    pub urgency: Option<String>,
    pub summary: String,
    pub reasoning: String,
    pub confidence: f32,
    /// Further issues, validated against the taxonomy ([`crate::secondary::parse`]).
    pub secondary: Vec<SecondaryIssue>,
    pub warnings: Vec<String>,
}

/// The JSON object in a model's reply: the whole text, or the outermost `{...}`
/// inside prose or a code fence.
fn extract_object(text: &str) -> Option<serde_json::Map<String, Value>> {
    if let Ok(Value::Object(m)) = serde_json::from_str(text.trim()) {
        return Some(m);
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    if end <= start {
        return None;
    }
    match serde_json::from_str(&text[start..=end]) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// Longest `reasoning` kept from an answer, in characters; the rest is cut.
pub const MAX_REASONING_CHARS: usize = 2000;
/// Longest `summary` kept, in characters (twelve words of any real language fit).
pub const MAX_SUMMARY_CHARS: usize = 200;

fn str_field(m: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn is_none_like(s: &str) -> bool {
    matches!(s.trim().to_lowercase().as_str(), "" | "null" | "none" | "n/a" | "-")
}

pub fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Validate a reply. `final_try` means no repair is coming: a too-long summary is
/// then cut to 12 words with a warning instead of failing the answer.
pub fn parse_answer(text: &str, t: &Taxonomy, final_try: bool) -> Result<Answer, Vec<String>> {
    parse(text, t, final_try, true)
}

/// Validate a stage 1 reply of two-stage prompts: as [`parse_answer`], but a
/// `subcategory` key is ignored (it was not asked for; stage 2 decides it).
pub fn parse_category_answer(text: &str, t: &Taxonomy, final_try: bool) -> Result<Answer, Vec<String>> {
    parse(text, t, final_try, false)
}

fn parse(text: &str, t: &Taxonomy, final_try: bool, with_subcategory: bool) -> Result<Answer, Vec<String>> {
    let Some(m) = extract_object(text) else {
        return Err(vec!["the reply is not a JSON object".into()]);
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    let category = match str_field(&m, "category") {
        None => {
            problems.push("\"category\" is missing".into());
            None
        }
        Some(c) => match t.category(&c) {
            Some(cat) => Some(cat.name.clone()),
            None => {
                problems.push(format!("category {c:?} is not in the taxonomy"));
                None
            }
        },
    };

    let mut subcategory = None;
    let asked = if with_subcategory { str_field(&m, "subcategory") } else { None };
    if let (Some(cat), Some(sub)) = (&category, asked) {
        if !is_none_like(&sub) {
            match t.subcategory(cat, &sub) {
                Some(s) => subcategory = Some(s.to_string()),
                None if t.category(cat).is_some_and(|c| c.subcategories.is_empty()) => {
                    warnings.push(format!("ignored subcategory {sub:?}: {cat} has none"));
                }
                None => problems.push(format!("subcategory {sub:?} is not a subcategory of {cat}")),
            }
        }
    }

    let mut urgency = None;
    if !t.urgency.is_empty() {
        match str_field(&m, "urgency") {
            None => problems.push("\"urgency\" is missing".into()),
            Some(u) => match t.urgency_level(&u) {
                Some(level) => urgency = Some(level.to_string()),
                None => problems.push(format!("urgency {u:?} is not one of the urgency levels")),
            },
        }
    }

    let mut summary = str_field(&m, "summary").unwrap_or_default();
    if summary.is_empty() {
        warnings.push("the model gave no summary".into());
    } else if word_count(&summary) > MAX_SUMMARY_WORDS {
        if final_try {
            summary = summary.split_whitespace().take(MAX_SUMMARY_WORDS).collect::<Vec<_>>().join(" ");
            warnings.push(format!("summary cut to {MAX_SUMMARY_WORDS} words"));
        } else {
            problems.push(format!("the summary has {} words; the limit is {MAX_SUMMARY_WORDS}", word_count(&summary)));
        }
    }

    let confidence = match m.get("confidence") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let confidence = match confidence {
        Some(c) if (0.0..=1.0).contains(&c) => Some(c as f32),
        Some(c) => {
            problems.push(format!("confidence {c} is outside [0, 1]"));
            None
        }
        None => {
            problems.push("\"confidence\" is missing or not a number".into());
            None
        }
    };

    let secondary = match &category {
        Some(c) => crate::secondary::parse(m.get("secondary"), t, c, final_try, &mut problems, &mut warnings),
        None => Vec::new(),
    };

    match (category, confidence) {
        (Some(mut category), Some(confidence)) if problems.is_empty() => {
            let mut secondary = secondary;
            if let Some(note) = crate::secondary::order_by_priority(t, &mut category, &mut secondary) {
                if subcategory.as_deref().is_some_and(|s| t.subcategory(&category, s).is_none()) {
                    subcategory = None;
                }
                warnings.push(note);
            }
            Ok(Answer {
                category,
                subcategory,
                urgency,
                summary: cap_chars(summary, MAX_SUMMARY_CHARS),
                reasoning: cap_chars(str_field(&m, "reasoning").unwrap_or_default(), MAX_REASONING_CHARS),
                confidence,
                secondary,
                warnings,
            })
        }
        _ => Err(problems),
    }
}

/// A validated stage 2 reply of two-stage prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct SubcategoryAnswer {
    /// Canonical name; `None` when the model answered null (no subcategory fits).
    pub subcategory: Option<String>,
    pub reasoning: String,
}

/// Validate a stage 2 reply: `subcategory` must be present, and be null or one of
/// `category`'s subcategories.
pub fn parse_subcategory_answer(text: &str, t: &Taxonomy, category: &str) -> Result<SubcategoryAnswer, Vec<String>> {
    let Some(m) = extract_object(text) else {
        return Err(vec!["the reply is not a JSON object".into()]);
    };
    let subcategory = match m.get("subcategory") {
        None => return Err(vec!["\"subcategory\" is missing".into()]),
        Some(Value::Null) => None,
        Some(Value::String(s)) if is_none_like(s) => None,
        Some(Value::String(s)) => match t.subcategory(category, s) {
            Some(name) => Some(name.to_string()),
            None => return Err(vec![format!("subcategory {:?} is not a subcategory of {category}", s.trim())]),
        },
        Some(other) => return Err(vec![format!("subcategory {other} is not a name")]),
    };
    let reasoning = cap_chars(str_field(&m, "reasoning").unwrap_or_default(), MAX_REASONING_CHARS);
    Ok(SubcategoryAnswer { subcategory, reasoning })
}

impl Answer {
    /// Merge the stage 2 reply into the stage 1 answer: its subcategory replaces
    /// whatever the answer had; its reasoning is appended.
    pub fn merge_subcategory(&mut self, s: SubcategoryAnswer) {
        self.subcategory = s.subcategory;
        if !s.reasoning.is_empty() {
            self.reasoning = if self.reasoning.is_empty() {
                format!("subcategory: {}", s.reasoning)
            } else {
                format!("{} Subcategory: {}", self.reasoning, s.reasoning)
            };
            self.reasoning = cap_chars(std::mem::take(&mut self.reasoning), MAX_REASONING_CHARS);
        }
    }
}

/// An extractive summary for results made without an LLM: the ticket's first
/// sentence, at most 12 words.
pub fn extractive_summary(text: &str) -> String {
    let first = text
        .split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().collect();
    let mut s = words.iter().take(MAX_SUMMARY_WORDS).copied().collect::<Vec<_>>().join(" ");
    if words.len() > MAX_SUMMARY_WORDS {
        s = s.trim_end_matches(['.', ',', ';', ':']).to_string();
        s.push('…');
    }
    cap_chars(s, MAX_SUMMARY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Taxonomy {
        Taxonomy::parse(
            r#"
name = "demo"
[[categories]]
name = "Billing"
[[categories.subcategories]]
name = "Refund"
[[categories]]
name = "Technical"
[[urgency]]
name = "Low"
[[urgency]]
name = "High"
"#,
        )
        .unwrap()
    }

    #[test]
    fn accepts_valid_answers_in_prose_and_normalises_names() {
        let a = parse_answer(
            "Sure!\n```json\n{\"category\":\"billing\",\"subcategory\":\"REFUND\",\"urgency\":\"high\",\"summary\":\"Double charge\",\"reasoning\":\"r\",\"confidence\":0.9}\n```",
            &t(),
            false,
        )
        .unwrap();
        assert_eq!(a.category, "Billing");
        assert_eq!(a.subcategory.as_deref(), Some("Refund"));
        assert_eq!(a.urgency.as_deref(), Some("High"));
        assert_eq!(a.confidence, 0.9);
    }

    #[test]
    fn rejects_invented_labels_and_bad_confidence() {
        let e = parse_answer(
            r#"{"category":"Sales","urgency":"Urgent!!","summary":"x","confidence":90}"#,
            &t(),
            true,
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("Sales"));
        assert!(parse_answer("not json", &t(), true).is_err());
        let e = parse_answer(r#"{"category":"Billing","subcategory":"Outage","urgency":"Low","summary":"x","confidence":0.5}"#, &t(), true)
            .unwrap_err();
        assert!(e[0].contains("not a subcategory of Billing"));
        // A subcategory for a category that has none is dropped with a warning, not fatal.
        let a = parse_answer(r#"{"category":"Technical","subcategory":"Refund","urgency":"Low","summary":"x","confidence":0.5}"#, &t(), true)
            .unwrap();
        assert_eq!(a.subcategory, None);
        assert_eq!(a.warnings.len(), 1);
    }

    #[test]
    fn long_summary_is_repairable_then_cut() {
        let long = r#"{"category":"Technical","urgency":"Low","summary":"one two three four five six seven eight nine ten eleven twelve thirteen","confidence":"0.7"}"#;
        let e = parse_answer(long, &t(), false).unwrap_err();
        assert!(e[0].contains("13 words"));
        let a = parse_answer(long, &t(), true).unwrap();
        assert_eq!(word_count(&a.summary), 12);
        assert_eq!(a.confidence, 0.7);
        assert!(!a.warnings.is_empty());
    }

    #[test]
    fn category_stage_ignores_a_volunteered_subcategory() {
        let text = r#"{"category":"Billing","subcategory":"Outage","urgency":"Low","summary":"x","reasoning":"r","confidence":0.8}"#;
        assert!(parse_answer(text, &t(), true).is_err(), "one stage: an invalid subcategory fails the answer");
        let a = parse_category_answer(text, &t(), false).unwrap();
        assert_eq!((a.category.as_str(), a.subcategory.as_deref()), ("Billing", None));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        assert!(parse_category_answer(r#"{"category":"Sales","urgency":"Low","summary":"x","confidence":0.8}"#, &t(), true).is_err());
    }

    #[test]
    fn subcategory_answers_are_checked_against_the_chosen_category() {
        let a = parse_subcategory_answer(r#"{"reasoning":"money back","subcategory":"refund"}"#, &t(), "Billing").unwrap();
        assert_eq!(a, SubcategoryAnswer { subcategory: Some("Refund".into()), reasoning: "money back".into() });
        let none = parse_subcategory_answer(r#"{"reasoning":"none fits","subcategory":null}"#, &t(), "Billing").unwrap();
        assert_eq!(none.subcategory, None);
        assert_eq!(parse_subcategory_answer(r#"{"subcategory":"N/A"}"#, &t(), "Billing").unwrap().subcategory, None);
        let e = parse_subcategory_answer(r#"{"subcategory":"Outage"}"#, &t(), "Billing").unwrap_err();
        assert!(e[0].contains("not a subcategory of Billing"), "{e:?}");
        assert!(parse_subcategory_answer(r#"{"reasoning":"x"}"#, &t(), "Billing").unwrap_err()[0].contains("missing"));
        assert!(parse_subcategory_answer(r#"{"subcategory":3}"#, &t(), "Billing").is_err());
        assert!(parse_subcategory_answer("Refund", &t(), "Billing").is_err());
    }

    #[test]
    fn merging_keeps_the_category_answer_and_takes_the_subcategory() {
        let mut a = parse_category_answer(
            r#"{"category":"Billing","urgency":"High","summary":"Double charge","reasoning":"Charged twice.","confidence":0.9}"#,
            &t(),
            false,
        )
        .unwrap();
        let before = a.clone();
        a.merge_subcategory(SubcategoryAnswer { subcategory: Some("Refund".into()), reasoning: "Wants money back.".into() });
        assert_eq!(a.subcategory.as_deref(), Some("Refund"));
        assert_eq!(a.reasoning, "Charged twice. Subcategory: Wants money back.");
        assert_eq!((&a.category, &a.urgency, &a.summary, a.confidence), (&before.category, &before.urgency, &before.summary, before.confidence));
        // Null from stage 2 clears it; an empty stage-2 reasoning leaves the reasoning alone.
        a.merge_subcategory(SubcategoryAnswer { subcategory: None, reasoning: String::new() });
        assert_eq!(a.subcategory, None);
        assert_eq!(a.reasoning, "Charged twice. Subcategory: Wants money back.");
        let mut b = Answer { reasoning: String::new(), ..before };
        b.merge_subcategory(SubcategoryAnswer { subcategory: Some("Refund".into()), reasoning: "r".into() });
        assert_eq!(b.reasoning, "subcategory: r");
    }

    #[test]
    fn answer_fields_are_capped() {
        let long = serde_json::json!({"category": "Billing", "urgency": "Low", "summary": "x".repeat(5000),
            "reasoning": "why ".repeat(100_000), "confidence": 0.9}).to_string();
        let a = parse_answer(&long, &t(), true).unwrap();
        assert_eq!(a.reasoning.chars().count(), MAX_REASONING_CHARS);
        assert!(a.reasoning.ends_with('…'));
        assert_eq!(a.summary.chars().count(), MAX_SUMMARY_CHARS);
        let sub = parse_subcategory_answer(&format!(r#"{{"subcategory": null, "reasoning": "{}"}}"#, "é".repeat(9000)), &t(), "Billing")
            .unwrap();
        assert_eq!(sub.reasoning.chars().count(), MAX_REASONING_CHARS);
        let mut merged = a.clone();
        merged.merge_subcategory(sub);
        assert_eq!(merged.reasoning.chars().count(), MAX_REASONING_CHARS);
        assert_eq!(cap_chars("short".into(), 10), "short");
        assert_eq!(extractive_summary(&"y".repeat(10_000)).chars().count(), MAX_SUMMARY_CHARS);
    }

    #[test]
    fn extractive_summary_takes_the_first_sentence() {
        assert_eq!(extractive_summary("  Refund please. Also the app crashes."), "Refund please.");
        let s = extractive_summary(&"word ".repeat(40));
        assert_eq!(word_count(&s), 12);
        assert!(s.ends_with('…'));
        assert_eq!(extractive_summary(""), "");
    }
}
