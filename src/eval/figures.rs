//! Figures per method × model × k from an [`Evaluation`]'s runs (pooled over
//! repeats), from the per-ticket outcomes ([`super::metrics`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::metrics::{self, ClassStats, CoveragePoint, Outcome, ReliabilityBin};
use super::{outcome, Evaluation, Method, Run};
use crate::result::ResultMethod;
use crate::taxonomy::label_key;

/// Calibration bins for ECE and the reliability diagram.
pub const BINS: usize = 10;

/// Language figures of one run (see [`MethodReport::languages`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LangFigures {
    pub tickets: usize,
    pub detected: usize,
    pub auto_routed: usize,
    pub correct: usize,
}

/// The figures of one method × model × k (pooled over repeats).
#[derive(Debug, Clone, Serialize)]
pub struct MethodReport {
    pub method: &'static str,
    pub model: Option<String>,
    pub k: usize,
    pub runs: usize,
    pub tickets: usize,
    pub accuracy: Option<f64>,
    /// In-scope tickets with the right label and not flagged out of scope.
    pub in_scope_accuracy: Option<f64>,
    /// In-scope label accuracy, out-of-scope flags ignored.
    pub in_scope_accuracy_without_abstention: Option<f64>,
    /// Out-of-scope tickets flagged for review (any reason).
    pub oos_recall: Option<f64>,
    /// Out-of-scope tickets flagged `out_of_scope` specifically.
    pub oos_flag_recall: Option<f64>,
    /// In-scope tickets flagged `out_of_scope`.
    pub in_scope_abstention_rate: Option<f64>,
    pub macro_f1: Option<f64>,
    pub urgency_accuracy: Option<f64>,
    /// In-scope tickets with a gold subcategory whose category and subcategory are both right.
    pub subcategory_accuracy: Option<f64>,
    pub ece: Option<f64>,
    /// ECE over in-scope tickets only (out-of-scope tickets have no right label, so
    /// any confidence they get counts against `ece`).
    pub in_scope_ece: Option<f64>,
    pub brier: Option<f64>,
    pub needs_review_rate: Option<f64>,
    pub selective_accuracy: Option<f64>,
    pub consistency: Option<f64>,
    pub gold_in_top_k: Option<f64>,
    /// LLM requests the method made (cache hits included: what it costs uncached).
    pub llm_calls: u64,
    /// Of those, requests actually sent in this run (not answered from the cache).
    pub llm_calls_sent: u64,
    pub cache_hits: u64,
    pub llm_calls_per_ticket: f64,
    /// LLM methods: share of tickets answered by the vote without calling the LLM
    /// (`method: knn-shortcut`); `None` for knn.
    pub llm_skip_rate: Option<f64>,
    /// Whether the collection's calibration (fitted at this k) was applied.
    pub calibrated: bool,
    /// The neighbours alone (vote and fitted head) on the same tickets: label accuracy
    /// over in-scope tickets. Compare with `in_scope_accuracy_without_abstention`.
    pub vote_accuracy: Option<f64>,
    /// LLM methods: the model's own answers, before the neighbours are weighed
    /// (invalid answers count as wrong), label accuracy over the in-scope tickets it
    /// was asked about (tickets skipped by the knn-shortcut are not among them).
    pub llm_answer_accuracy: Option<f64>,
    /// Tickets the LLM was asked about, and the share of those answered validly.
    pub llm_asked: usize,
    pub llm_valid_rate: Option<f64>,
    /// Tickets not sent to review, and their label accuracy (`selective_accuracy`).
    pub auto_routed_share: Option<f64>,
    pub auto_routed_accuracy: Option<f64>,
    /// In-scope tickets sent to review for any reason (the cost side of `oos_recall`).
    pub in_scope_review_rate: Option<f64>,
    /// Whether results were decided by an arbiter fitted on this model's answers.
    pub arbiter: bool,
    /// Per language of the test file's `lang` field: tickets, how often the detected
    /// language was right, how many were auto-routed, and accuracy.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub languages: BTreeMap<String, LangFigures>,
    /// `rag` rows when a `rag-always` row with the same model and k exists: this
    /// row's accuracy minus that row's, the accuracy effect of the knn-shortcut.
    pub accuracy_delta_vs_always: Option<f64>,
    pub prompt_tokens_per_ticket: f64,
    pub completion_tokens_per_ticket: f64,
    /// For all `llm_calls` and tokens, at the configured prices.
    pub cost: f64,
    pub cost_per_ticket: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    /// Tickets whose result carries an error (LLM unavailable, ...).
    pub errors: usize,
    /// Tickets where the LLM answer was unusable and the neighbours' vote was kept.
    pub llm_fallbacks: usize,
    pub seconds: f64,
    pub per_class: BTreeMap<String, ClassStats>,
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    pub reliability: Vec<ReliabilityBin>,
    pub coverage: Vec<CoveragePoint>,
}

pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn r4(x: Option<f64>) -> Option<f64> {
    x.map(round4)
}

