//! The pipeline: embed, retrieve, weigh the neighbours (vote and fitted head), ask
//! the LLM with the retrieved examples, then decide once between the two witnesses
//! from how each did on the collection's own examples ([`crate::fit`]).
//!
//! The evidence comes first ([`Evidence`]: the ticket's language, the neighbours'
//! judgement), then at most one LLM answer, then one decision ([`decide`]). Without a
//! fit the rules are fixed: the LLM's valid answer wins unless a strong vote disagrees.

mod ask;
mod decide;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::embed::Embedder;
use crate::example::ScoredExample;
use crate::fit::{Fitted, Judgement, NeighbourModel};
use crate::guard::extractive_summary;
use crate::knn::{vote_with, Vote};
use crate::lang::{self, Assessment, Coverage};
use crate::llm::LlmClient;
use crate::result::{ms, round3, FitRef, FitUsed, NeighbourAnswer, ReviewKind, ReviewReason};
use crate::store::{CollectionMeta, ExampleStore, PayloadFilter, StoreError};
use crate::taxonomy::label_key;

pub use crate::result::{LlmAnswer, Neighbor, ResultMethod, TicketResult};

/// One ticket to classify. `text` is `Err` when the input row itself was unusable
/// (bad encoding, malformed JSON): it still gets a result, flagged.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub text: Result<String, String>,
}

/// Default of [`ClassifyOptions::max_prompt_labels`].
pub const DEFAULT_MAX_PROMPT_LABELS: usize = 20;

#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    /// Examples retrieved for the vote and shown to the LLM.
    pub k: usize,
    /// Review threshold; `None` uses the taxonomy's (else 0.85).
    pub min_confidence: Option<f32>,
    /// Answer with the neighbours, without calling the LLM, when their fitted
    /// confidence reaches the collection's shortcut threshold (`method: knn-shortcut`).
    pub shortcut: bool,
    /// With more categories than this, the prompt lists only the categories the
    /// neighbours support (at most this many); 0 lists them all.
    pub max_prompt_labels: usize,
    /// Retrieve only examples whose payload fields have these values (e.g. `lang=en`,
    /// `tier=gold`); empty: all. Check it with [`CollectionMeta::check_filter`].
    pub filter: PayloadFilter,
    /// Two-stage prompts for taxonomies with subcategories: ask for the category
    /// first (the prompt lists categories only), then, when the chosen category has
    /// subcategories, ask for one of those in a second, short request. Shorter
    /// prompts, but a second request per ticket: off by default, because at
    /// per-request pricing it can double the cost. No effect on flat taxonomies.
    pub two_stage: bool,
    /// Held-out mode (fitting): a ticket's id is a stored example's id, and that
    /// example is left out of its own retrieval.
    pub holdout: bool,
    /// Weigh the LLM's answer with the collection's fitted arbiter when it has one for
    /// the model (off while fitting the arbiter itself).
    pub arbiter: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            k: 8,
            min_confidence: None,
            shortcut: true,
            max_prompt_labels: DEFAULT_MAX_PROMPT_LABELS,
            filter: PayloadFilter::new(),
            two_stage: false,
            holdout: false,
            arbiter: true,
        }
    }
}

impl ClassifyOptions {
    pub fn new(k: usize, min_confidence: Option<f32>) -> Self {
        ClassifyOptions { k, min_confidence, ..ClassifyOptions::default() }
    }
}

/// Which labeled examples the LLM sees. The neighbours' judgement (and the decision
/// built on it) is computed the same way whichever is chosen.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Demonstrations {
    /// The label-diverse nearest neighbours of each ticket (`method: rag`); the default.
    #[default]
    Retrieved,
    /// No examples in the prompt (`method: zero-shot`); for accuracy comparisons.
    None,
    /// The same examples for every ticket (`method: fixed-few-shot`); for accuracy comparisons.
    Fixed(Vec<ScoredExample>),
}

impl Demonstrations {
    /// The `method` reported for an LLM answer given with these demonstrations.
    pub fn method(&self) -> ResultMethod {
        match self {
            Demonstrations::Retrieved => ResultMethod::Rag,
            Demonstrations::None => ResultMethod::ZeroShot,
            Demonstrations::Fixed(_) => ResultMethod::FixedFewShot,
        }
    }
}

