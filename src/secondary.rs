//! Several issues in one ticket: the LLM's `secondary` answer checked against the
//! taxonomy, the neighbours' secondary issues (runner-up labels above the fitted
//! threshold, [`crate::fit::secondary`]), and the taxonomy's `priority` order that
//! says which issue is primary.

use serde_json::Value;

use crate::example::ScoredExample;
use crate::fit::secondary::SecondaryRule;
use crate::fit::Judgement;
use crate::result::SecondaryIssue;
use crate::taxonomy::{label_key, Taxonomy};

/// Most secondary issues per ticket.
pub const MAX_SECONDARY: usize = 2;
/// Longest reason kept for one secondary issue (characters).
pub const MAX_REASON_CHARS: usize = 200;

/// Validate the `secondary` value of an LLM answer whose primary is `primary`
/// (canonical). Missing or null: none. Each item is `{"category", "reason"}` (a bare
/// name is accepted). A label outside the taxonomy (or an out-of-scope one), or more
/// than [`MAX_SECONDARY`] items, is a problem to repair; on the final try they are
/// dropped with a warning instead, so the primary answer stands. Repeats and the
/// primary itself are dropped silently.
pub fn parse(
    value: Option<&Value>,
    t: &Taxonomy,
    primary: &str,
    final_try: bool,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<SecondaryIssue> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => {
            let msg = format!("\"secondary\" must be a list, not {other}");
            if final_try {
                warnings.push(format!("ignored {msg}"));
            } else {
                problems.push(msg);
            }
            return Vec::new();
        }
    };
    let mut out: Vec<SecondaryIssue> = Vec::new();
    let mut bad = Vec::new();
    for item in items {
        let (name, reason) = match item {
            Value::String(s) => (s.trim().to_string(), String::new()),
            Value::Object(m) => (
                m.get("category").and_then(Value::as_str).unwrap_or("").trim().to_string(),
                m.get("reason").and_then(Value::as_str).unwrap_or("").trim().to_string(),
            ),
            other => (other.to_string(), String::new()),
        };
        match t.category(&name) {
            None => bad.push(format!("secondary category {name:?} is not in the taxonomy")),
            Some(c) if label_key(&c.name) == label_key(primary) => {}
            Some(c) if out.iter().any(|o| o.category == c.name) => {}
            Some(c) => out.push(SecondaryIssue { category: c.name.clone(), reason: crate::input::cap_chars(reason, MAX_REASON_CHARS) }),
        }
    }
    if out.len() > MAX_SECONDARY {
        bad.push(format!("{} secondary issues; at most {MAX_SECONDARY}", out.len()));
        out.truncate(MAX_SECONDARY);
    }
    if final_try {
        warnings.extend(bad.into_iter().map(|b| format!("dropped: {b}")));
    } else {
        problems.extend(bad);
    }
    out
}

/// Put the issue that comes first in the taxonomy's `priority` order in `category`,
/// moving the one named primary into `secondary`. Returns a note when it swapped.
pub fn order_by_priority(t: &Taxonomy, category: &mut String, secondary: &mut [SecondaryIssue]) -> Option<String> {
    if t.priority.is_empty() {
        return None;
    }
    let own = t.priority_rank(category);
    let (i, rank) = secondary.iter().enumerate().map(|(i, s)| (i, t.priority_rank(&s.category))).min_by_key(|x| x.1)?;
    if rank >= own {
        return None;
    }
    let demoted = std::mem::replace(category, secondary[i].category.clone());
    let note = format!("{category} is primary by the taxonomy's priority order; {demoted} was named first");
    secondary[i] = SecondaryIssue { category: demoted, reason: std::mem::take(&mut secondary[i].reason) };
    Some(note)
}

