//! The LLM side of a classification: the request(s) built from the evidence (which
//! examples are shown, the label shortlist, two-stage prompts), one repair attempt on an
//! invalid answer, and the second stage's subcategory.

use crate::example::ScoredExample;
use crate::guard::{parse_answer, parse_category_answer, parse_subcategory_answer};
use crate::knn::select_diverse;
use crate::llm::{LlmClient, LlmRequest, LlmResponse, Usage};
use crate::prompt::{build_category_request, build_request, build_subcategory_request, repair_request, shortlist_labels};
use crate::result::{ReviewKind, ReviewReason};
use crate::taxonomy::label_key;

use super::decide::{self, LlmOutcome};
use super::evidence::Evidence;
use super::{Classifier, ClassifyOptions, Demonstrations};

/// The LLM requests for one ticket: the (stage 1) request, and with two-stage prompts
/// the examples stage 2 picks the chosen category's demonstrations from (at most `k`).
pub(super) struct Stages {
    pub request: LlmRequest,
    pub subcategory: Option<Vec<ScoredExample>>,
    pub k: usize,
}

/// What asking cost: the model, every request sent (repairs and the subcategory request
/// included) and their tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmTrace {
    pub model: Option<String>,
    pub calls: u32,
    pub usage: Usage,
}

impl LlmTrace {
    fn count(&mut self, response: &LlmResponse) {
        self.usage += response.usage;
    }
}

impl Classifier {
    /// The LLM request(s) for a ticket.
    pub(super) fn stages(&self, e: &Evidence<'_>, options: &ClassifyOptions) -> Stages {
        let taxonomy = &self.meta.taxonomy;
        let two_stage = options.two_stage && taxonomy.has_subcategories();
        let build = if two_stage { build_category_request } else { build_request };
        // Out-of-scope examples are never shown: their label is not an answer.
        let in_scope: Vec<ScoredExample> =
            e.candidates.iter().filter(|c| !taxonomy.is_out_of_scope(&c.example.label)).cloned().collect();
        let (request, pool) = match &self.demonstrations {
            Demonstrations::Retrieved => {
                let preferred = e.judgement.distribution.iter().map(|(l, _)| l.as_str());
                let labels = preferred.chain(in_scope.iter().map(|c| c.example.label.as_str()));
                let short = shortlist_labels(taxonomy, labels, options.max_prompt_labels);
                (build(short.as_ref().unwrap_or(taxonomy), &select_diverse(&in_scope, e.k), e.text), in_scope)
            }
            Demonstrations::None => (build(taxonomy, &[], e.text), Vec::new()),
            Demonstrations::Fixed(d) => (build(taxonomy, d, e.text), d.clone()),
        };
        Stages { request, subcategory: two_stage.then_some(pool), k: e.k }
    }

    /// Send `request`; when the reply does not pass `parse`, send one repair request.
    /// Counts every request and its tokens into `trace`. `Err` is the review reason.
    async fn ask<T>(
        &self,
        trace: &mut LlmTrace,
        llm: &dyn LlmClient,
        request: &LlmRequest,
        parse: impl Fn(&str, bool) -> Result<T, Vec<String>>,
    ) -> Result<(T, LlmResponse), ReviewReason> {
        tracing::debug!(prompt = %request.messages[0].content, "LLM request");
        let llm_error = |e: crate::llm::LlmError| ReviewReason::new(ReviewKind::Llm(e.kind()), e.to_string());
        // Every HTTP request sent, retries and failed ones included (a cached answer sends none).
        let sent = crate::llm::ticket_requests();
        let first = llm.complete(request).await;
        trace.calls += crate::llm::ticket_requests() - sent;
        let first = first.map_err(llm_error)?;
        trace.count(&first);
        match parse(&first.text, false) {
            Ok(a) => Ok((a, first)),
            Err(problems) => {
                tracing::debug!(?problems, "invalid answer, asking once more");
                let repair = repair_request(request, &first.text, &problems);
                let sent = crate::llm::ticket_requests();
                let second = llm.complete(&repair).await;
                trace.calls += crate::llm::ticket_requests() - sent;
                let second = second.map_err(llm_error)?;
                trace.count(&second);
                match parse(&second.text, true) {
                    Ok(a) => Ok((a, second)),
                    Err(p) => Err(ReviewReason::new(
                        ReviewKind::InvalidAnswer,
                        format!("after one repair attempt: {}", p.join("; ")),
                    )),
                }
            }
        }
    }

    /// Ask the LLM (both stages with two-stage prompts). With two stages, the second
    /// request (the chosen category's subcategories) only decides the subcategory:
    /// when it fails, the category stands, the subcategory of the nearest example of
    /// that category is the suggestion and the ticket goes to review.
    pub(super) async fn ask_llm(
        &self,
        trace: &mut LlmTrace,
        llm: &dyn LlmClient,
        stages: Stages,
        e: &Evidence<'_>,
    ) -> LlmOutcome {
        let taxonomy = &self.meta.taxonomy;
        trace.model = Some(llm.model().to_string());
        let answer = if stages.subcategory.is_some() {
            self.ask(trace, llm, &stages.request, |t, last| parse_category_answer(t, taxonomy, last)).await
        } else {
            self.ask(trace, llm, &stages.request, |t, last| parse_answer(t, taxonomy, last)).await
        };
        let (mut answer, response) = match answer {
            Ok(a) => a,
            Err(reason) => return LlmOutcome::Failed(reason),
        };
        let label_probability = decide::label_probability(&response);
        let mut subcategory_failure = None;
        let sub_request = stages
            .subcategory
            .as_deref()
            .and_then(|pool| build_subcategory_request(taxonomy, &answer.category, pool, stages.k, e.text));
        if let (Some(request), Some(pool)) = (sub_request, stages.subcategory.as_deref()) {
            let category = answer.category.clone();
            match self.ask(trace, llm, &request, |t, _| parse_subcategory_answer(t, taxonomy, &category)).await {
                Ok((sub, _)) => answer.merge_subcategory(sub),
                Err(reason) => {
                    let key = label_key(&category);
                    answer.subcategory =
                        pool.iter().find(|x| label_key(&x.example.label) == key).and_then(|x| x.example.subcategory.clone());
                    let suggested = match &answer.subcategory {
                        Some(s) => format!("; suggested {s}, the nearest {category} example's"),
                        None => String::new(),
                    };
                    subcategory_failure =
                        Some(ReviewReason::new(ReviewKind::Subcategory, format!("{reason}{suggested}")));
                }
            }
        }
        LlmOutcome::Answered { answer, label_probability, subcategory_failure }
    }
}
