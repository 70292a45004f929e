//! "No close example": a ticket unlike every example of the collection is not routed,
//! whatever its neighbours vote. Two checks, each judged against the collection's own
//! held-out examples rather than a fixed similarity:
//!
//! - **Distant**: the ticket's nearest example is less similar than the [`QUANTILE`]
//!   quantile of the held-out examples' similarity to their nearest other example
//!   (texts from another domain: a recipe given to a SaaS collection).
//! - **Noise-like**: the collection's own texts are scrambled into noise (random
//!   characters, word salad from its vocabulary, shuffled characters, identifiers,
//!   format strings, paths: [`noise_texts`]), embedded at fit time, and kept as anchors.
//!   A ticket's margin is its nearest-example similarity minus its nearest-anchor
//!   similarity; below the [`QUANTILE`] quantile of the held-out examples' margins, it
//!   sits with the noise (random keys, lines of a binary, `%s` strings).
//!
//! Each check flags about [`QUANTILE`] of the collection's real tickets by construction;
//! that is their cost, measured and reported by the fit. Measured in docs/accuracy.md
//! ("No close example").

use serde::{Deserialize, Serialize};

use super::encoding::{decode_f32, encode_f32};
use super::judgement::Far;
use crate::stats::quantile;

/// Share of held-out examples each check may flag.
pub const QUANTILE: f64 = 0.01;
/// Noise texts embedded per fit.
pub const NOISE_TEXTS: usize = 240;
/// Fewest held-out examples for the checks.
pub const MIN_POINTS: usize = 20;

/// Noise anchors: `rows` vectors of `dim` floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AnchorsRepr", into = "AnchorsRepr")]
pub struct Anchors {
    dim: usize,
    data: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct AnchorsRepr {
    dim: usize,
    rows: usize,
    vectors: String,
}

impl From<Anchors> for AnchorsRepr {
    fn from(a: Anchors) -> Self {
        AnchorsRepr { dim: a.dim, rows: a.rows(), vectors: encode_f32(&a.data) }
    }
}

impl TryFrom<AnchorsRepr> for Anchors {
    type Error = String;
    fn try_from(r: AnchorsRepr) -> Result<Self, String> {
        if r.dim == 0 {
            return Err("noise anchors with 0 dimensions".into());
        }
        let data = decode_f32(&r.vectors, r.rows.checked_mul(r.dim)).map_err(|e| format!("noise anchors: {e}"))?;
        Ok(Anchors { dim: r.dim, data })
    }
}

impl Anchors {
    /// `None` when the vectors do not all have `dim` floats.
    pub fn new(vectors: &[Vec<f32>]) -> Option<Anchors> {
        let dim = vectors.first()?.len();
        if dim == 0 || vectors.iter().any(|v| v.len() != dim) {
            return None;
        }
        Some(Anchors { dim, data: vectors.iter().flatten().copied().collect() })
    }

    pub fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// The largest cosine similarity of `v` (unit length, like the anchors) to an anchor.
    pub fn nearest(&self, v: &[f32]) -> Option<f32> {
        if v.len() != self.dim {
            return None;
        }
        self.data.chunks_exact(self.dim).map(|a| a.iter().zip(v).map(|(x, y)| x * y).sum::<f32>()).reduce(f32::max)
    }
}

/// The fitted checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closeness {
    /// A ticket whose nearest example is less similar than this is distant.
    pub min_similarity: f32,
    /// Share of held-out examples below `min_similarity`.
    pub held_out_below: f64,
    /// The noise check, when noise anchors were embedded at fit time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseCheck {
    pub anchors: Anchors,
    /// A ticket whose margin (nearest example minus nearest anchor) is below this sits
    /// with the noise.
    pub min_margin: f32,
}

impl Closeness {
    /// Fit on the held-out examples' nearest similarities `tops` and, with anchors,
    /// their nearest-anchor similarities `noise` (same order). `None` below [`MIN_POINTS`].
    pub fn fit(tops: &[f32], noise: Option<(Anchors, &[f32])>) -> Option<Closeness> {
        if tops.len() < MIN_POINTS {
            return None;
        }
        let min_similarity = quantile(tops, QUANTILE)?;
        let held_out_below = tops.iter().filter(|t| **t < min_similarity).count() as f64 / tops.len() as f64;
        let noise = noise.filter(|(_, n)| n.len() == tops.len()).and_then(|(anchors, n)| {
            let margins: Vec<f32> = tops.iter().zip(n).map(|(t, a)| t - a).collect();
            Some(NoiseCheck { anchors, min_margin: quantile(&margins, QUANTILE)? })
        });
        Some(Closeness { min_similarity, held_out_below, noise })
    }

