//! The pipeline: embed, retrieve, vote, prompt, call, validate, repair, route.
//! The neighbours' vote is always computed: it is the fallback when the LLM fails
//! and the check the LLM's answer must pass before it is trusted.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::calibrate::Calibration;
use crate::embed::Embedder;
use crate::example::ScoredExample;
use crate::guard::{extractive_summary, parse_answer, parse_category_answer, parse_subcategory_answer};
use crate::knn::{select_diverse, vote, Vote};
use crate::llm::{field_probability, LlmClient, LlmError, LlmRequest, LlmResponse, Usage};
use crate::prompt::{build_category_request, build_request, build_subcategory_request, repair_request, shortlist};
use crate::store::{CollectionMeta, ExampleStore, PayloadFilter, StoreError};
use crate::taxonomy::label_key;

/// One ticket to classify. `text` is `Err` when the input row itself was unusable
/// (bad encoding, malformed JSON): it still gets a result, flagged.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub text: Result<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Neighbor {
    pub id: String,
    pub label: String,
    pub score: f32,
}

/// The result for one ticket: the JSON object the CLI prints and the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketResult {
    pub id: String,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub urgency: Option<String>,
    pub summary: String,
    pub reasoning: String,
    /// Probability that `category` is right: calibrated for the collection when it has
    /// a calibration fitted at this k (`triage calibrate`), else the raw figure.
    pub confidence: f32,
    /// The uncalibrated figure (vote share, or the LLM's capped self-report) when
    /// `confidence` was calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_confidence: Option<f32>,
    /// The LLM's own probability for its label, from token log-probabilities, when
    /// the provider returned them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_label_probability: Option<f32>,
    pub needs_review: bool,
    pub review_reason: Option<String>,
    /// `rag` (LLM with retrieved examples), `knn` (neighbours' vote, no LLM),
    /// `knn-shortcut` (an LLM is configured but the calibrated vote was decisive, so
    /// it was not called), `knn-fallback` (the LLM failed; the vote is the
    /// suggestion), `none` (no input to classify).
    pub method: String,
    pub neighbors: Vec<Neighbor>,
    pub model: Option<String>,
    /// Tokens of every LLM request made for this ticket (repairs and the subcategory
    /// request of two-stage prompts included).
    pub usage: Usage,
    /// LLM requests made for this ticket, failed ones, repairs and the subcategory
    /// request of two-stage prompts included: what per-request pricing charges.
    pub llm_calls: u32,
    pub latency_ms: f64,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl TicketResult {
    fn failed(id: &str, error: String, started: Instant) -> Self {
        TicketResult {
            id: id.to_string(),
            category: None,
            subcategory: None,
            urgency: None,
            summary: String::new(),
            reasoning: String::new(),
            confidence: 0.0,
            raw_confidence: None,
            llm_label_probability: None,
            needs_review: true,
            review_reason: Some(format!("error: {error}")),
            method: "none".into(),
            neighbors: Vec::new(),
            model: None,
            usage: Usage::default(),
            llm_calls: 0,
            latency_ms: ms(started),
            error: Some(error),
            warnings: Vec::new(),
        }
    }

    /// True when something went wrong (as opposed to a deliberate review flag).
    pub fn failed_hard(&self) -> bool {
        self.error.is_some()
    }
}

fn ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

/// Default of [`ClassifyOptions::max_prompt_labels`].
pub const DEFAULT_MAX_PROMPT_LABELS: usize = 20;

#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    /// Examples retrieved for the vote and shown to the LLM.
    pub k: usize,
    /// Review threshold; `None` uses the taxonomy's (else 0.85).
    pub min_confidence: Option<f32>,
    /// Answer with the vote, without calling the LLM, when the collection's
    /// calibration says the neighbours are decisive (`method: knn-shortcut`).
    pub shortcut: bool,
    /// With more categories than this, the prompt lists only the categories of the
    /// retrieved candidates (at most this many); 0 lists them all.
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
        }
    }
}

impl ClassifyOptions {
    pub fn new(k: usize, min_confidence: Option<f32>) -> Self {
        ClassifyOptions { k, min_confidence, ..ClassifyOptions::default() }
    }
}

/// Which labeled examples the LLM sees. The neighbours' vote (and the guardrails
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
    pub fn method(&self) -> &'static str {
        match self {
            Demonstrations::Retrieved => "rag",
            Demonstrations::None => "zero-shot",
            Demonstrations::Fixed(_) => "fixed-few-shot",
        }
    }
}

