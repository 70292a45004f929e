//! ticket-triage: classify support tickets into your own taxonomy with retrieved
//! few-shot examples.
//!
//! Module map (where each part of the pipeline lives):
//! - [`taxonomy`]: the versioned config (categories, urgency scale, rules, threshold)
//! - [`corpus`], [`index`]: reading example files and indexing them
//! - [`embed`]: the `Embedder` role (fastembed on its own thread)
//! - [`store`]: the `ExampleStore` role (Qdrant Edge embedded, Qdrant server)
//! - [`knn`]: the neighbours' vote and label-diverse demonstrations
//! - [`fit`]: models fitted on the collection's own examples (logistic head, isotonic
//!   calibration, the neighbours' mixture, the LLM-vs-neighbours arbiter); pure
//! - [`lang`]: the ticket's language and whether the embedding model covers it
//! - [`prompt`]: system prompt, demonstrations, fenced ticket, answer schema
//! - [`llm`]: the `LlmClient` role (OpenAI-compatible, Anthropic), retries
//! - [`guard`]: answer validation and review routing rules
//! - [`fields`]: which input columns hold what (texts joined from several fields, missing columns, did you mean)
//! - [`input`]: input text checks (invisible-only text, text fields that must be strings)
//! - [`calibrate`]: fitting from the store: held-out votes, cross-fitted head, LLM answers
//! - [`doctor`]: the corpus doctor (likely mislabeled examples, conflicting duplicates, weak labels, junk); pure
//! - [`provenance`]: where every example came from (file, API key, helpdesk correction, import), when, taxonomy version
//! - [`review`]: the review queue of flagged results (a companion collection per collection), resolved once
//! - [`curate`]: applying a person's decisions (the doctor's review file) to stored examples
//! - [`secondary`]: several issues in one ticket (LLM answer checks, neighbours' runner-ups, priority)
//! - [`classifier`]: the pipeline that ties them together; [`result`]: what it returns
//! - [`eval`]: accuracy comparison runs (metrics, orchestration, reports)
//! - [`serve`]: the HTTP classification API (`triage serve`)
//! - [`helpdesk`]: helpdesk integration both ways (`triage pull`, write-back, agents' corrections)
//! - [`config`], [`cli`], [`output`]: flags to settings, commands, result writers
//! - [`options`]: the classification options (k, review threshold, filter), checked once for every surface
//! - [`stats`]: shares, percentiles, quantiles, ECE shared by evaluation and fitting
//! - [`progress`]: the progress callback of long library steps (indexing, calibration)
//! - [`bench`]: in-process latency measurement behind the hidden `triage bench-latency`
#![deny(clippy::unwrap_used)]

pub mod calibrate;
pub mod bench;
pub mod classifier;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod curate;
pub mod doctor;
pub mod embed;
pub mod eval;
mod error;
pub mod example;
pub mod fields;
pub mod fit;
pub mod guard;
pub mod helpdesk;
pub mod index;
pub mod input;
pub mod knn;
pub mod lang;
pub mod llm;
pub mod options;
pub mod output;
pub mod progress;
pub mod prompt;
pub mod provenance;
pub mod review;
pub mod result;
pub mod secondary;
pub mod serve;
pub mod stats;
pub mod store;
pub mod taxonomy;

pub use classifier::{Classifier, ClassifyOptions, Demonstrations, Ticket};
pub use result::{ResultMethod, ReviewKind, ReviewReason, TicketResult};
pub use error::Error;
pub use example::{Example, ScoredExample};
pub use taxonomy::Taxonomy;
