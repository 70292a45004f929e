//! Changes to a collection's stored examples that a person decided: a review file
//! written by `triage doctor --write-review` and edited (keep / relabel / delete per
//! row) is applied by `triage examples apply` in one durable write, then the collection
//! is refitted (nothing is relabelled that no person marked); one source's examples are
//! listed or deleted (`triage examples list|delete --source`, `DELETE /v1/examples?source=`).
//! Every deletion goes through [`write_and_retire`]: a category whose last example goes
//! leaves the active taxonomy (kept in its history).

use std::collections::HashMap;

use serde::Serialize;

use crate::calibrate::{self, load_points};
use crate::doctor::review::{Action, Decision, RowError};
use crate::example::{Example, ExamplePoint};
use crate::store::{label_counts, now_secs, ExampleStore, StoreError};
use crate::taxonomy::label_key;
use crate::taxonomy::policy::{check_label, Accepted};

/// What applying a review file did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub collection: String,
    pub relabeled: usize,
    pub deleted: usize,
    /// Rows marked keep, and relabels to the label the example already has.
    pub kept: usize,
    /// Rows that were not applied, with their line and why (the others were).
    pub rejected: Vec<RowError>,
    pub examples_in_collection: usize,
    /// Categories that lost their last example and left the active taxonomy.
    pub retired_labels: Vec<String>,
    /// Held-out accuracy of the refit (mixture of vote and head), when it ran.
    pub refit_accuracy: Option<f64>,
    /// Why there was no refit, when there was none.
    pub refit_note: Option<String>,
}

/// The store writes a set of decisions amounts to.
struct Plan {
    upserts: Vec<ExamplePoint>,
    deletes: Vec<u64>,
    /// Labels that lose examples (relabelled away or deleted).
    touched: Vec<String>,
    kept: usize,
    rejected: Vec<RowError>,
}

fn plan(points: Vec<ExamplePoint>, taxonomy: &crate::taxonomy::Taxonomy, decisions: &[Decision]) -> Plan {
    let mut by_id: HashMap<String, ExamplePoint> = points.into_iter().map(|p| (p.example.id.clone(), p)).collect();
    let mut out = Plan { upserts: Vec::new(), deletes: Vec::new(), touched: Vec::new(), kept: 0, rejected: Vec::new() };
    for d in decisions {
        if d.action == Action::Keep {
            out.kept += 1;
            continue;
        }
        let reject = |reason: String| RowError { line: d.line, reason };
        let Some(mut point) = by_id.remove(&d.id) else {
            out.rejected.push(reject(format!("no example with id {:?} in the collection (deleted since the review was written?)", d.id)));
            continue;
        };
        if !d.label.is_empty() && label_key(&d.label) != label_key(&point.example.label) {
            out.rejected.push(reject(format!(
                "example {:?} is labeled {:?} now, not {:?} as when the review was written: left alone",
                d.id, point.example.label, d.label
            )));
            continue;
        }
        match &d.action {
            Action::Keep => {}
            Action::Delete => {
                out.touched.push(point.example.label.clone());
                out.deletes.push(point.example.point_id());
            }
            Action::Relabel(to) => match check_label(taxonomy, to, false) {
                Err(e) => out.rejected.push(reject(e.to_string())),
                Ok(a) if label_key(a.name()) == label_key(&point.example.label) => out.kept += 1,
                Ok(a) => {
                    out.touched.push(point.example.label.clone());
                    let e = &mut point.example;
                    e.label = a.name().to_string();
                    // A subcategory belongs to the old category; an out-of-scope example has none.
                    e.subcategory = match &a {
                        Accepted::Category(c) => e.subcategory.take().and_then(|s| taxonomy.subcategory(c, &s).map(str::to_string)),
                        _ => None,
                    };
                    let k = label_key(&e.label);
                    e.secondary.retain(|s| label_key(s) != k);
                    out.upserts.push(point);
                }
            },
        }
    }
    out
}

