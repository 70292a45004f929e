//! The pipeline: embed, retrieve, weigh the neighbours (vote and fitted head), ask the
//! LLM with the retrieved examples, then decide once.
//!
//! Evidence first ([`evidence::Evidence`]: the ticket's language and the trust it
//! allows, the neighbours' judgement with its fit, the bar an answer must clear), then
//! at most one LLM outcome ([`decide::LlmOutcome`]), then one pure decision
//! ([`decide::decide`]), and the result is built from it once ([`build::result`]).

mod ask;
mod build;
pub mod decide;
#[cfg(test)]
mod decide_tests;
pub mod evidence;
pub mod routing;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::embed::Embedder;
use crate::example::ScoredExample;
use crate::fit::{Fitted, Judgement, NeighbourModel};
use crate::knn::{vote_with, Vote};
use crate::lang::{self, Assessment, Coverage};
use crate::llm::LlmClient;
use crate::result::{ms, ReviewKind, ReviewReason};
use crate::store::{CollectionMeta, ExampleStore, PayloadFilter};

use ask::LlmTrace;
use decide::{Decision, LlmOutcome, Verdict};
use evidence::{Evidence, Language};
use routing::RoutePolicy;

pub use build::failed as failed_result;
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
    /// Route by a precision target instead of a threshold: the share of tickets sent
    /// on without review that may be wrong is at most `1 - p`, by the collection's
    /// held-out answers; `None` uses the taxonomy's `auto_route_precision`, if any.
    pub auto_route_precision: Option<f64>,
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
            auto_route_precision: None,
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
    /// Said on every result when the stored fit cannot be used (or there is none).
    fit_warning: Option<String>,
    coverage: Option<Arc<Coverage>>,
    options: ClassifyOptions,
    demonstrations: Demonstrations,
    /// The bars of the default options ([`routing`]).
    policy: RoutePolicy,
}

/// The fitted neighbours' answer for a ticket: the head's probabilities for its vector,
/// mixed with its vote over the `nearest` (the k nearest candidates), calibrated and
/// checked for out of scope and closeness ([`NeighbourModel::judge`]).
pub fn judge_fitted(m: &NeighbourModel, vote: &Vote, nearest: &[ScoredExample], vector: &[f32]) -> Judgement {
    let head = m.head.as_ref().and_then(|h| h.predict_proba(vector).ok());
    let near: Vec<(&str, f32)> = nearest.iter().map(|c| (c.example.label.as_str(), c.score)).collect();
    m.judge(&vote.shares, &near, head.as_deref(), Some(vector))
}

/// Text that is machine data rather than words: control characters (other than tab
/// and line breaks) or replacement characters from undecodable bytes in more than 2 %
/// of it, or any NUL. No example is like it, whatever its neighbours vote.
fn machine_data(text: &str) -> Option<ReviewReason> {
    let n = text.chars().count().max(1);
    let odd = text.chars().filter(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || *c == '\u{fffd}').count();
    (text.contains('\0') || odd * 50 > n).then(|| {
        ReviewReason::new(
            ReviewKind::NoCloseExample,
            format!("the text is machine data, not words ({odd} of {n} characters are control or undecodable characters)"),
        )
    })
}