pub struct Classifier {
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    llm: Option<Arc<dyn LlmClient>>,
    meta: CollectionMeta,
    fitted: Option<Fitted>,
    /// Said on every result when the stored fit cannot be used.
    fit_warning: Option<String>,
    coverage: Option<Arc<Coverage>>,
    options: ClassifyOptions,
    demonstrations: Demonstrations,
}

/// What is known about a ticket before any LLM is asked.
pub(crate) struct Evidence<'a> {
    pub text: &'a str,
    pub language: Assessment,
    pub vote: Vote,
    pub judgement: Judgement,
    pub model: Option<&'a NeighbourModel>,
    pub candidates: Vec<ScoredExample>,
    pub k: usize,
    pub threshold: f32,
}

/// The fitted neighbours' answer for a ticket: the head's probabilities for its vector,
/// mixed with its vote over the `nearest` (the k nearest candidates), calibrated and
/// checked for out of scope ([`NeighbourModel::judge`]).
pub fn judge_fitted(m: &NeighbourModel, vote: &Vote, nearest: &[ScoredExample], vector: &[f32]) -> Judgement {
    let head = m.head.as_ref().and_then(|h| h.predict_proba(vector).ok());
    let near: Vec<(&str, f32)> = nearest.iter().map(|c| (c.example.label.as_str(), c.score)).collect();
    m.judge(&vote.shares, &near, head.as_deref())
}

impl Classifier {
    /// Open `collection`, checking that it was built with this embedding model.
    pub async fn open(
        embedder: Arc<dyn Embedder>,
        store: Arc<dyn ExampleStore>,
        llm: Option<Arc<dyn LlmClient>>,
        collection: &str,
        options: ClassifyOptions,
    ) -> Result<Self, StoreError> {
        let meta = store.require_meta(collection).await?;
        meta.check_model(embedder.model_name(), embedder.dim())?;
        let coverage = embedder.coverage();
        let mut c = Classifier {
            embedder,
            store,
            llm,
            meta,
            fitted: None,
            fit_warning: None,
            coverage,
            options,
            demonstrations: Demonstrations::Retrieved,
        };
        c.load_fitted();
        Ok(c)
    }

    /// Read the collection's fitted state, refusing a head from another embedding model.
    fn load_fitted(&mut self) {
        if self.meta.legacy_calibration.is_some() && self.meta.fitted.is_none() {
            self.fit_warning = Some(
                "the collection's calibration was made by an older version and is not used: run triage calibrate".into(),
            );
        }
        let Some(state) = &self.meta.fitted else { return };
        match Fitted::from_state(state) {
            Ok(mut f) => {
                if let Some(info) = &f.neighbours.head_info {
                    if info.embedding_model != self.embedder.model_name() || info.dim != self.embedder.dim() {
                        self.fit_warning = Some(format!(
                            "the collection's fitted head was made with embedding model {:?} ({} dims), not {:?}: not used",
                            info.embedding_model,
                            info.dim,
                            self.embedder.model_name()
                        ));
                        f.neighbours.head = None;
                        f.neighbours.head_info = None;
                        f.neighbours.head_weight = 0.0;
                    }
                }
                self.fitted = Some(f);
            }
            Err(e) => self.fit_warning = Some(e.to_string()),
        }
    }

    /// Use `fitted` instead of the collection's stored fit (fitting the arbiter on
    /// held-out examples, with a head that has not seen them).
    pub fn with_fitted(mut self, fitted: Option<Fitted>) -> Self {
        self.fitted = fitted;
        self.fit_warning = None;
        self
    }

    /// Show the LLM other demonstrations than the retrieved ones (evaluation baselines).
    pub fn with_demonstrations(mut self, demonstrations: Demonstrations) -> Self {
        self.demonstrations = demonstrations;
        self
    }

    pub fn meta(&self) -> &CollectionMeta {
        &self.meta
    }

    pub fn fitted(&self) -> Option<&Fitted> {
        self.fitted.as_ref()
    }

    pub fn options(&self) -> &ClassifyOptions {
        &self.options
    }

    fn threshold(&self, options: &ClassifyOptions) -> f32 {
        options.min_confidence.unwrap_or_else(|| self.meta.taxonomy.review_threshold())
    }

    /// The fitted neighbours' side for `k`, when the collection was calibrated at `k`.
    fn neighbour_model(&self, k: usize) -> Option<&NeighbourModel> {
        self.fitted.as_ref().map(|f| &f.neighbours).filter(|m| m.k == k)
    }

