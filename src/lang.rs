//! Language awareness: which language a ticket is written in, and whether the
//! embedding model covers it. The neighbours' vote is only as good as the embedding:
//! an English-only model places a Spanish ticket near whatever shares its numbers and
//! brand names, so for a language the model does not cover the vote is not trusted
//! (no knn-shortcut, the LLM decides; without an LLM the ticket goes to review).
//!
//! Detection is offline: whatlang's trigram model restricted to [`LANGUAGES`] (common
//! support languages; a wider list confuses close pairs such as Spanish and Catalan),
//! plus, for Latin-script text, the share of its words that the embedding model's own
//! tokenizer knows as whole words. Short English tickets ("refund pls", "card stuck in
//! ATM") are where trigram detectors fail most: the vocabulary share settles those.

use std::collections::HashSet;

use whatlang::{Detector, Lang, Script};

/// Languages the detector chooses among: (whatlang language, ISO 639-1 code).
pub const LANGUAGES: [(Lang, &str); 28] = [
    (Lang::Eng, "en"),
    (Lang::Spa, "es"),
    (Lang::Fra, "fr"),
    (Lang::Deu, "de"),
    (Lang::Ita, "it"),
    (Lang::Por, "pt"),
    (Lang::Nld, "nl"),
    (Lang::Swe, "sv"),
    (Lang::Dan, "da"),
    (Lang::Nob, "no"),
    (Lang::Fin, "fi"),
    (Lang::Pol, "pl"),
    (Lang::Ces, "cs"),
    (Lang::Hun, "hu"),
    (Lang::Ron, "ro"),
    (Lang::Tur, "tr"),
    (Lang::Rus, "ru"),
    (Lang::Ukr, "uk"),
    (Lang::Ell, "el"),
    (Lang::Heb, "he"),
    (Lang::Ara, "ar"),
    (Lang::Hin, "hi"),
    (Lang::Jpn, "ja"),
    (Lang::Cmn, "zh"),
    (Lang::Kor, "ko"),
    (Lang::Tha, "th"),
    (Lang::Vie, "vi"),
    (Lang::Ind, "id"),
];

/// Latin-script text whose words the model knows at least this often is English,
/// whatever the trigrams say (measured: English support tickets and intents score
/// 0.69 or more in 99 % of cases, the bundled non-English tickets at most 0.67).
const ENGLISH_WORD_SHARE: f64 = 0.75;
/// Below this share, an unreliable trigram guess of another language stands.
const FOREIGN_WORD_SHARE: f64 = 0.5;

/// What an embedding model covers.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// ISO 639-1 codes of the languages the model was trained for; `["*"]`: many.
    pub languages: Vec<String>,
    /// Whole words of the model's tokenizer vocabulary (lowercase); empty: unknown.
    pub words: HashSet<String>,
}

impl Coverage {
    pub fn covers(&self, lang: &str) -> bool {
        self.languages.iter().any(|l| l == "*" || l == lang)
    }

    /// The whole words of a WordPiece/BPE tokenizer.json vocabulary (pieces such as
    /// `##ing` and special tokens left out).
    pub fn words_from_tokenizer(json: &serde_json::Value) -> HashSet<String> {
        let Some(vocab) = json.pointer("/model/vocab").and_then(|v| v.as_object()) else { return HashSet::new() };
        vocab
            .keys()
            .filter(|k| !k.starts_with("##") && !k.starts_with('[') && k.chars().all(char::is_alphabetic))
            .map(|k| k.to_lowercase())
            .collect()
    }
}

/// The language of a ticket and whether the model covers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// ISO 639-1 code; `None` when the text is too short or unclear to tell.
    pub lang: Option<String>,
    /// False only when the language is known and the model does not cover it.
    pub covered: bool,
}

fn code(lang: Lang) -> Option<&'static str> {
    LANGUAGES.iter().find(|(l, _)| *l == lang).map(|(_, c)| *c)
}

