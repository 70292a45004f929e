//! The pull loop: page through a helpdesk's export from the stored cursor; per page,
//! turn agents' corrections into examples, classify the tickets that are new or whose
//! text changed, write the results back, and only then advance the cursor.
//!
//! Exactly-once effect across crashes: before any write of a page, its planned
//! writes are recorded as `pending` in the ledger (durably); each write is recorded
//! `done` after the helpdesk accepted it; the cursor moves after the whole page. A
//! re-run after `kill -9` starts at the same page; a ticket still `pending` with the
//! same text gets exactly the recorded write, and only after the helpdesk shows no
//! note with its marker (the note is the part that is not idempotent: tags are added,
//! fields set). Retries ran out or credentials refused: the run stops, the cursor
//! stays, nothing is skipped.

use std::collections::HashMap;
use std::sync::Arc;

use super::correction::{self, Finding, Observed};
use super::report::{Rejection, RunReport};
use super::state::{text_hash, EntryStatus, HelpdeskState, LedgerEntry, StateError, StateKey};
use super::writeback::{Verdict, WriteBack};
use super::{now_secs, HelpdeskError, HelpdeskTicket, TicketSource};
use crate::classifier::{Classifier, Ticket};
use crate::embed::Embedder;
use crate::review::{ReviewItem, ReviewSource};
use crate::store::ExampleStore;
use crate::taxonomy::Taxonomy;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Helpdesk(#[from] HelpdeskError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Triage(#[from] crate::Error),
    /// Every ticket of a page failed to classify: the embedder or the store is down.
    #[error("no ticket of the page could be classified ({0}); stopping before writing anything")]
    Classification(String),
}

/// What classifies and stores: the collection's classifier and what corrections need.
pub struct Engine {
    pub classifier: Classifier,
    pub taxonomy: Taxonomy,
    pub embedder: Arc<dyn Embedder>,
    pub store: Arc<dyn ExampleStore>,
    pub collection: String,
    /// Tickets classified at once (LLM calls in flight).
    pub concurrency: usize,
}

impl Engine {
    /// Keep the collection fitted as agents' corrections arrive: refit when enough
    /// examples came in since the last fit (the rule of `serve --refit-after`), or when a
    /// collection too small to fit has grown enough, then reopen the classifier on the
    /// new fit. Returns whether it refitted.
    pub async fn refit_if_due(&mut self, refit_after: Option<usize>) -> Result<bool, PullError> {
        let meta = self.store.require_meta(&self.collection).await.map_err(crate::Error::from)?;
        let now = self.store.count(&self.collection).await.map_err(crate::Error::from)?;
        let due = match crate::calibrate::stored_fit(&meta) {
            Some(f) => crate::calibrate::refit_due(f.neighbours.collection_examples, now, refit_after),
            None => refit_after != Some(0) && now >= crate::calibrate::MIN_EXAMPLES,
        };
        if !due {
            return Ok(false);
        }
        let fit = crate::index::fitting::fit_collection(
            self.store.as_ref(),
            Some(self.embedder.as_ref()),
            &self.collection,
            &crate::progress::silent,
        )
        .await
        .map_err(crate::Error::from)?;
        tracing::info!(collection = %self.collection, held_out = fit.held_out, "refitted after agents' corrections");
        self.classifier = self.classifier.reopen().await.map_err(crate::Error::from)?;
        Ok(true)
    }
}

#[derive(Debug, Clone)]
pub struct PullSettings {
    /// Unix seconds: where a source without a stored cursor starts.
    pub since: u64,
    /// Print the writes instead of sending them; store nothing.
    pub dry_run: bool,
}

/// Something `run_once` tells its caller as it goes (dry-run writes, corrections).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `--dry-run`: a request that would have been sent.
    WouldWrite { ticket: String, request: serde_json::Value },
    /// An agent's correction stored as an example (or, in a dry run, that would be).
    Correction { ticket: String, label: String, previous: Option<String>, via: String, example_id: String },
}