    /// Classify tickets: one result per ticket, in input order. Embeds all usable
    /// texts in one call, then runs up to `concurrency` tickets at once.
    pub async fn classify_batch(&self, tickets: Vec<Ticket>, concurrency: usize) -> Vec<TicketResult> {
        self.classify_batch_with(tickets, concurrency, &self.options).await
    }

    /// `classify_batch` with options other than the classifier's defaults.
    pub async fn classify_batch_with(
        &self,
        tickets: Vec<Ticket>,
        concurrency: usize,
        options: &ClassifyOptions,
    ) -> Vec<TicketResult> {
        let started = Instant::now();
        let mut texts = Vec::new();
        let mut slots = Vec::with_capacity(tickets.len());
        for t in &tickets {
            match &t.text {
                Ok(s) if crate::input::blank_reason(s).is_none() => {
                    slots.push(Some(texts.len()));
                    texts.push(s.clone());
                }
                _ => slots.push(None),
            }
        }
        let vectors = match self.embedder.embed(texts).await {
            Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => {
                let msg = e.to_string();
                slots.iter().filter(|s| s.is_some()).map(|_| Err(msg.clone())).collect()
            }
        };
        let embed_ms = ms(started);
        let jobs = tickets.into_iter().zip(slots).map(|(ticket, slot)| {
            let vector = slot.map(|i| vectors[i].clone());
            async move {
                let started = Instant::now();
                let mut r = self.classify_prepared(&ticket, vector, None, started, options).await;
                if r.error.is_none() {
                    // The batch embedding time is shared: attribute it to each ticket.
                    r.latency_ms = ((r.latency_ms + embed_ms) * 100.0).round() / 100.0;
                }
                r
            }
        });
        futures::stream::iter(jobs).buffered(concurrency.max(1)).collect().await
    }

    pub async fn classify(&self, ticket: &Ticket) -> TicketResult {
        self.classify_with(ticket, &self.options).await
    }

    /// `classify` with options other than the classifier's defaults.
    pub async fn classify_with(&self, ticket: &Ticket, options: &ClassifyOptions) -> TicketResult {
        let started = Instant::now();
        let (vector, language) = match &ticket.text {
            Ok(s) if crate::input::blank_reason(s).is_none() => {
                // The embedding job is queued on the first poll and runs on an embedder
                // thread; the language is detected on this one meanwhile.
                let embed = self.embedder.embed(vec![s.clone()]);
                let (v, language) = tokio::join!(embed, async { lang::assess(s, self.coverage.as_deref()) });
                let v = v
                    .map_err(|e| e.to_string())
                    .and_then(|mut v| v.pop().ok_or_else(|| "the embedder returned nothing".to_string()));
                (Some(v), Some(language))
            }
            _ => (None, None),
        };
        self.classify_prepared(ticket, vector, language, started, options).await
    }

    async fn classify_prepared(
        &self,
        ticket: &Ticket,
        vector: Option<Result<Vec<f32>, String>>,
        language: Option<Assessment>,
        started: Instant,
        options: &ClassifyOptions,
    ) -> TicketResult {
        let text = match &ticket.text {
            Err(e) => return TicketResult::failed(&ticket.id, e.clone(), started),
            Ok(s) if crate::input::blank_reason(s).is_some() => {
                let why = crate::input::blank_reason(s).unwrap_or_default();
                return TicketResult::failed(&ticket.id, why.into(), started);
            }
            Ok(s) => s,
        };
        let vector = match vector {
            Some(Ok(v)) => v,
            Some(Err(e)) => return TicketResult::failed(&ticket.id, e, started),
            None => return TicketResult::failed(&ticket.id, "no embedding for this ticket".into(), started),
        };
        let evidence = match self.evidence(ticket, text, &vector, language, options).await {
            Ok(e) => e,
            Err(e) => return TicketResult::failed(&ticket.id, e, started),
        };
        let mut result = self.neighbours_result(ticket, &evidence);
        if let Some(llm) = &self.llm {
            let shortcut = options.shortcut
                && self.demonstrations == Demonstrations::Retrieved
                && evidence.language.covered
                && !result.needs_review
                && evidence.model.is_some_and(|m| m.decisive(evidence.judgement.confidence));
            if shortcut {
                result.method = ResultMethod::KnnShortcut;
                result.reasoning.push_str(&format!(
                    "; fitted confidence {:.3} is at or above the collection's shortcut threshold {:.3}: the LLM was not called",
                    evidence.judgement.confidence,
                    evidence.model.and_then(|m| m.shortcut_confidence).unwrap_or(1.0)
                ));
            } else {
                let stages = self.stages(&evidence, options);
                let outcome = crate::llm::for_ticket(self.ask_llm(&mut result, llm.as_ref(), stages, &evidence)).await;
                let arbiter = options
                    .arbiter
                    .then(|| self.fitted.as_ref().and_then(|f| f.arbiter(llm.model(), evidence.k)))
                    .flatten();
                decide::apply(&mut result, outcome, &evidence, arbiter, self.demonstrations.method());
                if options.arbiter && arbiter.is_none() {
                    if let Some(other) = self.fitted.as_ref().and_then(|f| f.arbiters.iter().find(|a| a.k == evidence.k)) {
                        result.warnings.push(format!(
                            "the collection's arbiter was fitted for model {:?}, not {:?}: the fixed rules decided (run triage calibrate --llm with this model)",
                            other.model,
                            llm.model()
                        ));
                    }
                }
                if let (Some(a), Some(fit)) = (arbiter, result.fit.as_mut()) {
                    fit.arbiter = Some(FitRef { fitted_at: a.fitted_at, examples: a.stats.answers });
                }
            }
        }
        result.latency_ms = ms(started);
        result
    }