/// Alphabetic words of `text`, lowercase (one-letter words other than "i" and "a" left out).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() > 1 || w == "i" || w == "a")
        .collect()
}

/// Share of the words of `text` that are in `vocabulary`; `None` without words or vocabulary.
fn known_share(text: &str, vocabulary: &HashSet<String>) -> Option<f64> {
    if vocabulary.is_empty() {
        return None;
    }
    let w = words(text);
    (!w.is_empty()).then(|| w.iter().filter(|x| vocabulary.contains(*x)).count() as f64 / w.len() as f64)
}

/// The language of `text` (ISO 639-1), with the model's vocabulary as English evidence.
pub fn detect(text: &str, vocabulary: &HashSet<String>) -> Option<String> {
    static DETECTOR: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
    let detector = DETECTOR.get_or_init(|| Detector::with_allowlist(LANGUAGES.iter().map(|(l, _)| *l).collect()));
    if text.chars().filter(|c| c.is_alphabetic()).count() < 3 {
        return None;
    }
    let info = detector.detect(text)?;
    let guess = code(info.lang())?;
    if info.script() != Script::Latin {
        return Some(guess.to_string());
    }
    let share = known_share(text, vocabulary);
    let lang = match (guess, share) {
        ("en", _) => "en",
        (_, Some(s)) if s >= ENGLISH_WORD_SHARE => "en",
        (g, _) if info.is_reliable() => g,
        (g, Some(s)) if s < FOREIGN_WORD_SHARE => g,
        (_, Some(_)) => "en",
        (_, None) => return None,
    };
    Some(lang.to_string())
}

/// The language of `text` and whether `coverage` covers it (`None`: the model's
/// languages are unknown, so nothing is withheld).
pub fn assess(text: &str, coverage: Option<&Coverage>) -> Assessment {
    let empty = HashSet::new();
    let lang = detect(text, coverage.map_or(&empty, |c| &c.words));
    let covered = match (&lang, coverage) {
        (Some(l), Some(c)) if !c.languages.is_empty() => c.covers(l),
        _ => true,
    };
    Assessment { lang, covered }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> HashSet<String> {
        ["i", "was", "charged", "twice", "refund", "my", "card", "the", "is", "not", "working", "how", "do", "change", "pin", "atm", "stuck", "in", "de", "la", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn tells_common_languages_and_settles_short_english_by_vocabulary() {
        let v = vocab();
        assert_eq!(detect("Mi paquete llegó roto y nadie me responde desde hace una semana", &v).as_deref(), Some("es"));
        assert_eq!(detect("Die Lieferung fehlt seit drei Wochen, bitte um Rückmeldung", &v).as_deref(), Some("de"));
        assert_eq!(detect("ダッシュボードにログインするとエラーが表示されます", &v).as_deref(), Some("ja"));
        assert_eq!(detect("I was charged twice, refund my card", &v).as_deref(), Some("en"));
        assert_eq!(detect("card stuck in atm", &v).as_deref(), Some("en"));
        assert_eq!(detect("??", &v), None, "too short to tell");
    }

    #[test]
    fn coverage_decides_trust() {
        let en = Coverage { languages: vec!["en".into()], words: vocab() };
        let a = assess("Mi paquete llegó roto y nadie me responde desde hace una semana", Some(&en));
        assert_eq!((a.lang.as_deref(), a.covered), (Some("es"), false));
        assert!(assess("my card is not working", Some(&en)).covered);
        let all = Coverage { languages: vec!["*".into()], words: HashSet::new() };
        assert!(assess("Mi paquete llegó roto y nadie me responde desde hace una semana", Some(&all)).covered);
        assert!(assess("Mi paquete llegó roto y nadie me responde", None).covered, "unknown model: nothing withheld");
        let json = serde_json::json!({"model": {"vocab": {"card": 1, "##ing": 2, "[CLS]": 3, "Refund": 4, "42": 5}}});
        let w = Coverage::words_from_tokenizer(&json);
        assert_eq!(w.len(), 2);
        assert!(w.contains("card") && w.contains("refund"));
    }
}