    /// Why a ticket with nearest similarity `top` (and vector `v`) has no close example.
    pub fn judge(&self, top: f32, v: Option<&[f32]>) -> Option<Far> {
        if top < self.min_similarity {
            return Some(Far::Distant { similarity: top, limit: self.min_similarity, held_out_below: self.held_out_below });
        }
        let check = self.noise.as_ref()?;
        let nearest_anchor = check.anchors.nearest(v?)?;
        let margin = top - nearest_anchor;
        (margin < check.min_margin).then_some(Far::NoiseLike { margin, limit: check.min_margin })
    }
}

/// A small deterministic generator (splitmix64), so a fit's noise is the same on every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        (!xs.is_empty()).then(|| &xs[self.below(xs.len())])
    }
}

/// `n` noise texts made from the collection's own `texts`: random characters, word
/// salad from its words, its texts' characters shuffled, identifiers, format strings and
/// paths (what lines of a binary, keyboard mashing and pasted logs look like).
pub fn noise_texts(texts: &[&str], n: usize, seed: u64) -> Vec<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789    .,;:!?-_/#%";
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    let mut r = Mix(seed);
    let words: Vec<&str> = texts.iter().flat_map(|t| t.split_whitespace()).collect();
    let ident = |r: &mut Mix| {
        let parts: Vec<String> = (0..r.range(1, 3))
            .map(|_| (0..r.range(2, 8)).map(|_| LETTERS[r.below(LETTERS.len())] as char).collect())
            .collect();
        parts.join(["_", ".", "-", "", "::"][r.below(5)])
    };
    (0..n)
        .map(|i| match i % 6 {
            0 => (0..r.range(4, 60)).map(|_| CHARS[r.below(CHARS.len())] as char).collect(),
            1 if !words.is_empty() => (0..r.range(3, 25)).filter_map(|_| r.pick(&words).copied()).collect::<Vec<_>>().join(" "),
            2 if !texts.is_empty() => {
                let mut cs: Vec<char> = r.pick(texts).copied().unwrap_or_default().chars().collect();
                for j in (1..cs.len()).rev() {
                    cs.swap(j, r.below(j + 1));
                }
                cs.into_iter().take(120).collect()
            }
            3 => (0..r.range(1, 4)).map(|_| ident(&mut r)).collect::<Vec<_>>().join(" "),
            4 => format!(
                "{} {} {}",
                ["%s", "%d", "<%s>", "0x%08x", "%s: %s"][r.below(5)],
                ident(&mut r),
                ["%s", "<%s%s>", "%zu", ""][r.below(4)]
            ),
            _ => format!(
                "/{}{}",
                (0..r.range(1, 4)).map(|_| ident(&mut r)).collect::<Vec<_>>().join("/"),
                ["", ".so", ".h", ".c", " 00;90", " 01;31"][r.below(6)]
            ),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn both_checks_flag_about_their_quantile_of_held_out_examples_and_what_lies_beyond() {
        let tops: Vec<f32> = (0..400).map(|i| 0.3 + 0.6 * i as f32 / 400.0).collect();
        let noise: Vec<f32> = (0..400).map(|i| 0.2 + 0.1 * ((i * 37) % 400) as f32 / 400.0).collect();
        let anchors = Anchors::new(&[unit(&[1.0, 0.0, 0.0]), unit(&[0.0, 1.0, 0.0])]).unwrap();
        let c = Closeness::fit(&tops, Some((anchors, &noise))).unwrap();
        assert!((c.min_similarity - 0.306).abs() < 0.01, "{}", c.min_similarity);
        assert!(c.held_out_below <= QUANTILE + 1e-9);
        assert!(matches!(c.judge(0.2, None), Some(Far::Distant { .. })));
        assert_eq!(c.judge(0.8, None), None, "no vector: only the distance check");
        // A ticket as close to a noise anchor as to its nearest example.
        let v = unit(&[1.0, 0.05, 0.0]);
        assert!(matches!(c.judge(0.5, Some(&v)), Some(Far::NoiseLike { .. })), "{:?}", c.judge(0.5, Some(&v)));
        let far_from_noise = unit(&[0.0, 0.0, 1.0]);
        assert_eq!(c.judge(0.5, Some(&far_from_noise)), None);
        assert!(Closeness::fit(&tops[..10], None).is_none());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Closeness>(&json).unwrap(), c);
    }

    #[test]
    fn noise_is_deterministic_and_varied() {
        let texts = ["I was charged twice on March 1st", "The export to CSV fails with error 500"];
        let a = noise_texts(&texts, 60, 7);
        assert_eq!(a, noise_texts(&texts, 60, 7));
        assert_ne!(a, noise_texts(&texts, 60, 8));
        assert_eq!(a.len(), 60);
        assert!(a.iter().all(|t| !t.is_empty()));
        assert!(a.iter().any(|t| t.starts_with('/')) && a.iter().any(|t| t.contains('%')));
        assert_eq!(noise_texts(&[], 12, 1).len(), 12, "no texts: the other kinds only");
    }
}
