//! The one top-level error that wraps each boundary's own.

use crate::embed::EmbedError;
use crate::llm::LlmError;
use crate::store::StoreError;
use crate::taxonomy::TaxonomyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error(transparent)]
    Calibrate(#[from] crate::calibrate::CalibrateError),
    /// Unusable input files or arguments.
    #[error("{0}")]
    Input(String),
    /// Contradictory or incomplete settings.
    #[error("{0}")]
    Config(String),
}
