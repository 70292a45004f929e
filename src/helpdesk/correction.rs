//! Agents' corrections become examples. When a ticket we classified shows another
//! category in its category field or in a `triage_` tag than the one we wrote (and
//! than the last correction we recorded), an agent moved it: the ticket's text is
//! stored in the collection with the agent's label, under a deterministic id
//! (`correction-<source>-<ticket>`), so a later correction of the same ticket
//! replaces it. Retrieval uses it from the next classification on; nothing is retrained.
//! Used by `triage pull` and by the push path (`POST /v1/webhooks/ticket`).

use std::collections::BTreeMap;


use super::state::LedgerEntry;
use super::writeback::{category_tag, REVIEW_TAG, TAG_PREFIX};
use crate::embed::Embedder;
use crate::example::Example;
use crate::store::ExampleStore;
use crate::provenance::{Origin, Provenance};
use crate::taxonomy::policy::{check_label, UnknownLabel};
use crate::taxonomy::{label_key, Taxonomy};

/// Payload value of `source` on correction examples.
pub const SOURCE_AGENT_CORRECTION: &str = "agent_correction";

/// What a ticket shows about its category now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The category field's value, when a field is configured and set.
    pub field: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// Nothing changed (or nothing says which category the agent meant).
    None,
    /// The agent's label (a category of the taxonomy) and where it was seen (`field` or `tag`).
    Correction { label: String, via: &'static str },
    /// Something changed but it names no single category; the reason, for the log.
    Unclear(String),
}

fn same(a: Option<&str>, b: Option<&str>) -> bool {
    a.map(label_key) == b.map(label_key)
}

/// Whether `observed` shows an agent's category change against what `entry` says we
/// wrote (and the last correction recorded).
pub fn find(taxonomy: &Taxonomy, entry: &LedgerEntry, observed: &Observed) -> Finding {
    let ours = entry.category.as_deref();
    let effective = entry.effective_label();
    if let Some(value) = observed.field.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        match taxonomy.category(value) {
            Some(c) if !same(Some(&c.name), ours) => {
                if same(Some(&c.name), effective) {
                    return Finding::None;
                }
                return Finding::Correction { label: c.name.clone(), via: "field" };
            }
            Some(_) => {}
            None => return Finding::Unclear(format!("the category field holds {value:?}, which is not a category")),
        }
    }
    let our_tag = ours.map(category_tag);
    let mut tagged: Vec<&str> = Vec::new();
    for t in &observed.tags {
        let t = t.trim().to_lowercase();
        if t == REVIEW_TAG || our_tag.as_deref() == Some(t.as_str()) {
            continue;
        }
        let Some(rest) = t.strip_prefix(TAG_PREFIX) else { continue };
        if let Some(c) = taxonomy.category(rest) {
            if !tagged.iter().any(|n| label_key(n) == label_key(&c.name)) {
                tagged.push(&c.name);
            }
        }
    }
    match tagged.as_slice() {
        [] => Finding::None,
        [one] if same(Some(one), effective) => Finding::None,
        [one] => Finding::Correction { label: one.to_string(), via: "tag" },
        many => Finding::Unclear(format!("several category tags: {}", many.join(", "))),
    }
}

/// The id of the correction example for a ticket: one per ticket and source.
pub fn example_id(source: &str, ticket: &str) -> String {
    format!("correction-{source}-{ticket}")
}

/// The example an agent's correction becomes: its label checked by the label policy
/// (an agent's category is one of the taxonomy's), with its provenance.
pub fn example(taxonomy: &Taxonomy, source: &str, ticket: &str, text: &str, label: &str, at: u64) -> Result<Example, UnknownLabel> {
    let label = check_label(taxonomy, label, false)?;
    let mut e = Example::new(example_id(source, ticket), text.trim(), label.name());
    e.meta.insert("source".into(), SOURCE_AGENT_CORRECTION.into());
    e.meta.insert("helpdesk".into(), source.into());
    e.meta.insert("ticket_id".into(), ticket.into());
    e.meta.insert("corrected_at".into(), super::rfc3339(at));
    let origin = Origin::Correction { helpdesk: source.to_string(), ticket: ticket.to_string() };
    e.provenance = Some(Provenance::new(&origin, None, taxonomy, at));
    Ok(e)
}

/// Embed and store correction examples (replacing earlier ones of the same tickets).
pub async fn store(
    examples: &[Example],
    collection: &str,
    embedder: &dyn Embedder,
    store: &dyn ExampleStore,
) -> Result<(), crate::Error> {
    if examples.is_empty() {
        return Ok(());
    }
    crate::index::upsert_examples(examples, collection, embedder, store, 256, &crate::progress::silent).await?;
    Ok(())
}

/// Corrections per label, as `triage pull` prints them and `/metrics` exports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorrectionCounts(pub BTreeMap<String, u64>);