enum Plan {
    Unchanged,
    Classify,
    /// A write recorded as pending by an interrupted run, for the same text.
    Recover(WriteBack),
    Correct { label: String, via: &'static str, previous: Option<String> },
}

fn plan(taxonomy: &Taxonomy, t: &HelpdeskTicket, hash: &str, entry: Option<&LedgerEntry>) -> Plan {
    let Some(e) = entry else { return Plan::Classify };
    if e.status == EntryStatus::Pending {
        return match (&e.write, e.text_hash == hash) {
            (Some(w), true) => Plan::Recover(w.clone()),
            _ => Plan::Classify,
        };
    }
    let observed = Observed { field: t.category_value.clone(), tags: t.tags.clone() };
    match correction::find(taxonomy, e, &observed) {
        Finding::Correction { label, via } => {
            return Plan::Correct { label, via, previous: e.effective_label().map(str::to_string) }
        }
        Finding::Unclear(why) => tracing::warn!("ticket {}: category changed but unclear: {why}", t.id),
        Finding::None => {}
    }
    if e.agent_label.is_some() {
        // An agent decided this ticket's category: we do not write over it.
        return Plan::Unchanged;
    }
    if e.status == EntryStatus::Failed || e.text_hash != hash {
        return Plan::Classify;
    }
    Plan::Unchanged
}

/// One pass from the stored cursor to the end of the stream.
pub async fn run_once(
    source: &dyn TicketSource,
    state: &dyn HelpdeskState,
    engine: &Engine,
    settings: &PullSettings,
    on_event: &mut (dyn FnMut(Event) + Send),
) -> Result<RunReport, PullError> {
    let started = std::time::Instant::now();
    let key = StateKey::new(&engine.collection, &source.state_name());
    let mut cursor = state.cursor(&key).await?.unwrap_or_else(|| source.start(settings.since));
    let mut report = RunReport { dry_run: settings.dry_run, ..RunReport::default() };
    loop {
        let page = source.fetch(&cursor).await?;
        report.pages += 1;
        report.tickets += page.tickets.len();
        let wrote = handle_page(source, state, engine, settings, &key, &page.tickets, &mut report, on_event).await?;
        let (next, end) = source.advance(&page, wrote);
        if !settings.dry_run {
            state.set_cursor(&key, &next).await?;
        }
        let stuck = next == cursor && !end;
        cursor = next;
        if stuck {
            tracing::warn!("{}: the export did not move past its cursor; stopping this run", source.kind());
        }
        if end || stuck {
            break;
        }
    }
    report.seconds = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    Ok(report)
}

/// Handle one page; true when anything was written to the helpdesk.
#[allow(clippy::too_many_arguments)]
async fn handle_page(
    source: &dyn TicketSource,
    state: &dyn HelpdeskState,
    engine: &Engine,
    settings: &PullSettings,
    key: &StateKey,
    tickets: &[HelpdeskTicket],
    report: &mut RunReport,
    on_event: &mut (dyn FnMut(Event) + Send),
) -> Result<bool, PullError> {
    // The last copy of a ticket listed twice is the current one.
    let mut latest: HashMap<&str, &HelpdeskTicket> = HashMap::new();
    let mut order = Vec::new();
    for t in tickets {
        // One ticket this helpdesk cannot take back (an id that is not a number) must
        // not stop the run: it is skipped, counted and logged, and the cursor moves on.
        if let Err(e) = source.check_ticket(t) {
            tracing::error!("skipping ticket {:?}: {e}", t.id);
            if !report.skipped.iter().any(|s| s.ticket == t.id) {
                report.skipped.push(Rejection { ticket: t.id.clone(), error: e.to_string() });
            }
            continue;
        }
        if latest.insert(t.id.as_str(), t).is_none() {
            order.push(t.id.as_str());
        }
    }
    let ids: Vec<String> = order.iter().map(|s| s.to_string()).collect();
    let entries = state.entries(key, &ids).await?;
    let now = now_secs();
    let mut classify: Vec<(&HelpdeskTicket, String)> = Vec::new();
    let mut writes: Vec<(&HelpdeskTicket, LedgerEntry, bool)> = Vec::new();
    let mut corrections = Vec::new();
    let mut corrected_entries = Vec::new();
    for id in &order {
        let t = latest[id];
        let hash = text_hash(&t.text);
        let entry = entries.get(*id);
        match plan(&engine.taxonomy, t, &hash, entry) {
            Plan::Unchanged => report.unchanged += 1,
            Plan::Classify => classify.push((t, hash)),
            Plan::Recover(w) => {
                let e = entry.cloned().map(|e| LedgerEntry { write: Some(w), ..e });
                if let Some(e) = e {
                    writes.push((t, e, true));
                }
            }
            Plan::Correct { label, via, previous } => {
                let example_id = correction::example_id(source.kind(), &t.id);
                on_event(Event::Correction {
                    ticket: t.id.clone(),
                    label: label.clone(),
                    previous: previous.clone(),
                    via: via.to_string(),
                    example_id,
                });
                report.corrections.add(&label);
                if t.text.trim().is_empty() {
                    tracing::warn!("ticket {}: corrected to {label} but has no text to learn from", t.id);
                } else {
                    match correction::example(&engine.taxonomy, source.kind(), &t.id, &t.text, &label, now) {
                        Ok(e) => corrections.push(e),
                        Err(e) => tracing::warn!("ticket {}: correction not stored: {e}", t.id),
                    }
                }
                if let Some(e) = entry {
                    corrected_entries.push(LedgerEntry { agent_label: Some(label), updated_at: now, ..e.clone() });
                }
            }
        }
    }
    if !settings.dry_run {
        // Examples first: the page's own tickets are classified with them.
        correction::store(&corrections, &engine.collection, engine.embedder.as_ref(), engine.store.as_ref()).await?;
        state.put(key, &corrected_entries).await?;
    }

    if !classify.is_empty() {
        let batch = classify.iter().map(|(t, _)| Ticket { id: t.id.clone(), text: Ok(t.text.clone()) }).collect();
        let results = engine.classifier.classify_batch(batch, engine.concurrency).await;
        let verdicts: Vec<Verdict> = results.iter().map(Verdict::from_result).collect();
        let with_text: Vec<&Verdict> =
            classify.iter().zip(&verdicts).filter(|((t, _), _)| !t.text.trim().is_empty()).map(|(_, v)| v).collect();
        if !with_text.is_empty() && with_text.iter().all(|v| v.error.is_some()) {
            let first = with_text[0].error.clone().unwrap_or_default();
            return Err(PullError::Classification(first));
        }
        report.classified += classify.len();
        if !settings.dry_run {
            // Flagged tickets join the review queue before anything is written back: a
            // run that stops here is repeated from the same page.
            let from = ReviewSource { via: "pull".into(), helpdesk: Some(source.kind().to_string()), key: None };
            let items: Vec<ReviewItem> = classify
                .iter()
                .zip(&results)
                .filter(|((t, _), _)| !t.text.trim().is_empty())
                .filter_map(|((t, _), r)| ReviewItem::from_result(&engine.collection, &t.text, r, from.clone(), now))
                .collect();
            crate::review::enqueue(engine.store.as_ref(), &engine.collection, items).await.map_err(crate::Error::from)?;
        }
        for ((t, hash), v) in classify.iter().zip(&verdicts) {
            let w = WriteBack::plan(v, hash);
            let entry = LedgerEntry {
                ticket: t.id.clone(),
                text_hash: hash.clone(),
                status: EntryStatus::Pending,
                category: v.category.clone(),
                tags: w.tags.clone(),
                write: Some(w),
                error: None,
                agent_label: None,
                updated_at: now,
            };
            writes.push((t, entry, false));
        }
    }

    if settings.dry_run {
        for (t, e, _) in &writes {
            if let Some(w) = &e.write {
                for request in source.describe(t, w) {
                    on_event(Event::WouldWrite { ticket: t.id.clone(), request });
                }
            }
        }
        return Ok(false);
    }
    let pending: Vec<LedgerEntry> = writes.iter().filter(|(_, _, recovering)| !recovering).map(|(_, e, _)| e.clone()).collect();
    state.put(key, &pending).await?;

    let mut wrote = false;
    for (t, entry, recovering) in writes {
        let Some(w) = entry.write.clone() else { continue };
        if recovering && source.has_note(&t.id, &w.marker).await? {
            // Written before the interruption; only the record was missing.
            report.recovered += 1;
            state.put(key, &[done(entry, now)]).await?;
            continue;
        }
        wrote = true;
        let outcome = source.write_back(t, &w).await;
        let record = match outcome {
            Ok(()) => {
                report.written += 1;
                if w.tags.iter().any(|t| t == super::writeback::REVIEW_TAG) {
                    report.flagged += 1;
                }
                tracing::info!("ticket {}: {} written back", t.id, entry.category.as_deref().unwrap_or("(no category)"));
                done(entry, now)
            }
            Err(e @ (HelpdeskError::Rejected { .. } | HelpdeskError::NotFound { .. })) => {
                tracing::warn!("ticket {}: {e}", t.id);
                report.rejected.push(Rejection { ticket: t.id.clone(), error: e.to_string() });
                LedgerEntry { status: EntryStatus::Failed, error: Some(e.to_string()), write: None, updated_at: now, ..entry }
            }
            // Anything else may recur for every ticket: stop; this page is done again next run.
            Err(e) => return Err(e.into()),
        };
        state.put(key, &[record]).await?;
    }
    Ok(wrote)
}

fn done(entry: LedgerEntry, now: u64) -> LedgerEntry {
    LedgerEntry { status: EntryStatus::Done, write: None, error: None, updated_at: now, ..entry }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxonomy() -> Taxonomy {
        Taxonomy::parse("name = \"t\"\n[[categories]]\nname = \"Billing\"\n[[categories]]\nname = \"Technical\"\n").unwrap()
    }

    fn ticket(tags: &[&str]) -> HelpdeskTicket {
        HelpdeskTicket {
            id: "9".into(),
            text: "refund".into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            category_value: None,
            updated_at: String::new(),
        }
    }

    fn entry(status: EntryStatus, hash: &str) -> LedgerEntry {
        LedgerEntry {
            ticket: "9".into(),
            text_hash: hash.into(),
            status,
            category: Some("Billing".into()),
            tags: vec!["triage_billing".into()],
            write: Some(WriteBack { tags: vec![], category: None, note: "n".into(), marker: "m".into() }),
            error: None,
            agent_label: None,
            updated_at: 0,
        }
    }

    #[test]
    fn plans_follow_the_ledger() {
        let t = taxonomy();
        assert!(matches!(plan(&t, &ticket(&[]), "h", None), Plan::Classify));
        assert!(matches!(plan(&t, &ticket(&["triage_billing"]), "h", Some(&entry(EntryStatus::Done, "h"))), Plan::Unchanged));
        assert!(matches!(plan(&t, &ticket(&[]), "h2", Some(&entry(EntryStatus::Done, "h"))), Plan::Classify));
        assert!(matches!(plan(&t, &ticket(&[]), "h", Some(&entry(EntryStatus::Pending, "h"))), Plan::Recover(_)));
        assert!(matches!(plan(&t, &ticket(&[]), "h2", Some(&entry(EntryStatus::Pending, "h"))), Plan::Classify));
        assert!(matches!(plan(&t, &ticket(&[]), "h", Some(&entry(EntryStatus::Failed, "h"))), Plan::Classify));
        match plan(&t, &ticket(&["triage_technical"]), "h", Some(&entry(EntryStatus::Done, "h"))) {
            Plan::Correct { label, via, previous } => {
                assert_eq!((label.as_str(), via, previous.as_deref()), ("Technical", "tag", Some("Billing")))
            }
            _ => panic!("a changed tag is a correction"),
        }
        // After a correction the agent owns the ticket, even when its text changes.
        let mut owned = entry(EntryStatus::Done, "h");
        owned.agent_label = Some("Technical".into());
        assert!(matches!(plan(&t, &ticket(&["triage_technical"]), "h2", Some(&owned)), Plan::Unchanged));
    }
}