pub struct Classifier {
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn ExampleStore>,
    llm: Option<Arc<dyn LlmClient>>,
    meta: CollectionMeta,
    options: ClassifyOptions,
    demonstrations: Demonstrations,
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
        let meta = store.get_meta(collection).await?.ok_or_else(|| StoreError::NoSuchCollection(collection.into()))?;
        meta.check_model(embedder.model_name(), embedder.dim())?;
        Ok(Classifier { embedder, store, llm, meta, options, demonstrations: Demonstrations::Retrieved })
    }

    /// Show the LLM other demonstrations than the retrieved ones (evaluation baselines).
    pub fn with_demonstrations(mut self, demonstrations: Demonstrations) -> Self {
        self.demonstrations = demonstrations;
        self
    }

    pub fn meta(&self) -> &CollectionMeta {
        &self.meta
    }

    pub fn options(&self) -> &ClassifyOptions {
        &self.options
    }

    fn threshold(&self, options: &ClassifyOptions) -> f32 {
        options.min_confidence.unwrap_or_else(|| self.meta.taxonomy.review_threshold())
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
                let mut r = self.classify_prepared(&ticket, vector, started, options).await;
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
        let vector = match &ticket.text {
            Ok(s) if crate::input::blank_reason(s).is_none() => Some(
                self.embedder
                    .embed(vec![s.clone()])
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|mut v| v.pop().ok_or_else(|| "the embedder returned nothing".to_string())),
            ),
            _ => None,
        };
        self.classify_prepared(ticket, vector, started, options).await
    }

    async fn classify_prepared(
        &self,
        ticket: &Ticket,
        vector: Option<Result<Vec<f32>, String>>,
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
        let k = options.k.max(1);
        let filter = (!options.filter.is_empty()).then_some(&options.filter);
        let candidates = match self.store.search(&self.meta.name, &vector, k * 3, filter).await {
            Ok(c) => c,
            Err(e) => return TicketResult::failed(&ticket.id, format!("retrieval failed: {e}"), started),
        };
        let nearest = &candidates[..candidates.len().min(k)];
        let Some(vote) = vote(nearest) else {
            let why = match filter {
                Some(f) => format!(
                    "no example matches the filter {}",
                    f.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
                ),
                None => "the collection has no examples".into(),
            };
            return TicketResult::failed(&ticket.id, why, started);
        };
        let threshold = self.threshold(options);
        let calibration = self.meta.calibration.as_ref().filter(|c| c.k == k);
        let mut result = self.knn_result(ticket, text, &vote, nearest, threshold, calibration);
        if let Some(c) = &self.meta.calibration {
            if c.k != k {
                result.warnings.push(format!(
                    "the collection's calibration was fitted at k={}; not applied at k={k} (run triage calibrate --k {k})",
                    c.k
                ));
            }
        }
        if let Some(llm) = &self.llm {
            let shortcut = options.shortcut
                && self.demonstrations == Demonstrations::Retrieved
                && !result.needs_review
                && nearest.first().is_some_and(|n| label_key(&n.example.label) == label_key(&vote.label))
                && calibration.is_some_and(|c| c.decisive(result.confidence));
            if shortcut {
                // Decisive neighbours (calibrated confidence at or above the fitted
                // threshold, and the nearest example has the vote's label): the LLM
                // would only be asked to confirm them.
                result.method = "knn-shortcut".into();
                result.reasoning.push_str(&format!(
                    "; calibrated confidence {:.3} is at or above the collection's shortcut threshold {:.3}: the LLM was not called",
                    result.confidence,
                    calibration.and_then(|c| c.shortcut_confidence).unwrap_or(1.0)
                ));
            } else {
                let taxonomy = &self.meta.taxonomy;
                let two_stage = options.two_stage && taxonomy.has_subcategories();
                let build = if two_stage { build_category_request } else { build_request };
                // The examples the LLM sees, and (two-stage) the pool stage 2 takes
                // the chosen category's examples from: the k × 3 retrieved candidates.
                let (request, pool): (LlmRequest, &[ScoredExample]) = match &self.demonstrations {
                    Demonstrations::Retrieved => {
                        let short = shortlist(taxonomy, &candidates, options.max_prompt_labels);
                        (build(short.as_ref().unwrap_or(taxonomy), &select_diverse(&candidates, k), text), candidates.as_slice())
                    }
                    Demonstrations::None => (build(taxonomy, &[], text), &[]),
                    Demonstrations::Fixed(d) => (build(taxonomy, d, text), d.as_slice()),
                };
                let stages = Stages { request, subcategory: two_stage.then_some(pool), k };
                let asking = self.apply_llm(&mut result, llm.as_ref(), text, stages, &vote, threshold, calibration);
                crate::llm::for_ticket(asking).await;
            }
        }
        result.latency_ms = ms(started);
        result
    }

    fn knn_result(
        &self,
        ticket: &Ticket,
        text: &str,
        vote: &Vote,
        nearest: &[ScoredExample],
        threshold: f32,
        calibration: Option<&Calibration>,
    ) -> TicketResult {
        let n_same = nearest.iter().filter(|n| label_key(&n.example.label) == label_key(&vote.label)).count();
        let confidence = calibration.map(|c| c.confidence(vote.share, vote.top_score)).unwrap_or(vote.share);
        let review_reason = if let Some(reason) = out_of_scope_reason(calibration, vote) {
            Some(reason)
        } else if confidence < threshold {
            Some(match calibration {
                Some(_) => format!(
                    "low_confidence: calibrated confidence {confidence:.2} (neighbour vote share {:.2}) is below {threshold:.2}",
                    vote.share
                ),
                None => format!("low_confidence: neighbour vote share {:.2} is below {threshold:.2}", vote.share),
            })
        } else {
            None
        };
        TicketResult {
            id: ticket.id.clone(),
            category: Some(vote.label.clone()),
            subcategory: vote.subcategory.clone(),
            urgency: vote.urgency.clone(),
            summary: extractive_summary(text),
            reasoning: format!(
                "{n_same} of {} nearest examples are {} (similarity-weighted share {:.2}; nearest similarity {:.2})",
                nearest.len(),
                vote.label,
                vote.share,
                vote.top_score
            ),
            confidence: round3(confidence),
            raw_confidence: calibration.map(|_| round3(vote.share)),
            llm_label_probability: None,
            needs_review: review_reason.is_some(),
            review_reason,
            method: "knn".into(),
            neighbors: nearest
                .iter()
                .map(|n| Neighbor { id: n.example.id.clone(), label: n.example.label.clone(), score: round3(n.score) })
                .collect(),
            model: None,
            usage: Usage::default(),
            llm_calls: 0,
            latency_ms: 0.0,
            error: None,
            warnings: Vec::new(),
        }
    }

    /// Send `request`; when the reply does not pass `parse`, send one repair request.
    /// Counts every request and its tokens into `result`. `Err` is the review reason.
    async fn ask<T>(
        &self,
        result: &mut TicketResult,
        llm: &dyn LlmClient,
        request: &LlmRequest,
        parse: impl Fn(&str, bool) -> Result<T, Vec<String>>,
    ) -> Result<(T, LlmResponse), String> {
        tracing::debug!(id = %result.id, prompt = %request.messages[0].content, "LLM request");
        result.llm_calls += 1;
        let first = llm.complete(request).await.map_err(llm_error)?;
        result.usage += first.usage;
        match parse(&first.text, false) {
            Ok(a) => Ok((a, first)),
            Err(problems) => {
                tracing::debug!(id = %result.id, ?problems, "invalid answer, asking once more");
                let repair = repair_request(request, &first.text, &problems);
                result.llm_calls += 1;
                let second = llm.complete(&repair).await.map_err(llm_error)?;
                result.usage += second.usage;
                match parse(&second.text, true) {
                    Ok(a) => Ok((a, second)),
                    Err(p) => Err(format!("invalid_answer: after one repair attempt: {}", p.join("; "))),
                }
            }
        }
    }

    /// Ask the LLM; keep the vote as the answer if the LLM fails, and flag
    /// disagreement between the LLM and the neighbours. With two stages, the second
    /// request (the chosen category's subcategories) only decides the subcategory:
    /// when it fails, the category stands, the subcategory of the nearest example
    /// of that category is the suggestion and the ticket goes to review.
    #[allow(clippy::too_many_arguments)]
    async fn apply_llm(
        &self,
        result: &mut TicketResult,
        llm: &dyn LlmClient,
        text: &str,
        stages: Stages<'_>,
        vote: &Vote,
        threshold: f32,
        calibration: Option<&Calibration>,
    ) {
        let taxonomy = &self.meta.taxonomy;
        result.model = Some(llm.model().to_string());
        let two_stage = stages.subcategory.is_some();
        let outcome = if two_stage {
            self.ask(result, llm, &stages.request, |t, last| parse_category_answer(t, taxonomy, last)).await
        } else {
            self.ask(result, llm, &stages.request, |t, last| parse_answer(t, taxonomy, last)).await
        };
        let outcome = outcome.map(|(a, response)| (a, label_probability(&response)));
        let (mut answer, label_prob) = match outcome {
            Ok(a) => a,
            Err(reason) => {
                // Keep the neighbours' vote as the suggestion; a person decides.
                result.method = "knn-fallback".into();
                result.needs_review = true;
                result.review_reason = Some(reason.clone());
                if reason.starts_with("llm_") {
                    result.error = Some(reason);
                }
                return;
            }
        };
        // Stage 2: only the chosen category's subcategories, with its examples.
        let mut subcategory_failure = None;
        let sub_request = stages
            .subcategory
            .and_then(|pool| build_subcategory_request(taxonomy, &answer.category, pool, stages.k, text));
        if let (Some(request), Some(pool)) = (sub_request, stages.subcategory) {
            let category = answer.category.clone();
            match self.ask(result, llm, &request, |t, _| parse_subcategory_answer(t, taxonomy, &category)).await {
                Ok((sub, _)) => answer.merge_subcategory(sub),
                Err(reason) => {
                    let key = label_key(&category);
                    answer.subcategory = pool
                        .iter()
                        .find(|e| label_key(&e.example.label) == key)
                        .and_then(|e| e.example.subcategory.clone());
                    if reason.starts_with("llm_") {
                        result.error = Some(reason.clone());
                    }
                    let suggested = match &answer.subcategory {
                        Some(s) => format!("; suggested {s}, the nearest {category} example's"),
                        None => String::new(),
                    };
                    subcategory_failure = Some(format!("subcategory: {reason}{suggested}"));
                }
            }
        }
        let share = vote.share_of(&answer.category);
        // The model's signal: its self-report, and its token probability for the
        // label when the provider returned log-probabilities (the lower of the two).
        // It is capped by how much of the neighbours' vote backs its label: a label
        // no neighbour has cannot exceed 0.5.
        let model_signal = label_prob.map_or(answer.confidence, |p| p.min(answer.confidence));
        let capped = model_signal.min(0.5 + 0.5 * share);
        result.llm_label_probability = label_prob.map(round3);
        let agrees = label_key(&answer.category) == label_key(&vote.label);
        // With a calibration, an answer that agrees with the vote gets the vote's
        // calibrated probability (the held-out evidence there is); a dissenting answer
        // keeps the capped self-report, which no held-out data has calibrated.
        let confidence = match calibration {
            Some(_) if agrees => result.confidence,
            _ => capped,
        };
        result.method = self.demonstrations.method().into();
        result.category = Some(answer.category.clone());
        result.subcategory = answer.subcategory;
        result.urgency = answer.urgency.or_else(|| vote.urgency.clone());
        result.summary = if answer.summary.is_empty() { extractive_summary(text) } else { answer.summary };
        result.reasoning = answer.reasoning;
        result.confidence = round3(confidence);
        result.raw_confidence = calibration.map(|_| round3(capped));
        result.warnings.extend(answer.warnings);
        result.needs_review = false;
        result.review_reason = None;
        if let Some(reason) = out_of_scope_reason(calibration, vote) {
            result.needs_review = true;
            result.review_reason = Some(reason);
        } else if !agrees && vote.share >= 0.5 {
            result.needs_review = true;
            result.review_reason = Some(format!(
                "disagreement: the model chose {} but the neighbours vote {} (share {:.2})",
                answer.category, vote.label, vote.share
            ));
        } else if let Some(reason) = subcategory_failure {
            result.needs_review = true;
            result.review_reason = Some(reason);
        } else if confidence < threshold {
            result.needs_review = true;
            result.review_reason = Some(format!(
                "low_confidence: {:.2} is below {threshold:.2} (model {:.2}, neighbour support {:.2})",
                confidence, model_signal, share
            ));
        }
    }
}

/// The LLM requests for one ticket: the (stage 1) request, and with two-stage prompts
/// the examples stage 2 picks the chosen category's demonstrations from (at most `k`).
struct Stages<'a> {
    request: LlmRequest,
    subcategory: Option<&'a [ScoredExample]>,
    k: usize,
}

/// `out_of_scope: ...` when the nearest example is less similar than the
/// collection's fitted threshold: the ticket is unlike every example.
fn out_of_scope_reason(calibration: Option<&Calibration>, vote: &Vote) -> Option<String> {
    let c = calibration?;
    c.out_of_scope(vote.top_score).then(|| {
        format!(
            "out_of_scope: the nearest example's similarity {:.3} is below the collection's threshold {:.3}",
            vote.top_score,
            c.oos_similarity.unwrap_or(0.0)
        )
    })
}

/// The probability the model gave the label it wrote, from its token log-probabilities.
fn label_probability(response: &LlmResponse) -> Option<f32> {
    response.logprobs.as_deref().and_then(|t| field_probability(&response.text, t, "category"))
}

fn llm_error(e: LlmError) -> String {
    format!("{}: {e}", e.kind())
}

fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}