impl CorrectionCounts {
    pub fn add(&mut self, label: &str) {
        *self.0.entry(label.to_string()).or_insert(0) += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Prometheus lines for `triage_corrections_total{label=...}`, with HELP and TYPE.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP triage_corrections_total Tickets an agent moved to another category after triage, by the agent's label.\n");
        out.push_str("# TYPE triage_corrections_total counter\n");
        for (label, n) in &self.0 {
            let l = label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            out.push_str(&format!("triage_corrections_total{{label=\"{l}\"}} {n}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::EntryStatus;
    use super::*;

    fn taxonomy() -> Taxonomy {
        Taxonomy::parse(
            "name = \"t\"\n[[categories]]\nname = \"Billing\"\n[[categories]]\nname = \"Technical\"\n\
             [[categories]]\nname = \"Feature Request\"\n",
        )
        .unwrap()
    }

    fn entry(ours: &str) -> LedgerEntry {
        LedgerEntry {
            ticket: "7".into(),
            text_hash: "h".into(),
            status: EntryStatus::Done,
            category: Some(ours.into()),
            tags: vec![category_tag(ours)],
            write: None,
            error: None,
            agent_label: None,
            updated_at: 0,
        }
    }

    fn seen(field: Option<&str>, tags: &[&str]) -> Observed {
        Observed { field: field.map(str::to_string), tags: tags.iter().map(|t| t.to_string()).collect() }
    }

    #[test]
    fn our_own_write_is_not_a_correction() {
        let t = taxonomy();
        let e = entry("Billing");
        assert_eq!(find(&t, &e, &seen(Some("billing"), &["triage_billing", "triage_needs_review", "vip"])), Finding::None);
        assert_eq!(find(&t, &e, &seen(None, &[])), Finding::None, "tags removed, nothing added");
    }

    #[test]
    fn a_changed_field_or_tag_is_a_correction_with_the_canonical_label() {
        let t = taxonomy();
        let e = entry("Billing");
        let f = find(&t, &e, &seen(Some("feature_request"), &["triage_billing"]));
        assert_eq!(f, Finding::Correction { label: "Feature Request".into(), via: "field" });
        let f = find(&t, &e, &seen(None, &["triage_technical", "triage_needs_review"]));
        assert_eq!(f, Finding::Correction { label: "Technical".into(), via: "tag" });
        let f = find(&t, &e, &seen(Some("billing"), &["triage_billing", "triage_technical"]));
        assert_eq!(f, Finding::Correction { label: "Technical".into(), via: "tag" }, "a tag added next to ours");
    }

    #[test]
    fn a_recorded_correction_is_not_counted_twice_but_a_new_one_is() {
        let t = taxonomy();
        let mut e = entry("Billing");
        e.agent_label = Some("Technical".into());
        assert_eq!(find(&t, &e, &seen(None, &["triage_technical"])), Finding::None);
        assert_eq!(find(&t, &e, &seen(Some("Technical"), &[])), Finding::None);
        assert_eq!(
            find(&t, &e, &seen(Some("Feature Request"), &["triage_technical"])),
            Finding::Correction { label: "Feature Request".into(), via: "field" }
        );
    }

    #[test]
    fn unknown_values_and_several_tags_are_unclear() {
        let t = taxonomy();
        let e = entry("Billing");
        assert!(matches!(find(&t, &e, &seen(Some("sales"), &[])), Finding::Unclear(_)));
        assert!(matches!(find(&t, &e, &seen(None, &["triage_technical", "triage_feature_request"])), Finding::Unclear(_)));
        assert_eq!(find(&t, &e, &seen(None, &["triage_sales"])), Finding::None, "not a category tag");
    }

    #[test]
    fn correction_examples_carry_where_they_came_from() {
        let e = example(&taxonomy(), "zendesk", "42", " text ", "technical", 0).unwrap();
        assert_eq!((e.id.as_str(), e.text.as_str(), e.label.as_str()), ("correction-zendesk-42", "text", "Technical"));
        let p = e.provenance.as_ref().unwrap();
        assert_eq!((p.source_name().as_str(), p.ticket.as_deref()), ("correction:zendesk", Some("42")));
        assert!(example(&taxonomy(), "zendesk", "43", "t", "Sales", 0).is_err(), "not a category: refused");
        assert_eq!(e.meta["source"], "agent_correction");
        assert_eq!(e.meta["ticket_id"], "42");
        assert_eq!(e.meta["corrected_at"], "1970-01-01T00:00:00Z");
        let mut c = CorrectionCounts::default();
        c.add("Technical");
        c.add("Technical");
        c.add("Bil\"ling");
        let mut out = String::new();
        c.render(&mut out);
        assert!(out.contains("triage_corrections_total{label=\"Technical\"} 2\n"), "{out}");
        assert!(out.contains("triage_corrections_total{label=\"Bil\\\"ling\"} 1\n"), "{out}");
        assert_eq!(c.total(), 3);
    }
}
