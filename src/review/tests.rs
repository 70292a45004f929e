#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use super::*;
use crate::store::EdgeStore;

fn collection_meta(name: &str) -> CollectionMeta {
    let labels: BTreeSet<String> = ["Billing", "Bug"].iter().map(|l| l.to_string()).collect();
    CollectionMeta {
        name: name.into(),
        taxonomy: crate::Taxonomy::derived(name, &labels, &BTreeSet::new()),
        embedding_model: "m".into(),
        dim: 4,
        created_at: 1,
        updated_at: 1,
        fitted: None,
        legacy_calibration: None,
        meta_fields: Vec::new(),
    }
}

fn item(n: usize, label: &str, reason: &str) -> ReviewItem {
    ReviewItem {
        id: item_id("c", &format!("T-{n}"), &format!("ticket {n}")),
        ticket_id: format!("T-{n}"),
        text: format!("ticket {n}"),
        category: Some(label.into()),
        confidence: 0.4,
        review_reason: Some(reason.into()),
        review_detail: Some("why".into()),
        reasoning: String::new(),
        method: "knn".into(),
        llm_answer: None,
        neighbours: vec![ReviewNeighbour { id: "e1".into(), label: label.into(), score: 0.8, text: None }],
        created_at: crate::eval::report::timestamp(n as u64),
        created_unix: n as u64,
        source: ReviewSource { via: "classify".into(), helpdesk: None, key: None },
        resolution: None,
    }
}

fn resolution(action: &str) -> Resolution {
    Resolution { action: action.into(), label: None, reviewer: "key-1".into(), at: "now".into(), example_id: None }
}

#[test]
fn queue_names_are_valid_store_names_and_recognised() {
    assert_eq!(queue_name("saas"), "saas.review-queue");
    let long = "x".repeat(64);
    let q = queue_name(&long);
    assert!(q.len() <= 64 && is_queue(&q), "{q}");
    assert_ne!(queue_name(&"x".repeat(63)), q, "long names stay apart");
    crate::store::validate_name(&q).unwrap();
    assert!(!is_queue("saas"));
}

#[tokio::test]
async fn items_page_filter_and_resolve_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open(dir.path()).unwrap();
    store.put_meta(&collection_meta("c")).await.unwrap();
    // An unwritten queue is empty; an unknown collection is an error.
    assert!(list(&store, "c", &Filter::default(), 10, None).await.unwrap().items.is_empty());
    assert!(list(&store, "nope", &Filter::default(), 10, None).await.is_err());
    let items: Vec<ReviewItem> = (0..7).map(|n| item(n, if n % 2 == 0 { "Billing" } else { "Bug" }, "low_confidence")).collect();
    assert_eq!(enqueue(&store, "c", items.clone()).await.unwrap(), 7);
    // Queueing the same tickets again keeps one entry each.
    enqueue(&store, "c", items.clone()).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(&store, "c", &Filter::default(), 3, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|i| i.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut want: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want, "every item once over the pages");

    let bugs = list(&store, "c", &Filter { label: Some("Bug".into()), reason: None }, 50, None).await.unwrap();
    assert_eq!(bugs.items.len(), 3);
    let none = list(&store, "c", &Filter { reason: Some("disagreement".into()), label: None }, 50, None).await.unwrap();
    assert!(none.items.is_empty());
    assert!(matches!(list(&store, "c", &Filter::default(), 5, Some("x")).await, Err(ReviewError::BadCursor(_))));

    let first = open_item(&store, "c", &items[0].id).await.unwrap();
    mark_resolved(&store, "c", first, resolution("dismiss")).await.unwrap();
    assert!(matches!(open_item(&store, "c", &items[0].id).await, Err(ReviewError::Resolved { .. })));
    assert!(matches!(open_item(&store, "c", "0000").await, Err(ReviewError::NotFound { .. })));
    // Flagged again after the decision: not asked about twice.
    assert_eq!(enqueue(&store, "c", vec![items[0].clone()]).await.unwrap(), 0);
    let s = summary(&store, "c").await.unwrap();
    assert_eq!((s.open, s.resolved), (6, 1));
    assert_eq!(s.by_label.get("Billing"), Some(&3));
    assert_eq!(s.by_reason.get("low_confidence"), Some(&6));
    let all = list(&store, "c", &Filter::default(), 50, None).await.unwrap();
    assert_eq!(all.items.len(), 6, "resolved items leave the list");
    assert!(delete_queue(&store, "c").await.unwrap());
    assert!(!delete_queue(&store, "c").await.unwrap());
    assert!(list(&store, "c", &Filter::default(), 50, None).await.unwrap().items.is_empty(), "the queue went");
}