/// The neighbours' secondary issues: in-scope labels other than the primary whose
/// mixture probability reaches the fitted threshold and that at least one of the
/// `nearest` examples carries (as its label or one of its secondary labels), most
/// probable first, at most [`MAX_SECONDARY`].
pub fn from_neighbours(
    t: &Taxonomy,
    j: &Judgement,
    rule: &SecondaryRule,
    nearest: &[ScoredExample],
) -> Vec<SecondaryIssue> {
    let Some(primary) = j.label.as_deref() else { return Vec::new() };
    j.distribution
        .iter()
        .filter(|(l, p)| *p >= rule.threshold && label_key(l) != label_key(primary))
        .filter_map(|(l, p)| {
            let c = t.category(l)?;
            let key = label_key(&c.name);
            let support = nearest
                .iter()
                .filter(|n| label_key(&n.example.label) == key || n.example.secondary.iter().any(|s| label_key(s) == key))
                .count();
            (support > 0).then(|| SecondaryIssue {
                category: c.name.clone(),
                reason: format!(
                    "neighbours' probability {p:.2} (threshold {:.2}, fitted: {}); {support} of {} nearest examples",
                    rule.threshold,
                    rule.method,
                    nearest.len()
                ),
            })
        })
        .take(MAX_SECONDARY)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::example::Example;
    use serde_json::json;

    fn t(priority: &str) -> Taxonomy {
        Taxonomy::parse(&format!(
            "name = \"d\"\n{priority}\nout_of_scope_labels = [\"Spam\"]\n[[categories]]\nname = \"Billing\"\n[[categories]]\nname = \"Outage\"\n[[categories]]\nname = \"Feature\"\n"
        ))
        .unwrap()
    }

    fn parsed(v: Value, final_try: bool) -> (Vec<SecondaryIssue>, Vec<String>, Vec<String>) {
        let (mut p, mut w) = (Vec::new(), Vec::new());
        let s = parse(Some(&v), &t(""), "Billing", final_try, &mut p, &mut w);
        (s, p, w)
    }

    #[test]
    fn answers_are_checked_against_the_taxonomy() {
        let (s, p, _) = parsed(json!([{"category": "outage", "reason": "export broken"}, "Billing", {"category": "Outage"}]), false);
        assert_eq!(s, [SecondaryIssue { category: "Outage".into(), reason: "export broken".into() }]);
        assert!(p.is_empty(), "{p:?}");
        // Outside the taxonomy (and out-of-scope labels): repaired first, dropped last.
        let (_, p, _) = parsed(json!([{"category": "Sales"}, {"category": "Spam"}]), false);
        assert_eq!(p.len(), 2, "{p:?}");
        let (s, p, w) = parsed(json!([{"category": "Sales"}, {"category": "Feature"}]), true);
        assert!(p.is_empty() && w[0].contains("Sales"));
        assert_eq!(s.len(), 1);
        let (s, p, _) = parsed(json!(["Outage", "Feature", "Billing"]), false);
        assert_eq!((s.len(), p.len()), (2, 0), "the primary is dropped, not counted");
        let (_, p, _) = parsed(json!("Outage"), false);
        assert!(p[0].contains("must be a list"));
        let (mut p, mut w) = (Vec::new(), Vec::new());
        assert!(parse(None, &t(""), "Billing", false, &mut p, &mut w).is_empty() && p.is_empty());
    }

    #[test]
    fn priority_puts_the_first_ranked_issue_in_category() {
        let tax = t("priority = [\"Outage\", \"Billing\"]");
        let mut cat = "Billing".to_string();
        let mut sec = vec![SecondaryIssue { category: "Outage".into(), reason: "export down".into() }];
        let note = order_by_priority(&tax, &mut cat, &mut sec).unwrap();
        assert_eq!((cat.as_str(), sec[0].category.as_str()), ("Outage", "Billing"));
        assert!(note.contains("priority"));
        // Already in order, an unlisted secondary, or no order: unchanged.
        assert!(order_by_priority(&tax, &mut cat, &mut sec).is_none());
        let mut f = vec![SecondaryIssue { category: "Feature".into(), reason: String::new() }];
        assert!(order_by_priority(&tax, &mut cat, &mut f).is_none());
        let mut b = "Billing".to_string();
        assert!(order_by_priority(&t(""), &mut b, &mut sec).is_none());
    }

    #[test]
    fn neighbours_name_supported_runner_ups_above_the_threshold() {
        let j = Judgement {
            label: Some("Billing".into()),
            probability: 0.5,
            confidence: 0.5,
            oos_probability: 0.1,
            out_of_scope: None,
            far: None,
            distribution: vec![("Billing".into(), 0.5), ("Outage".into(), 0.3), ("Spam".into(), 0.1), ("Feature".into(), 0.1)],
        };
        let rule = SecondaryRule { threshold: 0.1, method: "labeled".into(), held_out: 1, labeled: 0, precision: None, recall: None, flag_rate: 0.0 };
        let ex = |label: &str, sec: &[&str]| ScoredExample {
            score: 0.9,
            example: Example { secondary: sec.iter().map(|s| s.to_string()).collect(), ..Example::new("x", "t", label) },
        };
        let s = from_neighbours(&t(""), &j, &rule, &[ex("Billing", &["Feature"]), ex("Outage", &[])]);
        let names: Vec<&str> = s.iter().map(|s| s.category.as_str()).collect();
        assert_eq!(names, ["Outage", "Feature"], "Spam is out of scope; Feature is backed by a secondary label");
        let s = from_neighbours(&t(""), &j, &rule, &[ex("Billing", &[]), ex("Outage", &[])]);
        assert_eq!(s.len(), 1, "no neighbour backs Feature");
        let high = SecondaryRule { threshold: 0.35, ..rule };
        assert!(from_neighbours(&t(""), &j, &high, &[ex("Outage", &[])]).is_empty());
    }
}
