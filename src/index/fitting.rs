//! Fitted from the start: once a collection has examples enough, `index` (and `import`)
//! fit its neighbours' side right away ([`crate::calibrate`]: calibration, head,
//! out-of-scope score, "no close example" checks, precision thresholds), so the first
//! `classify` after `index` already reports confidences measured on the collection's
//! own examples. Settings are the collection's last fit's (else the defaults); fitted
//! arbiters are kept.

use serde::Serialize;

use crate::calibrate::{self, stored_fit, CalibrateError, HeadSettings, MIN_EXAMPLES};
use crate::embed::Embedder;
use crate::lang::Coverage;
use crate::progress::Progress;
use crate::store::ExampleStore;

/// Share of examples in languages the model does not cover above which `index` warns.
pub const UNCOVERED_WARNING_SHARE: f64 = 0.2;

/// What fitting after indexing did.
#[derive(Debug, Clone, Serialize)]
pub struct FitSummary {
    /// Held-out examples the fit was measured on (0: not fitted).
    pub held_out: usize,
    pub accuracy: Option<f64>,
    pub calibrated_ece: Option<f64>,
    pub calibration: Option<String>,
    pub seconds: f64,
    /// Why it was not fitted, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Fit `collection` with its last fit's settings (else the defaults).
pub async fn fit_collection(
    store: &dyn ExampleStore,
    embedder: Option<&dyn Embedder>,
    collection: &str,
    progress: Progress<'_>,
) -> Result<FitSummary, CalibrateError> {
    let started = std::time::Instant::now();
    let meta = store.require_meta(collection).await?;
    let last = stored_fit(&meta);
    let settings = last.as_ref().map(|f| f.neighbours.settings.clone()).unwrap_or_default();
    let head = last.as_ref().map_or_else(HeadSettings::default, |f| HeadSettings {
        enabled: f.neighbours.head_c.is_some(),
        c: f.neighbours.head_c.unwrap_or(calibrate::HEAD_C),
    });
    match calibrate::calibrate_collection(store, embedder, collection, &settings, &head, None, progress).await {
        Ok(m) => Ok(FitSummary {
            held_out: m.stats.held_out,
            accuracy: Some(m.stats.mixed_accuracy),
            calibrated_ece: Some(m.stats.calibrated_ece),
            calibration: Some(m.calibration.clone()),
            seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            note: None,
        }),
        Err(CalibrateError::TooFew { examples, .. }) => Ok(FitSummary {
            held_out: 0,
            accuracy: None,
            calibrated_ece: None,
            calibration: None,
            seconds: 0.0,
            note: Some(format!(
                "not fitted: {examples} examples, fitting needs {MIN_EXAMPLES}; until then confidences are the raw vote, shrunk"
            )),
        }),
        Err(e) => Err(e),
    }
}

/// One line for the terminal.
pub fn describe(f: &FitSummary) -> String {
    match (&f.note, f.accuracy, f.calibrated_ece) {
        (Some(note), _, _) => note.clone(),
        (None, Some(acc), Some(ece)) => format!(
            "fitted on {} held-out examples: accuracy {:.3}, calibration error (ECE) {:.3}; {} ({:.2} s)",
            f.held_out,
            acc,
            ece,
            f.calibration.as_deref().unwrap_or("raw confidence"),
            f.seconds
        ),
        _ => format!("fitted ({:.2} s)", f.seconds),
    }
}

/// The share of `langs` (one per example; `None` where it could not be told) that
/// `coverage` does not cover, and the languages, most frequent first.
pub fn uncovered(langs: &[Option<String>], coverage: Option<&Coverage>) -> (f64, Vec<(String, usize)>) {
    let Some(c) = coverage.filter(|c| !c.languages.is_empty()) else { return (0.0, Vec::new()) };
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in langs.iter().flatten().filter(|l| !c.covers(l)) {
        match counts.iter_mut().find(|(x, _)| x == l) {
            Some(e) => e.1 += 1,
            None => counts.push((l.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let n: usize = counts.iter().map(|c| c.1).sum();
    (n as f64 / langs.len().max(1) as f64, counts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_languages_are_counted_against_the_model() {
        let en = Coverage { languages: vec!["en".into()], words: Default::default() };
        let langs: Vec<Option<String>> =
            ["en", "de", "de", "es", "en"].iter().map(|s| Some(s.to_string())).chain([None]).collect();
        let (share, counts) = uncovered(&langs, Some(&en));
        assert!((share - 0.5).abs() < 1e-9, "{share}");
        assert_eq!(counts, vec![("de".to_string(), 2), ("es".to_string(), 1)]);
        assert_eq!(uncovered(&langs, None).0, 0.0, "unknown coverage: nothing to warn about");
    }
}
