//! Why a retrieval filter matches nothing: `--filter lang=en` on a collection whose
//! examples carry no `lang` would flag every ticket "no example matches"; instead the
//! command says once which values the filter's fields do have.

use std::collections::BTreeMap;

use super::{CollectionMeta, ExampleStore, PayloadFilter, StoreError};
use crate::example::Example;

/// Examples read to tell which values a field has (a bigger collection is sampled).
const SCANNED: usize = 10_000;
/// Values named per field (the most frequent); the rest are counted.
const VALUES_SHOWN: usize = 5;

/// `None` when some example matches `filter` (or it is empty); else what the filter's
/// fields hold: for each, how many examples have a value and the most frequent values.
pub async fn explain_empty_filter(
    store: &dyn ExampleStore,
    meta: &CollectionMeta,
    filter: &PayloadFilter,
) -> Result<Option<String>, StoreError> {
    if filter.is_empty() {
        return Ok(None);
    }
    // Any unit vector finds a match if one exists: the filter decides, not the score.
    let mut probe = vec![0.0f32; meta.dim.max(1)];
    probe[0] = 1.0;
    if !store.search(&meta.name, &probe, 1, Some(filter)).await?.is_empty() {
        return Ok(None);
    }
    let mut seen = 0usize;
    let mut values: BTreeMap<&str, BTreeMap<String, usize>> = filter.keys().map(|k| (k.as_str(), BTreeMap::new())).collect();
    let mut offset = None;
    while seen < SCANNED {
        let (page, next) = store.scroll(&meta.name, offset, 1024, false).await?;
        for p in &page {
            for (field, counts) in values.iter_mut() {
                if let Some(v) = field_value(&p.example, field) {
                    *counts.entry(v.to_string()).or_insert(0) += 1;
                }
            }
        }
        seen += page.len();
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    let wanted = filter.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    for (field, counts) in &values {
        let with: usize = counts.values().sum();
        if with == 0 {
            parts.push(format!("no example has a value for {field:?}"));
            continue;
        }
        let mut top: Vec<(&String, &usize)> = counts.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = top.iter().take(VALUES_SHOWN).map(|(v, n)| format!("{v} ({n})")).collect();
        let more = top.len().saturating_sub(VALUES_SHOWN);
        let more = if more > 0 { format!(", {more} more") } else { String::new() };
        parts.push(format!("{with} examples have a value for {field:?}: {}{more}", shown.join(", ")));
    }
    let sampled = if seen >= SCANNED { format!(" (of the first {seen} examples read)") } else { String::new() };
    Ok(Some(format!(
        "no example of collection {:?} matches the filter {wanted}: {}{sampled}",
        meta.name,
        parts.join("; ")
    )))
}

/// The payload value a filter field matches on, if the example has one.
fn field_value<'a>(e: &'a Example, field: &str) -> Option<&'a str> {
    match field {
        "label" => Some(e.label.as_str()),
        "subcategory" => e.subcategory.as_deref(),
        "urgency" => e.urgency.as_deref(),
        "lang" => e.lang.as_deref(),
        other => e.meta.get(other).map(String::as_str),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filter_fields_read_the_payload_the_filter_matches() {
        let e: Example = serde_json::from_value(serde_json::json!({
            "id": "1", "text": "t", "label": "Billing", "lang": "en", "tier": "gold"
        }))
        .unwrap();
        assert_eq!(field_value(&e, "label"), Some("Billing"));
        assert_eq!(field_value(&e, "lang"), Some("en"));
        assert_eq!(field_value(&e, "tier"), Some("gold"));
        assert_eq!(field_value(&e, "urgency"), None);
    }
}