    /// Retrieve, vote and judge; detect the language.
    async fn evidence<'a>(
        &'a self,
        ticket: &Ticket,
        text: &'a str,
        vector: &[f32],
        language: Option<Assessment>,
        options: &ClassifyOptions,
    ) -> Result<Evidence<'a>, String> {
        let k = options.k.max(1);
        let filter = (!options.filter.is_empty()).then_some(&options.filter);
        let limit = k * 3 + usize::from(options.holdout);
        let mut candidates =
            self.store.search(&self.meta.name, vector, limit, filter).await.map_err(|e| format!("retrieval failed: {e}"))?;
        if options.holdout {
            candidates.retain(|c| c.example.id != ticket.id);
            candidates.truncate(k * 3);
        }
        let nearest = &candidates[..candidates.len().min(k)];
        let model = self.neighbour_model(k);
        let temperature = model.map_or(crate::knn::TEMPERATURE, |m| m.vote_temperature);
        let Some(vote) = vote_with(nearest, temperature) else {
            return Err(match filter {
                Some(f) => format!(
                    "no example matches the filter {}",
                    f.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
                ),
                None => "the collection has no examples".into(),
            });
        };
        let taxonomy = &self.meta.taxonomy;
        let judgement = match model {
            Some(m) => judge_fitted(m, &vote, nearest, vector),
            None => Judgement::from_vote(&vote.shares, |l| taxonomy.is_out_of_scope(l)),
        };
        Ok(Evidence {
            text,
            language: language.unwrap_or_else(|| lang::assess(text, self.coverage.as_deref())),
            vote,
            judgement,
            model,
            candidates,
            k,
            threshold: self.threshold(options),
        })
    }

    /// The neighbours' answer as a result (`method: knn`).
    fn neighbours_result(&self, ticket: &Ticket, e: &Evidence<'_>) -> TicketResult {
        let j = &e.judgement;
        let nearest = &e.candidates[..e.candidates.len().min(e.k)];
        let label = j.label.clone();
        let n_same = label
            .as_ref()
            .map_or(0, |l| nearest.iter().filter(|n| label_key(&n.example.label) == label_key(l)).count());
        let mut reasoning = match &label {
            Some(l) => format!(
                "{n_same} of {} nearest examples are {l} (similarity-weighted share {:.2}; nearest similarity {:.2})",
                nearest.len(),
                e.vote.share_of(l),
                e.vote.top_score
            ),
            None => format!("none of the {} nearest examples has an in-scope label", nearest.len()),
        };
        if let (Some(m), Some(_)) = (e.model, &label) {
            if m.head.is_some() {
                reasoning.push_str(&format!(
                    "; with the fitted head (weight {:.2}) its probability is {:.2}",
                    m.head_weight, j.probability
                ));
            }
        }
        let mut result = TicketResult::failed(&ticket.id, String::new(), Instant::now());
        result.error = None;
        result.review_reason = None;
        result.needs_review = false;
        result.category = label.clone();
        result.subcategory = label.as_deref().and_then(|l| subcategory_for(l, &e.vote, &e.candidates));
        result.urgency = e.vote.urgency.clone();
        result.summary = extractive_summary(e.text);
        result.reasoning = reasoning;
        result.confidence = round3(j.confidence);
        result.raw_confidence = e.model.map(|_| round3(j.probability));
        result.method = ResultMethod::Knn;
        result.neighbors = nearest
            .iter()
            .map(|n| Neighbor { id: n.example.id.clone(), label: n.example.label.clone(), score: round3(n.score) })
            .collect();
        result.lang = e.language.lang.clone();
        result.neighbours =
            Some(NeighbourAnswer { category: label.clone(), confidence: round3(j.confidence), probability: round3(j.probability) });
        result.fit = e.model.map(|m| FitUsed {
            fitted_at: m.fitted_at,
            examples: m.stats.held_out,
            head: m.head_info.as_ref().filter(|_| m.head.is_some()).map(|h| FitRef { fitted_at: h.fitted_at, examples: h.examples }),
            arbiter: None,
        });
        self.neighbours_secondary(&mut result, e);
        if let Some(w) = &self.fit_warning {
            result.warnings.push(w.clone());
        }
        if let Some(f) = &self.fitted {
            if f.neighbours.k != e.k {
                result.warnings.push(format!(
                    "the collection was calibrated at k={}; its fit is not applied at k={} (run triage calibrate --k {})",
                    f.neighbours.k, e.k, e.k
                ));
            }
        }
        if let Some(reason) = neighbours_review(e) {
            result.flag(reason);
        }
        result
    }

    /// Secondary issues from the fitted rule (none without a fit), and the primary by
    /// the taxonomy's priority order: after a swap the confidence is the new label's
    /// uncalibrated mixture probability.
    fn neighbours_secondary(&self, result: &mut TicketResult, e: &Evidence<'_>) {
        let (Some(rule), Some(_)) = (e.model.and_then(|m| m.secondary.as_ref()), &result.category) else { return };
        let taxonomy = &self.meta.taxonomy;
        let nearest = &e.candidates[..e.candidates.len().min(e.k)];
        result.secondary = crate::secondary::from_neighbours(taxonomy, &e.judgement, rule, nearest);
        let Some(mut category) = result.category.clone() else { return };
        let Some(note) = crate::secondary::order_by_priority(taxonomy, &mut category, &mut result.secondary) else { return };
        let p = e.judgement.probability_of(&category);
        result.confidence = round3(result.confidence.min(p));
        result.subcategory = subcategory_for(&category, &e.vote, &e.candidates);
        result.reasoning.push_str(&format!("; {note} (its probability {p:.2} is the confidence)"));
        if result.confidence < e.threshold {
            result.flag(ReviewReason::new(
                ReviewKind::LowConfidence,
                format!("{category} by priority: probability {p:.2} is below {:.2}", e.threshold),
            ));
        }
        result.category = Some(category);
    }
}