pub fn method_report(eval: &Evaluation, run: &Run) -> MethodReport {
    let tickets = &eval.tickets;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut urgency = Vec::new();
    let mut subcategory = Vec::new();
    let mut in_top_k = Vec::new();
    let mut latencies = Vec::new();
    let (mut prompt, mut completion, mut errors, mut fallbacks, mut shortcuts) = (0u64, 0u64, 0usize, 0usize, 0usize);
    let (mut vote, mut own, mut valid, mut arbiter) = (Vec::new(), Vec::new(), Vec::new(), false);
    let mut langs: BTreeMap<String, LangFigures> = BTreeMap::new();
    for results in &run.results {
        for (t, r) in tickets.iter().zip(results) {
            outcomes.push(outcome(t, r));
            if let Some(g) = &t.urgency {
                urgency.push(r.urgency.as_deref().map(label_key) == Some(label_key(g)));
            }
            if let Some(g) = t.subcategory.as_ref().filter(|_| !t.is_oos) {
                let category_right = r.category.as_deref().map(label_key) == Some(label_key(&t.label));
                subcategory.push(category_right && r.subcategory.as_deref().map(label_key) == Some(label_key(g)));
            }
            if !t.is_oos {
                in_top_k.push(r.neighbors.iter().any(|n| label_key(&n.label) == label_key(&t.label)));
            }
            latencies.push(r.latency_ms);
            prompt += r.usage.prompt_tokens;
            completion += r.usage.completion_tokens;
            errors += usize::from(r.error.is_some());
            fallbacks += usize::from(r.method == ResultMethod::KnnFallback);
            shortcuts += usize::from(r.method == ResultMethod::KnnShortcut);
            if !t.is_oos {
                let right = |l: Option<&str>| l.map(label_key) == Some(label_key(&t.label));
                vote.push(right(r.neighbours.as_ref().and_then(|n| n.category.as_deref())));
                if let Some(a) = &r.llm_answer {
                    own.push(right(a.category.as_deref()));
                }
            }
            if let Some(a) = &r.llm_answer {
                valid.push(a.category.is_some());
            }
            arbiter |= r.fit.as_ref().is_some_and(|f| f.arbiter.is_some());
            if let Some(g) = &t.lang {
                let e = langs.entry(g.clone()).or_default();
                e.tickets += 1;
                e.detected += usize::from(r.lang.as_deref() == Some(g.as_str()));
                e.auto_routed += usize::from(!r.needs_review);
                e.correct += usize::from(outcome(t, r).correct());
            }
        }
    }
    let points: Vec<metrics::Point> = outcomes.iter().map(|o| (o.confidence, o.label_correct())).collect();
    let per_class: BTreeMap<String, ClassStats> = metrics::per_class(&outcomes)
        .into_iter()
        .map(|(k, c)| {
            (k, ClassStats { precision: round4(c.precision), recall: round4(c.recall), f1: round4(c.f1), support: c.support })
        })
        .collect();
    let labels_per_run: Vec<Vec<Option<String>>> =
        run.results.iter().map(|rs| rs.iter().map(|r| r.category.clone()).collect()).collect();
    let n = outcomes.len().max(1) as f64;
    let llm_calls = run.cache_hits + run.llm_calls_sent;
    let cost = eval.config.prices.cost(llm_calls, prompt, completion);
    MethodReport {
        method: run.method.name(),
        model: run.model.clone(),
        k: run.k,
        runs: run.results.len(),
        tickets: tickets.len(),
        accuracy: r4(metrics::accuracy(&outcomes)),
        in_scope_accuracy: r4(metrics::in_scope_accuracy(&outcomes)),
        in_scope_accuracy_without_abstention: r4(metrics::in_scope_accuracy_without_abstention(&outcomes)),
        oos_recall: r4(metrics::oos_recall(&outcomes)),
        oos_flag_recall: r4(metrics::oos_flag_recall(&outcomes)),
        in_scope_abstention_rate: r4(metrics::in_scope_abstention_rate(&outcomes)),
        macro_f1: r4(metrics::macro_f1(&metrics::per_class(&outcomes))),
        urgency_accuracy: r4(metrics::share(urgency)),
        subcategory_accuracy: r4(metrics::share(subcategory)),
        ece: r4(metrics::ece(&points, BINS)),
        in_scope_ece: r4(metrics::ece(
            &outcomes.iter().filter(|o| o.in_scope).map(|o| (o.confidence, o.label_correct())).collect::<Vec<_>>(),
            BINS,
        )),
        brier: r4(metrics::brier(&points)),
        needs_review_rate: r4(metrics::needs_review_rate(&outcomes)),
        selective_accuracy: r4(metrics::selective_accuracy(&outcomes)),
        consistency: r4(metrics::consistency(&labels_per_run)),
        gold_in_top_k: r4(metrics::share(in_top_k)),
        llm_calls,
        llm_calls_sent: run.llm_calls_sent,
        cache_hits: run.cache_hits,
        llm_calls_per_ticket: round4(llm_calls as f64 / n),
        llm_skip_rate: run.method.needs_llm().then(|| round4(shortcuts as f64 / n)),
        calibrated: run.calibrated,
        accuracy_delta_vs_always: None,
        vote_accuracy: r4(metrics::share(vote)),
        llm_answer_accuracy: r4(metrics::share(own.iter().copied())),
        llm_asked: valid.len(),
        llm_valid_rate: r4(metrics::share(valid)),
        auto_routed_share: r4(metrics::needs_review_rate(&outcomes).map(|x| 1.0 - x)),
        auto_routed_accuracy: r4(metrics::selective_accuracy(&outcomes)),
        in_scope_review_rate: r4(metrics::share(outcomes.iter().filter(|o| o.in_scope).map(|o| o.needs_review))),
        arbiter,
        languages: langs,
        prompt_tokens_per_ticket: round4(prompt as f64 / n),
        completion_tokens_per_ticket: round4(completion as f64 / n),
        cost: round4(cost * 100.0) / 100.0,
        cost_per_ticket: (cost / n * 1e8).round() / 1e8,
        latency_ms_p50: metrics::percentile(&latencies, 50.0),
        latency_ms_p95: metrics::percentile(&latencies, 95.0),
        errors,
        llm_fallbacks: fallbacks,
        seconds: run.seconds,
        per_class,
        confusion: metrics::confusion(&outcomes),
        reliability: metrics::reliability(&points, BINS)
            .into_iter()
            .map(|b| ReliabilityBin { mean_confidence: r4(b.mean_confidence), accuracy: r4(b.accuracy), ..b })
            .collect(),
        coverage: metrics::coverage_curve(&points, &metrics::default_thresholds())
            .into_iter()
            .map(|c| CoveragePoint { accuracy: r4(c.accuracy), coverage: round4(c.coverage), ..c })
            .collect(),
    }
}

