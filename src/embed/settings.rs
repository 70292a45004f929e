//! What a model folder's `triage-model.json` says about using its model, and which models
//! `scripts/setup.sh` can install (so that asking for one that is not there says how).

use std::path::Path;

use super::EmbedError;

/// How token vectors become one text vector. Either way the result is L2-normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The mean over the text's tokens (attention mask), as sentence-transformers and e5.
    #[default]
    Mean,
    /// The first token's vector.
    Cls,
}

/// A model folder's `triage-model.json` (absent: the defaults). Keys:
/// - `texts_per_call`: `1` for models whose output for a text depends on the other texts
///   of the same call (int8 activations quantised with one scale per call);
/// - `languages`: ISO 639-1 codes the model was trained for (`["*"]`: many), else
///   [`super::known_languages`] of the folder's name;
/// - `prefix`: put before every text, e.g. `"query: "` for e5 models, whose model card
///   prescribes it for symmetric tasks such as classification;
/// - `pooling`: `"mean"` (default) or `"cls"`; `normalize` may only be `true` (vectors
///   are always L2-normalised). Other keys (`why`, `source`) are notes for people.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSettings {
    pub texts_per_call: Option<usize>,
    pub languages: Vec<String>,
    pub prefix: String,
    pub pooling: Pooling,
}

impl ModelSettings {
    /// The settings of the model folder `dir` named `name`.
    pub fn read(dir: &Path, name: &str) -> Result<Self, EmbedError> {
        let path = dir.join("triage-model.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from("{}"),
            Err(e) => return Err(EmbedError::Setup(format!("cannot read {}: {e}", path.display()))),
        };
        Self::parse(&text, name).map_err(|e| EmbedError::Setup(format!("{}: {e}", path.display())))
    }

    fn parse(text: &str, name: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        if !v.is_object() {
            return Err("not a JSON object".into());
        }
        let texts_per_call = match v.get("texts_per_call") {
            None => None,
            Some(n) => Some(n.as_u64().ok_or("texts_per_call must be a positive integer")?.max(1) as usize),
        };
        let languages = match v.get("languages") {
            None => super::known_languages(name),
            Some(l) => l
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                .ok_or("languages must be a list of language codes")?,
        };
        let prefix = match v.get("prefix") {
            None => String::new(),
            Some(p) => p.as_str().ok_or("prefix must be a string")?.to_string(),
        };
        let pooling = match v.get("pooling").map(|p| p.as_str()) {
            None | Some(Some("mean")) => Pooling::Mean,
            Some(Some("cls")) => Pooling::Cls,
            Some(other) => return Err(format!("pooling must be \"mean\" or \"cls\", not {other:?}")),
        };
        if v.get("normalize").is_some_and(|n| n != &serde_json::Value::Bool(true)) {
            return Err("normalize must be true: vectors are always L2-normalised".into());
        }
        Ok(ModelSettings { texts_per_call, languages, prefix, pooling })
    }
}

/// Models `scripts/setup.sh` can install besides the default one: folder name and the
/// command that installs it.
pub const INSTALLABLE: [(&str, &str); 3] = [
    ("all-minilm-l6-v2-qint8", "./scripts/setup.sh"),
    ("multilingual-e5-small", "./scripts/setup.sh --multilingual"),
    ("multilingual-e5-small-qint8", "./scripts/setup.sh --multilingual"),
];

/// How to install `spec` when it names a model setup.sh installs.
pub fn install_hint(spec: &str) -> Option<&'static str> {
    INSTALLABLE.iter().find(|(name, _)| *name == spec).map(|(_, how)| *how)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_e5_conventions_and_refuses_what_it_cannot_honour() {
        let s = ModelSettings::parse(
            r#"{"languages": ["en", "de"], "prefix": "query: ", "pooling": "mean", "normalize": true, "texts_per_call": 1}"#,
            "x",
        )
        .unwrap();
        assert_eq!(s.languages, ["en", "de"]);
        assert_eq!((s.prefix.as_str(), s.pooling, s.texts_per_call), ("query: ", Pooling::Mean, Some(1)));
        let plain = ModelSettings::parse("{}", "all-minilm-l6-v2-int8").unwrap();
        assert_eq!((plain.languages, plain.prefix, plain.pooling), (vec!["en".to_string()], String::new(), Pooling::Mean));
        assert_eq!(ModelSettings::parse(r#"{"pooling": "cls"}"#, "x").unwrap().pooling, Pooling::Cls);
        for bad in [r#"{"pooling": "max"}"#, r#"{"normalize": false}"#, r#"{"languages": "en"}"#, r#"{"prefix": 1}"#, "[1]", "{"] {
            assert!(ModelSettings::parse(bad, "x").is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn names_the_setup_command_of_installable_models() {
        assert_eq!(install_hint("multilingual-e5-small"), Some("./scripts/setup.sh --multilingual"));
        assert_eq!(install_hint("all-minilm-l6-v2-qint8"), Some("./scripts/setup.sh"));
        assert_eq!(install_hint("intfloat/multilingual-e5-small"), None);
    }
}