/// The subcategory the neighbours suggest for `label`: the vote's when the vote chose
/// it, else the nearest candidate's with that label.
fn subcategory_for(label: &str, vote: &Vote, candidates: &[ScoredExample]) -> Option<String> {
    if label_key(label) == label_key(&vote.label) {
        return vote.subcategory.clone();
    }
    let key = label_key(label);
    candidates.iter().find(|c| label_key(&c.example.label) == key).and_then(|c| c.example.subcategory.clone())
}

/// Why the neighbours' answer alone goes to review, if it does.
fn neighbours_review(e: &Evidence<'_>) -> Option<ReviewReason> {
    let j = &e.judgement;
    if !e.language.covered {
        return Some(ReviewReason::new(
            ReviewKind::Language,
            format!(
                "the ticket is in {} and the embedding model does not cover it, so the neighbours' vote is not trusted",
                e.language.lang.as_deref().unwrap_or("another language")
            ),
        ));
    }
    if let Some(reason) = &j.out_of_scope {
        let detail = reason.strip_prefix("out_of_scope: ").unwrap_or(reason);
        return Some(ReviewReason::new(ReviewKind::OutOfScope, detail));
    }
    if j.label.is_none() {
        return Some(ReviewReason::new(ReviewKind::OutOfScope, "no in-scope example among the nearest examples"));
    }
    (j.confidence < e.threshold).then(|| {
        ReviewReason::new(
            ReviewKind::LowConfidence,
            match e.model {
                Some(_) => format!(
                    "fitted confidence {:.2} (neighbours' probability {:.2}) is below {:.2}",
                    j.confidence, j.probability, e.threshold
                ),
                None => format!("neighbour vote share {:.2} is below {:.2}", j.confidence, e.threshold),
            },
        )
    })
}
