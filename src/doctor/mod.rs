//! The corpus doctor (`triage doctor`, `GET /v1/collections/{name}/doctor`): finds the
//! examples and labels that are wrong or weak before they route tickets. Pure: it reads
//! the examples, their vectors and the head's out-of-fold probabilities handed to it
//! (gathered from the store by [`crate::calibrate::doctor`]); no store, no embedder.
//!
//! - [`mislabeled`]: likely mislabeled examples, ranked, with a suggested label and the
//!   evidence (out-of-fold head probability, nearest examples);
//! - conflicting duplicates: the same or nearly the same text under different labels;
//! - [`labels`]: labels too small to learn, names that differ by case, spacing or one
//!   character, the pairs the held-out predictions confuse most;
//! - [`text`]: examples in languages the model does not cover, empty or junk examples;
//! - [`report`]: the terminal summary and the HTML page; [`review`]: the review file a
//!   person edits (keep / relabel / delete per row).

pub mod labels;
pub mod mislabeled;
pub mod report;
pub mod review;
pub mod similarity;
pub mod text;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::example::Example;
use crate::fit::neighbours::LabelSet;
use crate::lang::Coverage;
pub use labels::{ConfusedPair, SimilarLabels, SmallLabel};
use mislabeled::Witnesses;
use similarity::{ScanSettings, NO_SIMILARITY};

/// Characters of an example's text shown in findings.
const SHOWN_CHARS: usize = 240;

/// What the doctor looks for and how much it lists.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Settings {
    /// Labels with fewer examples are listed as small.
    pub min_label_examples: usize,
    /// Nearest examples per label averaged into the neighbours' evidence.
    pub per_label: usize,
    /// Nearest examples shown as evidence for a mislabeled example.
    pub shown_neighbours: usize,
    /// Cosine similarity from which two examples with different labels are compared as
    /// near-duplicates (their words must agree too, see [`NEAR_DUPLICATE_WORDS`]).
    pub duplicate_similarity: f32,
    /// List this many of the ranked examples instead of confident learning's estimate.
    pub top: Option<usize>,
    /// Confused pairs listed.
    pub confused_pairs: usize,
    /// Rank by the head's out-of-fold doubt alone (the benchmark's baseline), not by
    /// both witnesses.
    pub head_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { min_label_examples: 10, per_label: 3, shown_neighbours: 5, duplicate_similarity: 0.95, top: None, confused_pairs: 10, head_only: false }
    }
}

/// Share of words two texts must have in common (Jaccard over lowercase words) to be
/// near-duplicates besides their similarity: "I cannot log in" and "I cannot log out"
/// are close in the embedding but say different things.
pub const NEAR_DUPLICATE_WORDS: f64 = 0.8;

/// What the doctor is handed.
pub struct Collection<'a> {
    pub name: &'a str,
    pub examples: &'a [Example],
    /// Row-major, `dim` per example, in the order of `examples`.
    pub vectors: &'a [f32],
    pub dim: usize,
    pub labels: &'a LabelSet,
    /// `y[i]`: the index of example i's label in `labels`.
    pub y: &'a [u32],
    /// Out-of-fold head probabilities per example, when a head could be fitted.
    pub head: Option<&'a [Vec<f32>]>,
    /// Why there is no head, when there is none.
    pub head_note: Option<String>,
    /// The taxonomy's category and out-of-scope names (for spellings and empty labels).
    pub taxonomy_labels: Vec<String>,
}

/// A nearby example shown as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Neighbour {
    pub id: String,
    pub label: String,
    pub similarity: f32,
}

/// Why an example is listed as mislabeled.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MislabelEvidence {
    /// Out-of-fold head probability of the example's label, and of the suggested one.
    pub head_probability: Option<f32>,
    pub head_probability_suggested: Option<f32>,
    /// Mean similarity of the nearest other examples of the example's label, and of the
    /// suggested label's.
    pub label_similarity: Option<f32>,
    pub suggested_similarity: Option<f32>,
    pub nearest: Vec<Neighbour>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Mislabeled {
    pub id: String,
    pub label: String,
    pub suggested: String,
    /// Mean percentile rank of the witnesses (1 = most suspect of the collection).
    pub score: f64,
    /// 1 = most suspect.
    pub rank: usize,
    pub text: String,
    pub evidence: MislabelEvidence,
}