impl Classifier {
    /// Open `collection`, checking that it was built with this embedding model.
    pub async fn open(
        embedder: Arc<dyn Embedder>,
        store: Arc<dyn ExampleStore>,
        llm: Option<Arc<dyn LlmClient>>,
        collection: &str,
        options: ClassifyOptions,
    ) -> Result<Self, crate::store::StoreError> {
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
            policy: RoutePolicy::fixed(0.85),
        };
        c.load_fitted();
        c.policy = c.make_policy(&c.options);
        Ok(c)
    }

    /// The same collection opened again, with the same embedder, store, LLM and options:
    /// picks up a fit (or taxonomy) stored since this one was opened.
    pub async fn reopen(&self) -> Result<Self, crate::store::StoreError> {
        let c = Classifier::open(self.embedder.clone(), self.store.clone(), self.llm.clone(), &self.meta.name, self.options.clone())
            .await?;
        Ok(c.with_demonstrations(self.demonstrations.clone()))
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
        self.policy = self.make_policy(&self.options);
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

    /// The fitted neighbours' side for `k`, when the collection was fitted at `k`.
    fn neighbour_model(&self, k: usize) -> Option<&NeighbourModel> {
        self.fitted.as_ref().map(|f| &f.neighbours).filter(|m| m.k == k)
    }

    /// The arbiter for this classifier's LLM at `k`, when one was fitted and `options` use it.
    fn arbiter(&self, options: &ClassifyOptions, k: usize) -> Option<&crate::fit::Arbiter> {
        let llm = self.llm.as_ref()?;
        options.arbiter.then(|| self.fitted.as_ref().and_then(|f| f.arbiter(llm.model(), k))).flatten()
    }

    /// The bars for `options` (the default options' are kept; others are computed).
    fn policy_for(&self, options: &ClassifyOptions) -> Cow<'_, RoutePolicy> {
        let same = options.k == self.options.k
            && options.min_confidence == self.options.min_confidence
            && options.auto_route_precision == self.options.auto_route_precision
            && options.arbiter == self.options.arbiter;
        if same {
            return Cow::Borrowed(&self.policy);
        }
        Cow::Owned(self.make_policy(options))
    }

    fn make_policy(&self, options: &ClassifyOptions) -> RoutePolicy {
        let k = options.k.max(1);
        let taxonomy = &self.meta.taxonomy;
        let fixed = options.min_confidence.unwrap_or_else(|| taxonomy.review_threshold());
        let target = options.auto_route_precision.or(taxonomy.auto_route_precision);
        RoutePolicy::new(fixed, target, taxonomy, self.neighbour_model(k), self.arbiter(options, k))
    }

    /// Notes every result of this classifier carries about its fit at `k`.
    fn notes(&self, k: usize) -> Vec<String> {
        let mut notes: Vec<String> = self.fit_warning.iter().cloned().collect();
        match &self.fitted {
            Some(f) if f.neighbours.k != k => notes.push(format!(
                "the collection was calibrated at k={}; its fit is not applied at k={k} (run triage calibrate --k {k})",
                f.neighbours.k
            )),
            None if self.fit_warning.is_none() => notes.push(
                "the collection is not fitted yet (fewer than 20 examples, or indexed by an older version): confidences are the raw vote, shrunk (run triage calibrate)"
                    .into(),
            ),
            _ => {}
        }
        notes
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
        let policy = self.policy_for(options);
        let mut texts = Vec::new();
        let mut slots = Vec::with_capacity(tickets.len());
        for t in &tickets {
            match &t.text {
                Ok(s) if crate::input::blank_reason(s).is_none() && machine_data(s).is_none() => {
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
        let policy = &*policy;
        let jobs = tickets.into_iter().zip(slots).map(|(ticket, slot)| {
            let vector = slot.map(|i| vectors[i].clone());
            async move {
                let started = Instant::now();
                let mut r = self.classify_prepared(&ticket, vector, None, started, options, policy).await;
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
        let policy = self.policy_for(options);
        let (vector, language) = match &ticket.text {
            Ok(s) if crate::input::blank_reason(s).is_none() && machine_data(s).is_none() => {
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
        self.classify_prepared(ticket, vector, language, started, options, &policy).await
    }

    async fn classify_prepared(
        &self,
        ticket: &Ticket,
        vector: Option<Result<Vec<f32>, String>>,
        language: Option<Assessment>,
        started: Instant,
        options: &ClassifyOptions,
        policy: &RoutePolicy,
    ) -> TicketResult {
        let done = |d: Decision, e: Option<&Evidence<'_>>, trace: LlmTrace| build::result(&ticket.id, d, e, trace, ms(started));
        let text = match &ticket.text {
            Err(e) => return done(Decision::failed(e.clone()), None, LlmTrace::default()),
            Ok(s) => s,
        };
        if let Some(why) = crate::input::blank_reason(text) {
            return done(Decision::failed(why), None, LlmTrace::default());
        }
        if let Some(reason) = machine_data(text) {
            return done(Decision::without_answer(Verdict::Review(reason)), None, LlmTrace::default());
        }
        let vector = match vector {
            Some(Ok(v)) => v,
            Some(Err(e)) => return done(Decision::failed(e), None, LlmTrace::default()),
            None => return done(Decision::failed("no embedding for this ticket"), None, LlmTrace::default()),
        };
        let mut e = match self.evidence(ticket, text, &vector, language, options, policy).await {
            Ok(e) => e,
            Err(why) => return done(Decision::failed(why), None, LlmTrace::default()),
        };
        let mut trace = LlmTrace::default();
        let Some(llm) = &self.llm else {
            return done(decide::decide(&e, &LlmOutcome::NotAsked, None, ResultMethod::Knn), Some(&e), trace);
        };
        let arbiter = self.arbiter(options, e.k);
        if options.arbiter && arbiter.is_none() {
            if let Some(other) = self.fitted.as_ref().and_then(|f| f.arbiters.iter().find(|a| a.k == e.k)) {
                e.notes.push(format!(
                    "the collection's arbiter was fitted for model {:?}, not {:?}: the fixed rules decided (run triage calibrate --llm with this model)",
                    other.model,
                    llm.model()
                ));
            }
        }
        let outcome = match decide::shortcut(&e).filter(|_| options.shortcut && self.demonstrations == Demonstrations::Retrieved) {
            Some(threshold) => LlmOutcome::Shortcut { threshold },
            None => {
                let stages = self.stages(&e, options);
                crate::llm::for_ticket(self.ask_llm(&mut trace, llm.as_ref(), stages, &e)).await
            }
        };
        let d = decide::decide(&e, &outcome, arbiter, self.demonstrations.method());
        done(d, Some(&e), trace)
    }

    /// Retrieve, vote and judge; weigh the language.
    async fn evidence<'a>(
        &'a self,
        ticket: &Ticket,
        text: &'a str,
        vector: &[f32],
        language: Option<Assessment>,
        options: &ClassifyOptions,
        policy: &'a RoutePolicy,
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
        let (temperature, cap) = model.map_or((crate::knn::TEMPERATURE, 1.0), |m| (m.vote_temperature, m.vote_cap));
        let Some(vote) = vote_with(nearest, temperature, cap) else {
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
        let assessment = language.unwrap_or_else(|| lang::assess(text, self.coverage.as_deref()));
        Ok(Evidence {
            text,
            language: Language::from_assessment(assessment, model),
            vote,
            judgement,
            model,
            candidates,
            k,
            taxonomy,
            policy,
            notes: self.notes(k),
        })
    }
}
