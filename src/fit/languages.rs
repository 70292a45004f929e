//! Language trust fitted, not fixed: how right the neighbours were on the collection's
//! held-out examples in each language. The embedding model's coverage is a prior; where
//! the collection has held-out evidence in a language the model was not trained on, the
//! neighbours are trusted as far as that evidence supports: their confidence is bounded
//! by a lower bound of their held-out accuracy in that language ([`LanguageRecord::bound`]).
//! Languages with no evidence keep the fixed rule (the vote is not trusted).

use serde::{Deserialize, Serialize};

use super::routing::wilson_lower;

/// Fewest held-out examples in a language for its record to bound anything.
pub const MIN_EXAMPLES: usize = 10;
/// z of the one-sided lower bound on a language's held-out accuracy (90 %).
const Z: f64 = 1.2816;

/// The neighbours' held-out record in one language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageRecord {
    /// ISO 639-1 code.
    pub lang: String,
    pub held_out: usize,
    pub right: usize,
    /// Mean confidence the fit gave those examples (cross-fitted where it could be).
    pub mean_confidence: f64,
}

impl LanguageRecord {
    pub fn accuracy(&self) -> f64 {
        self.right as f64 / self.held_out.max(1) as f64
    }

    /// The most a confidence in this language may be: a lower bound of the held-out
    /// accuracy; `None` below [`MIN_EXAMPLES`].
    pub fn bound(&self) -> Option<f32> {
        (self.held_out >= MIN_EXAMPLES).then(|| wilson_lower(self.right, self.held_out, Z) as f32)
    }
}

/// Records per language of `(lang, right, confidence)` held-out results, most
/// examples first (ties by code).
pub fn tally<'a>(results: impl Iterator<Item = (Option<&'a str>, bool, f32)>) -> Vec<LanguageRecord> {
    let mut out: Vec<LanguageRecord> = Vec::new();
    for (lang, right, confidence) in results {
        let Some(lang) = lang else { continue };
        let i = match out.iter().position(|r| r.lang == lang) {
            Some(i) => i,
            None => {
                out.push(LanguageRecord { lang: lang.to_string(), held_out: 0, right: 0, mean_confidence: 0.0 });
                out.len() - 1
            }
        };
        let r = &mut out[i];
        r.held_out += 1;
        r.right += usize::from(right);
        r.mean_confidence += (f64::from(confidence) - r.mean_confidence) / r.held_out as f64;
    }
    out.sort_by(|a, b| b.held_out.cmp(&a.held_out).then(a.lang.cmp(&b.lang)));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_count_by_language_and_bound_only_with_evidence() {
        let rows: Vec<(Option<&str>, bool, f32)> = (0..40)
            .map(|i| (Some(if i % 4 == 0 { "de" } else { "en" }), i % 4 != 0 || i < 36, 0.9))
            .chain([(None, false, 0.5), (Some("fr"), true, 0.8)])
            .collect();
        let r = tally(rows.into_iter());
        assert_eq!(r.iter().map(|x| x.lang.as_str()).collect::<Vec<_>>(), ["en", "de", "fr"]);
        let de = &r[1];
        assert_eq!((de.held_out, de.right), (10, 9));
        let b = de.bound().unwrap();
        assert!(b < 0.9 && b > 0.6, "{b}");
        assert!(r[2].bound().is_none(), "one French example is no evidence");
        assert!((r[0].mean_confidence - 0.9).abs() < 1e-6);
    }
}