/// One member of a conflicting duplicate pair.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DuplicateMember {
    pub id: String,
    pub label: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConflictingDuplicate {
    pub examples: [DuplicateMember; 2],
    pub similarity: f32,
    /// Share of words in common.
    pub word_overlap: f64,
    /// The texts are equal once case and spacing are ignored.
    pub same_text: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TextFinding {
    pub id: String,
    pub label: String,
    /// The detected language (`uncovered_language`) or why it is junk (`junk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub text: String,
}

/// How the evidence was gathered.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Method {
    /// A head was fitted out of fold (else the neighbours alone judge).
    pub head: bool,
    pub head_note: Option<String>,
    pub per_label_neighbours: usize,
    /// Confident learning's estimate of the mislabeled examples (listed unless `top`).
    pub mislabeled_estimate: usize,
    /// Examples ranked: those whose label has at least a head's minimum of examples,
    /// in a language the model covers.
    pub ranked: usize,
    /// Held-out accuracy, over the in-scope examples, of the predictions the confused
    /// pairs come from.
    pub held_out_accuracy: f64,
}

/// The doctor's report. The JSON contract: the arrays `mislabeled` (each with `id`,
/// `label`, `suggested`, `score`), `conflicting_duplicates`, `small_labels`,
/// `similar_labels`, `confused_pairs`, `uncovered_language` and `junk`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Diagnosis {
    pub collection: String,
    pub examples: usize,
    pub labels: usize,
    pub method: Method,
    pub mislabeled: Vec<Mislabeled>,
    pub conflicting_duplicates: Vec<ConflictingDuplicate>,
    pub small_labels: Vec<SmallLabel>,
    pub similar_labels: Vec<SimilarLabels>,
    pub confused_pairs: Vec<ConfusedPair>,
    pub uncovered_language: Vec<TextFinding>,
    pub junk: Vec<TextFinding>,
    pub settings: Settings,
}

fn shown(text: &str) -> String {
    crate::input::cap_chars(text.to_string(), SHOWN_CHARS)
}

fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn word_overlap(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

fn same_text(a: &str, b: &str) -> bool {
    a.split_whitespace().map(str::to_lowercase).eq(b.split_whitespace().map(str::to_lowercase))
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Examine a collection.
pub fn diagnose(c: &Collection<'_>, coverage: Option<&Coverage>, settings: &Settings) -> Diagnosis {
    let n = c.examples.len();
    let names = &c.labels.names;
    let nl = names.len();
    let head_min = crate::calibrate::MIN_HEAD_EXAMPLES;
    let scan = similarity::scan(
        c.vectors,
        c.dim,
        c.y,
        nl,
        &ScanSettings { per_label: settings.per_label, nearest: settings.shown_neighbours, pair_threshold: settings.duplicate_similarity },
    );
    let scanned = scan.nearest.len() == n;
    let mut counts = vec![0usize; nl];
    for &l in c.y {
        counts[l as usize] += 1;
    }
    let sims: Vec<f32> = if scanned { scan.label_sim.clone() } else { vec![NO_SIMILARITY; n * nl] };
    let w = Witnesses { y: c.y, labels: nl, head: c.head, label_sim: &sims };

    // Held-out predictions, as classification answers: the most likely in-scope label by
    // the combined evidence (an out-of-scope label is never an answer, as in eval's
    // confusion matrix). An out-of-scope example counts as right when an out-of-scope
    // label is the most likely of all (the product flags it).
    let oos = &c.labels.out_of_scope;
    let argmax = |m: &[f32], allowed: &dyn Fn(usize) -> bool| {
        m.iter().enumerate().filter(|(l, _)| allowed(*l)).max_by(|a, b| a.1.total_cmp(b.1)).map(|(l, _)| l)
    };
    let any_in_scope = oos.iter().any(|o| !o);
    let (mut predicted, mut right) = (Vec::with_capacity(n), vec![0usize; nl]);
    for i in 0..n {
        let m = w.combined(i);
        let answer = argmax(&m, &|l| !any_in_scope || !oos[l]).unwrap_or(0);
        let gold = c.y[i] as usize;
        let ok = if oos[gold] { argmax(&m, &|_| true).is_some_and(|l| oos[l]) } else { answer == gold };
        right[gold] += usize::from(ok);
        predicted.push(answer);
    }
    let in_scope: Vec<usize> = (0..n).filter(|&i| !oos[c.y[i] as usize]).collect();
    let in_scope_right = in_scope.iter().filter(|&&i| predicted[i] == c.y[i] as usize).count();
    let held_out_accuracy = if in_scope.is_empty() { 0.0 } else { round4(in_scope_right as f64 / in_scope.len() as f64) };

    // Text findings first: an example in a language the model does not cover is not
    // judged (its neighbours and head probabilities mean little).
    let languages: Vec<Option<String>> = c.examples.iter().map(|e| text::uncovered_language(&e.text, coverage)).collect();

    // Mislabeled: examples of labels large enough to judge, in covered languages, ranked.
    let judged: Vec<bool> =
        c.y.iter().zip(&languages).map(|(&l, lang)| counts[l as usize] >= head_min && nl >= 2 && lang.is_none()).collect();
    let ranked = if scanned || c.head.is_some() { mislabeled::rank(&w, &judged, settings.head_only) } else { Vec::new() };
    let estimate = match c.head {
        Some(h) => mislabeled::estimated_count(c.y, nl, h),
        None => {
            let shares: Vec<Vec<f32>> = (0..n).map(|i| w.neighbour_shares(i)).collect();
            mislabeled::estimated_count(c.y, nl, &shares)
        }
    };
    let listed = settings.top.unwrap_or(estimate).min(ranked.len());
    let sim_of = |i: usize, l: usize| -> Option<f32> {
        let v = sims[i * nl + l];
        (scanned && v > NO_SIMILARITY).then_some(v)
    };
    let mislabeled: Vec<Mislabeled> = ranked
        .iter()
        .take(listed)
        .enumerate()
        .map(|(r, s)| {
            let e = &c.examples[s.row];
            let own = c.y[s.row] as usize;
            let nearest = scan
                .nearest
                .get(s.row)
                .map(|near| {
                    near.iter()
                        .map(|&(j, sim)| Neighbour { id: c.examples[j].id.clone(), label: c.examples[j].label.clone(), similarity: sim })
                        .collect()
                })
                .unwrap_or_default();
            Mislabeled {
                id: e.id.clone(),
                label: e.label.clone(),
                suggested: names[s.suggested].clone(),
                score: round4(s.score),
                rank: r + 1,
                text: shown(&e.text),
                evidence: MislabelEvidence {
                    head_probability: c.head.map(|h| h[s.row][own]),
                    head_probability_suggested: c.head.map(|h| h[s.row][s.suggested]),
                    label_similarity: sim_of(s.row, own),
                    suggested_similarity: sim_of(s.row, s.suggested),
                    nearest,
                },
            }
        })
        .collect();

    // Conflicting duplicates: close pairs under different labels whose words agree.
    let mut conflicting_duplicates: Vec<ConflictingDuplicate> = scan
        .close_pairs
        .iter()
        .filter(|(i, j, _)| c.y[*i] != c.y[*j])
        .filter_map(|&(i, j, sim)| {
            let (a, b) = (&c.examples[i], &c.examples[j]);
            let overlap = word_overlap(&a.text, &b.text);
            let same = same_text(&a.text, &b.text);
            (same || overlap >= NEAR_DUPLICATE_WORDS).then(|| ConflictingDuplicate {
                examples: [a, b].map(|e| DuplicateMember { id: e.id.clone(), label: e.label.clone(), text: shown(&e.text) }),
                similarity: sim,
                word_overlap: round4(overlap),
                same_text: same,
            })
        })
        .collect();
    conflicting_duplicates.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.examples[0].id.cmp(&b.examples[0].id)));

    // Labels.
    let small_labels = labels::small_labels(names, &c.labels.out_of_scope, &counts, &right, settings.min_label_examples, head_min);
    let mut spellings: BTreeMap<String, usize> = c.taxonomy_labels.iter().map(|l| (l.clone(), 0)).collect();
    for e in c.examples {
        *spellings.entry(e.label.clone()).or_default() += 1;
    }
    let similar_labels = labels::similar_labels(&spellings);
    let confused_pairs = labels::confused_pairs(names, c.y, &predicted, settings.confused_pairs);

    // Text.
    let finding = |e: &Example, lang: Option<String>, reason: Option<String>| TextFinding {
        id: e.id.clone(),
        label: e.label.clone(),
        lang,
        reason,
        text: shown(&e.text),
    };
    let junk: Vec<TextFinding> =
        c.examples.iter().filter_map(|e| text::junk_reason(&e.text).map(|r| finding(e, None, Some(r)))).collect();
    let uncovered_language: Vec<TextFinding> =
        c.examples.iter().zip(languages).filter_map(|(e, l)| l.map(|l| finding(e, Some(l), None))).collect();

    Diagnosis {
        collection: c.name.to_string(),
        examples: n,
        labels: nl,
        method: Method {
            head: c.head.is_some(),
            head_note: c.head_note.clone(),
            per_label_neighbours: settings.per_label,
            mislabeled_estimate: estimate,
            ranked: ranked.len(),
            held_out_accuracy,
        },
        mislabeled,
        conflicting_duplicates,
        small_labels,
        similar_labels,
        confused_pairs,
        uncovered_language,
        junk,
        settings: settings.clone(),
    }
}
