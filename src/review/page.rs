//! Reading the queue: one page of open items (filtered by reason and predicted label,
//! resumed from a cursor) and the counts the page shows beside its filters.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{queue_name, ReviewError, ReviewItem, OPEN, REASON_KEY, STATE_KEY};
use crate::example::Example;
use crate::store::ExampleStore;

/// Items read from the store per scroll request.
const SCROLL_PAGE: usize = 512;

/// Which open items a page shows (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The review reason's kind (`low_confidence`, ...).
    pub reason: Option<String>,
    /// The predicted category; `-` selects items without one.
    pub label: Option<String>,
}

impl Filter {
    fn admits(&self, item: &ReviewItem) -> bool {
        let reason_ok = self.reason.as_deref().is_none_or(|r| item.review_reason.as_deref() == Some(r));
        let label_ok = match self.label.as_deref() {
            None => true,
            Some("-") => item.category.is_none(),
            Some(l) => item.category.as_deref() == Some(l),
        };
        reason_ok && label_ok
    }
}

/// One page of open items in the queue's stable order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub items: Vec<ReviewItem>,
    /// Pass as `cursor` for the next page; null after the last.
    pub next_cursor: Option<String>,
}

fn is_open(e: &Example) -> bool {
    e.meta.get(STATE_KEY).map(String::as_str) == Some(OPEN)
}

/// Up to `limit` open items admitted by `filter`, from `cursor` (the `next_cursor` of the
/// previous page) on. A collection whose queue was never written has an empty queue.
pub async fn list(
    store: &dyn ExampleStore,
    collection: &str,
    filter: &Filter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page, ReviewError> {
    let queue = queue_name(collection);
    if store.get_meta(&queue).await?.is_none() {
        store.require_meta(collection).await?;
        return Ok(Page { items: Vec::new(), next_cursor: None });
    }
    let mut offset = match cursor.filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<u64>().map_err(|_| ReviewError::BadCursor(c.to_string()))?),
        None => None,
    };
    let limit = limit.max(1);
    let mut items = Vec::new();
    loop {
        let (points, next) = store.scroll(&queue, offset, SCROLL_PAGE, false).await?;
        for p in &points {
            if !is_open(&p.example) {
                continue;
            }
            let item = ReviewItem::from_example(&p.example)?;
            if !filter.admits(&item) {
                continue;
            }
            if items.len() == limit {
                // This one starts the next page.
                return Ok(Page { items, next_cursor: Some(p.example.point_id().to_string()) });
            }
            items.push(item);
        }
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(Page { items, next_cursor: None }),
        }
    }
}

/// Counts of open items, for the page's filters.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub open: usize,
    pub resolved: usize,
    /// Open items per review reason.
    pub by_reason: BTreeMap<String, usize>,
    /// Open items per predicted category (`-`: none).
    pub by_label: BTreeMap<String, usize>,
}

/// Count the queue's items (one pass over it).
pub async fn summary(store: &dyn ExampleStore, collection: &str) -> Result<Summary, ReviewError> {
    let queue = queue_name(collection);
    let mut s = Summary::default();
    if store.get_meta(&queue).await?.is_none() {
        store.require_meta(collection).await?;
        return Ok(s);
    }
    let mut offset = None;
    loop {
        let (points, next) = store.scroll(&queue, offset, SCROLL_PAGE, false).await?;
        for p in &points {
            if !is_open(&p.example) {
                s.resolved += 1;
                continue;
            }
            s.open += 1;
            // Counted from the payload's own fields: no record to parse.
            let reason = p.example.meta.get(REASON_KEY).filter(|r| !r.is_empty()).map_or("-", String::as_str);
            let label = Some(p.example.label.as_str()).filter(|l| !l.is_empty()).unwrap_or("-");
            *s.by_reason.entry(reason.to_string()).or_insert(0) += 1;
            *s.by_label.entry(label.to_string()).or_insert(0) += 1;
        }
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(s),
        }
    }
}