/// Apply `decisions` to `collection` in one durable write (relabels keep their vectors:
/// the text did not change), then refit when `refit` (with the settings of the last fit).
/// `rejected` are the rows the file's reader already refused; they are reported with the
/// rows refused here.
pub async fn apply_review(
    store: &dyn ExampleStore,
    collection: &str,
    decisions: &[Decision],
    mut rejected: Vec<RowError>,
    refit: bool,
) -> Result<Applied, crate::Error> {
    let meta = store.require_meta(collection).await?;
    let points = load_points(store, collection).await?;
    let p = plan(points, &meta.taxonomy, decisions);
    let (relabeled, deleted) = (p.upserts.len(), p.deletes.len());
    let retired_labels = write_and_retire(store, collection, p.upserts, &p.deletes, &p.touched).await?;
    rejected.extend(p.rejected);
    rejected.sort_by_key(|r| r.line);
    let examples_in_collection = store.count(collection).await?;
    let (mut refit_accuracy, mut refit_note) = (None, None);
    if !refit {
        refit_note = Some("not asked (--no-refit)".into());
    } else if relabeled + deleted == 0 {
        refit_note = Some("nothing changed".into());
    } else {
        match calibrate::refit(store, None, collection, calibrate::Settings::default().k).await {
            Ok(m) => refit_accuracy = Some(m.stats.mixed_accuracy),
            Err(e @ calibrate::CalibrateError::TooFew { .. }) => refit_note = Some(e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Applied {
        collection: collection.to_string(),
        relabeled,
        deleted,
        kept: p.kept,
        rejected,
        retired_labels,
        examples_in_collection,
        refit_accuracy,
        refit_note,
    })
}

/// Upsert `points` and delete `ids` in one durable write, then retire the categories
/// among `touched` (labels that lost examples) that have none left. Returns the retired
/// names. Every path that deletes examples goes through here.
pub async fn write_and_retire(
    store: &dyn ExampleStore,
    collection: &str,
    points: Vec<ExamplePoint>,
    ids: &[u64],
    touched: &[String],
) -> Result<Vec<String>, StoreError> {
    let changed = !points.is_empty() || !ids.is_empty();
    store.apply(collection, points, ids).await?;
    if !changed {
        return Ok(Vec::new());
    }
    let counts: HashMap<String, usize> = label_counts(store, collection)
        .await?
        .into_iter()
        .fold(HashMap::new(), |mut m, (l, n)| {
            *m.entry(label_key(&l)).or_default() += n;
            m
        });
    let _meta = crate::store::meta_lock(collection).await;
    let mut meta = store.require_meta(collection).await?;
    let retired = meta.taxonomy.retire_emptied(touched, |l| counts.get(&label_key(l)).copied().unwrap_or(0), now_secs());
    meta.updated_at = now_secs();
    store.put_meta(&meta).await?;
    if !retired.is_empty() {
        tracing::info!(collection, ?retired, "labels without examples left the taxonomy (kept in its history)");
    }
    Ok(retired)
}

/// The stored examples whose provenance `source` selects (all without), with `label`
/// (by [`label_key`]) when given, in point-id order.
pub async fn list_examples(
    store: &dyn ExampleStore,
    collection: &str,
    source: Option<&str>,
    label: Option<&str>,
) -> Result<Vec<Example>, StoreError> {
    store.require_meta(collection).await?;
    let mut out = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = store.scroll(collection, offset, 1024, false).await?;
        out.extend(page.into_iter().map(|p| p.example).filter(|e| {
            source.is_none_or(|s| crate::provenance::selects(e.provenance.as_ref(), s))
                && label.is_none_or(|l| label_key(l) == label_key(&e.label))
        }));
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(out),
        }
    }
}

/// What deleting one source's examples did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Removed {
    pub collection: String,
    pub source: String,
    pub deleted: usize,
    /// Categories that lost their last example and left the active taxonomy.
    pub retired_labels: Vec<String>,
    pub examples_in_collection: usize,
}

/// Delete every example of `collection` whose provenance `source` selects (a kind such
/// as `api`, or a source name such as `api:key-1a2b3c4d`), in one durable write.
pub async fn delete_by_source(store: &dyn ExampleStore, collection: &str, source: &str) -> Result<Removed, StoreError> {
    let gone = list_examples(store, collection, Some(source), None).await?;
    let ids: Vec<u64> = gone.iter().map(Example::point_id).collect();
    let touched: Vec<String> = gone.iter().map(|e| e.label.clone()).collect();
    let retired_labels = write_and_retire(store, collection, Vec::new(), &ids, &touched).await?;
    Ok(Removed {
        collection: collection.to_string(),
        source: source.to_string(),
        deleted: ids.len(),
        retired_labels,
        examples_in_collection: store.count(collection).await?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::example::Example;

    fn point(id: &str, label: &str) -> ExamplePoint {
        let mut e = Example::new(id, format!("text {id}"), label);
        e.subcategory = Some("Refund".into());
        e.secondary = vec!["Technical".into()];
        ExamplePoint { example: e, vector: vec![1.0, 0.0] }
    }

    fn decision(line: usize, id: &str, label: &str, action: Action) -> Decision {
        Decision { line, id: id.into(), label: label.into(), action }
    }

    #[test]
    fn a_plan_relabels_deletes_and_refuses_what_it_must() {
        let t = crate::taxonomy::Taxonomy::parse(
            "name = \"t\"\n[[categories]]\nname = \"Billing\"\n[[categories.subcategories]]\nname = \"Refund\"\n[[categories]]\nname = \"Technical\"\n",
        )
        .unwrap();
        let points = vec![point("a", "Billing"), point("b", "Billing"), point("c", "Technical"), point("d", "Billing"), point("e", "Billing")];
        let p = plan(
            points,
            &t,
            &[
                decision(2, "a", "Billing", Action::Relabel("technical".into())),
                decision(3, "b", "Billing", Action::Delete),
                decision(4, "c", "Billing", Action::Delete),
                decision(5, "zz", "Billing", Action::Delete),
                decision(6, "d", "Billing", Action::Relabel("Hardware".into())),
                decision(7, "e", "billing", Action::Relabel("Billing".into())),
                decision(8, "e", "Billing", Action::Keep),
            ],
        );
        assert_eq!(p.upserts.len(), 1);
        let a = &p.upserts[0].example;
        assert_eq!((a.label.as_str(), a.subcategory.as_deref(), a.secondary.len()), ("Technical", None, 0), "canonical, no stale subcategory or secondary");
        assert_eq!(p.upserts[0].vector, vec![1.0, 0.0], "the vector is kept");
        assert_eq!(p.deletes, vec![crate::example::point_id_for("b")]);
        assert_eq!(p.touched, vec!["Billing".to_string(), "Billing".to_string()], "a relabelled away, b deleted");
        assert_eq!(p.kept, 2);
        let reasons: Vec<(usize, &str)> = p.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].1.contains("labeled \"Technical\" now"), "{reasons:?}");
        assert!(reasons[1].1.contains("no example with id \"zz\""));
        assert!(reasons[2].1.contains("unknown label \"Hardware\""));
    }
}