/// Fill `accuracy_delta_vs_always` of `rag` rows from the matching `rag-always` rows.
pub fn with_shortcut_effect(mut rows: Vec<MethodReport>) -> Vec<MethodReport> {
    let always: Vec<(Option<String>, usize, Option<f64>)> =
        rows.iter().filter(|r| r.method == Method::RagAlways.name()).map(|r| (r.model.clone(), r.k, r.accuracy)).collect();
    for r in rows.iter_mut().filter(|r| r.method == Method::Rag.name()) {
        if let Some((_, _, Some(a))) = always.iter().find(|(m, k, _)| *m == r.model && *k == r.k) {
            r.accuracy_delta_vs_always = r.accuracy.map(|x| round4(x - a));
        }
    }
    rows
}


/// One line of the report's opening story for a model and k: the model alone, the
/// model with retrieved examples, the neighbours alone, and the combination, all as
/// label accuracy over in-scope tickets so that they compare.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoryRow {
    pub model: Option<String>,
    pub k: usize,
    /// `zero-shot`: the model's own answers without examples.
    pub model_alone: Option<f64>,
    /// `rag-always` (else `rag`): the model's own answers with the retrieved examples.
    pub model_with_retrieval: Option<f64>,
    /// The neighbours' vote (and fitted head).
    pub neighbours: Option<f64>,
    /// The final answers of `rag` (else `rag-always`, else `knn`).
    pub combined: Option<f64>,
    pub combined_method: &'static str,
    pub auto_routed_share: Option<f64>,
    pub auto_routed_accuracy: Option<f64>,
    pub llm_calls_per_ticket: f64,
    pub arbiter: bool,
}

/// The story rows: one per model and k with an LLM run, else one per k of `knn`.
pub fn story(rows: &[MethodReport]) -> Vec<StoryRow> {
    let find = |m: Method, model: &Option<String>, k: usize| {
        rows.iter().find(|r| r.method == m.name() && r.k == k && (m == Method::Knn || r.model == *model))
    };
    let mut keys: Vec<(Option<String>, usize)> = Vec::new();
    for r in rows {
        let key = (r.model.clone(), r.k);
        if !keys.contains(&key) && (r.model.is_some() || !rows.iter().any(|x| x.model.is_some() && x.k == r.k)) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(model, k)| {
            let with = find(Method::RagAlways, &model, k).or_else(|| find(Method::Rag, &model, k));
            let combined = find(Method::Rag, &model, k)
                .or_else(|| find(Method::RagAlways, &model, k))
                .or_else(|| find(Method::Knn, &model, k));
            let neighbours = rows.iter().filter(|r| r.k == k).find_map(|r| r.vote_accuracy);
            StoryRow {
                model_alone: find(Method::ZeroShot, &model, k).and_then(|r| r.llm_answer_accuracy),
                model_with_retrieval: with.and_then(|r| r.llm_answer_accuracy),
                neighbours,
                combined: combined.and_then(|r| r.in_scope_accuracy_without_abstention),
                combined_method: combined.map_or("–", |r| r.method),
                auto_routed_share: combined.and_then(|r| r.auto_routed_share),
                auto_routed_accuracy: combined.and_then(|r| r.auto_routed_accuracy),
                llm_calls_per_ticket: combined.map_or(0.0, |r| r.llm_calls_per_ticket),
                arbiter: combined.is_some_and(|r| r.arbiter),
                model,
                k,
            }
        })
        .collect()
}
