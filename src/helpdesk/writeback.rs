//! What goes back to the helpdesk for one classified ticket, neutral of the helpdesk:
//! tags to add (`triage_<category>`, `triage_needs_review` when flagged), the
//! category for an optional custom field, and an internal note (summary, confidence,
//! reasoning, review reason) ending in a marker line that identifies this write, so a
//! re-run after a crash can tell whether the note is already there.

use serde::{Deserialize, Serialize};

use crate::classifier::TicketResult;

/// Added to every ticket that needs a person: the helpdesk view of the review queue.
pub const REVIEW_TAG: &str = "triage_needs_review";
/// Prefix of our tags.
pub const TAG_PREFIX: &str = "triage_";

/// `Feature Request` -> `feature_request`: lower case, runs of other characters as one `_`.
pub fn slug(label: &str) -> String {
    let mut out = String::new();
    for c in label.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// `triage_billing` for `Billing`.
pub fn category_tag(label: &str) -> String {
    format!("{TAG_PREFIX}{}", slug(label))
}

/// The parts of a classification result a write-back needs. Read through the
/// result's JSON, so it does not depend on how `method` and `review_reason` are typed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Verdict {
    pub category: Option<String>,
    pub confidence: f32,
    pub needs_review: bool,
    pub review_reason: Option<String>,
    pub summary: String,
    pub reasoning: String,
    #[serde(deserialize_with = "as_text")]
    pub method: String,
    pub error: Option<String>,
}

fn as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

impl Verdict {
    pub fn from_result(r: &TicketResult) -> Self {
        serde_json::to_value(r).ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_else(|| Verdict {
            needs_review: true,
            error: Some("the classification result could not be read".into()),
            ..Verdict::default()
        })
    }
}

/// One planned write-back. Stored in the ledger while pending, so a re-run after a
/// crash repeats exactly this write (same note, same marker) instead of a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteBack {
    /// Tags to add; the agent's own tags are kept.
    pub tags: Vec<String>,
    /// The category for the custom field (each helpdesk writes it in its own form).
    pub category: Option<String>,
    /// The internal note, plain text, one item per line; the last line is the marker.
    pub note: String,
    /// `triage-ref: <12 hex>`: the text hash this write is for.
    pub marker: String,
}

impl WriteBack {
    /// The write-back for a result on the ticket text with hash `text_hash`.
    pub fn plan(v: &Verdict, text_hash: &str) -> Self {
        let marker = marker(text_hash);
        let mut tags = Vec::new();
        let mut lines = Vec::new();
        match &v.category {
            Some(c) => {
                tags.push(category_tag(c));
                lines.push(format!("Triage: {c} (confidence {:.2})", v.confidence));
            }
            None => lines.push("Triage could not classify this ticket.".to_string()),
        }
        if v.needs_review {
            tags.push(REVIEW_TAG.to_string());
            let reason = v.review_reason.as_deref().or(v.error.as_deref()).unwrap_or("flagged");
            lines.push(format!("Needs review: {reason}"));
        }
        if !v.summary.trim().is_empty() {
            lines.push(format!("Summary: {}", one_line(&v.summary)));
        }
        if !v.reasoning.trim().is_empty() {
            lines.push(format!("Reasoning: {}", one_line(&v.reasoning)));
        }
        if let Some(e) = &v.error {
            lines.push(format!("Error: {}", one_line(e)));
        }
        if !v.method.is_empty() {
            lines.push(format!("Method: {}", v.method));
        }
        lines.push(marker.clone());
        WriteBack { tags, category: v.category.clone(), note: lines.join("\n"), marker }
    }

    /// The note as HTML (Freshdesk notes are HTML): escaped, one `<br>` per line.
    pub fn note_html(&self) -> String {
        self.note.lines().map(escape_html).collect::<Vec<_>>().join("<br>\n")
    }
}

/// The marker line of a note written for text hash `text_hash`.
pub fn marker(text_hash: &str) -> String {
    format!("triage-ref: {}", &text_hash[..text_hash.len().min(12)])
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict() -> Verdict {
        Verdict {
            category: Some("Feature Request".into()),
            confidence: 0.734,
            needs_review: true,
            review_reason: Some("low_confidence: neighbour vote share 0.73 is below 0.85".into()),
            summary: "Wants dark mode".into(),
            reasoning: "5 of 8 nearest\nexamples are Feature Request".into(),
            method: "knn".into(),
            error: None,
        }
    }

    #[test]
    fn slugs_and_tags() {
        assert_eq!(slug("Feature Request"), "feature_request");
        assert_eq!(slug("  Billing / Refunds "), "billing_refunds");
        assert_eq!(slug("Ünïcode-Thing"), "ünïcode_thing");
        assert_eq!(category_tag("Technical"), "triage_technical");
    }

    #[test]
    fn a_flagged_result_gets_both_tags_and_the_reason_in_the_note() {
        let w = WriteBack::plan(&verdict(), "0123456789abcdef0123");
        assert_eq!(w.tags, ["triage_feature_request", "triage_needs_review"]);
        assert_eq!(w.category.as_deref(), Some("Feature Request"));
        assert_eq!(
            w.note,
            "Triage: Feature Request (confidence 0.73)\n\
             Needs review: low_confidence: neighbour vote share 0.73 is below 0.85\n\
             Summary: Wants dark mode\n\
             Reasoning: 5 of 8 nearest examples are Feature Request\n\
             Method: knn\n\
             triage-ref: 0123456789ab"
        );
        assert_eq!(w.marker, "triage-ref: 0123456789ab");
        assert!(w.note_html().contains("Triage: Feature Request (confidence 0.73)<br>\n"));
    }

    #[test]
    fn a_confident_result_gets_no_review_tag_and_a_failed_one_no_category() {
        let v = Verdict { needs_review: false, review_reason: None, ..verdict() };
        assert_eq!(WriteBack::plan(&v, "ff").tags, ["triage_feature_request"]);
        let failed = Verdict {
            category: None,
            needs_review: true,
            review_reason: Some("error: empty ticket: no text to classify".into()),
            error: Some("empty ticket: no text to classify".into()),
            method: "none".into(),
            ..Verdict::default()
        };
        let w = WriteBack::plan(&failed, "ab");
        assert_eq!(w.tags, [REVIEW_TAG]);
        assert!(w.note.starts_with("Triage could not classify this ticket.\nNeeds review: error: empty ticket"), "{}", w.note);
        assert_eq!(escape_html("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }

    #[test]
    fn verdicts_read_methods_whatever_their_type() {
        let v: Verdict = serde_json::from_value(serde_json::json!({"category": "Billing", "method": "knn",
            "confidence": 0.9, "needs_review": false, "extra": 1})).unwrap();
        assert_eq!((v.category.as_deref(), v.method.as_str()), (Some("Billing"), "knn"));
        let v: Verdict = serde_json::from_value(serde_json::json!({"method": {"kind": "rag"}})).unwrap();
        assert_eq!(v.method, r#"{"kind":"rag"}"#);
    }
}
