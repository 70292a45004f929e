//! Raw flags and environment turned into validated settings: which store, which
//! embedding model, which LLM provider (with its key from the environment).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::embed::{Embedder, FastEmbedder, ModelSource};
use crate::llm::{self, AnthropicClient, ApiKey, HttpSettings, LlmClient, OpenAiClient, RetryPolicy};
use crate::store::{CollectionLayout, EdgeStore, ExampleStore, ServerStore};
use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Openai,
    Anthropic,
    None,
    /// Instant deterministic answers (label of the nearest example): for load tests only
    #[cfg(feature = "test-doubles")]
    #[value(hide = true)]
    Scripted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JsonMode {
    /// `response_format: json_schema` with the taxonomy's labels as enums (falls back to `object` on a 400)
    Schema,
    /// `response_format: json_object`
    Object,
}

/// LLM settings as given on the command line / environment, before resolution.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub provider: Option<Provider>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub json_mode: JsonMode,
}

fn env_key(names: &[&str]) -> Option<ApiKey> {
    names.iter().find_map(|n| std::env::var(n).ok().and_then(ApiKey::new))
}

/// The resolved LLM (`None`: knn mode) and a note for stderr when knn mode was
/// chosen by default.
pub type BuiltLlm = (Option<Arc<dyn LlmClient>>, Option<String>);

/// The resolved LLM, or `None` for knn mode. The second value is a note for
/// stderr when knn mode was chosen by default.
pub fn build_llm(s: &LlmSettings) -> Result<BuiltLlm, Error> {
    let openai_key = || env_key(&["TRIAGE_LLM_API_KEY", "OXLO_API_KEY", "OPENAI_API_KEY"]);
    let anthropic_key = || env_key(&["TRIAGE_LLM_API_KEY", "ANTHROPIC_API_KEY"]);
    let provider = match s.provider {
        Some(p) => p,
        None if s.base_url.is_some() || openai_key().is_some() => Provider::Openai,
        None if anthropic_key().is_some() => Provider::Anthropic,
        None => {
            return Ok((
                None,
                Some(
                    "no LLM configured: classifying by the neighbours' vote (method \"knn\"). To use an LLM set \
                     OXLO_API_KEY (or TRIAGE_LLM_API_KEY), or --llm-base-url for a local server, or --provider."
                        .into(),
                ),
            ))
        }
    };
    let client: Arc<dyn LlmClient> = match provider {
        Provider::None => return Ok((None, None)),
        #[cfg(feature = "test-doubles")]
        Provider::Scripted => Arc::new(llm::ScriptedClient),
        Provider::Openai => {
            let api_key = openai_key();
            if api_key.is_none() && s.base_url.is_none() {
                return Err(Error::Config(
                    "--provider openai needs an API key (TRIAGE_LLM_API_KEY, OXLO_API_KEY or OPENAI_API_KEY) or \
                     --llm-base-url for a local server that needs none"
                        .into(),
                ));
            }
            let settings = HttpSettings {
                base_url: s.base_url.clone().unwrap_or_else(|| llm::openai::DEFAULT_BASE_URL.into()),
                model: s.model.clone().unwrap_or_else(|| llm::openai::DEFAULT_MODEL.into()),
                api_key,
                timeout: s.timeout,
                retry: s.retry,
            };
            Arc::new(OpenAiClient::new(settings, s.json_mode == JsonMode::Object)?)
        }
        Provider::Anthropic => {
            let api_key = anthropic_key();
            if api_key.is_none() && s.base_url.is_none() {
                return Err(Error::Config(
                    "--provider anthropic needs TRIAGE_LLM_API_KEY or ANTHROPIC_API_KEY".into(),
                ));
            }
            let settings = HttpSettings {
                base_url: s.base_url.clone().unwrap_or_else(|| llm::anthropic::DEFAULT_BASE_URL.into()),
                model: s.model.clone().unwrap_or_else(|| llm::anthropic::DEFAULT_MODEL.into()),
                api_key,
                timeout: s.timeout,
                retry: s.retry,
            };
            Arc::new(AnthropicClient::new(settings)?)
        }
    };
    Ok((Some(client), None))
}

/// The clients of [`build_llms`] and, when there are none, why.
pub type BuiltLlms = (Vec<Arc<dyn LlmClient>>, Option<String>);

/// One client per model name (`eval --models`), each with `base`'s provider, base URL
/// and limits; no names: `base`'s own model. When there is no LLM (knn mode) the list
/// is empty and the note says why.
pub fn build_llms(base: &LlmSettings, names: &[String]) -> Result<BuiltLlms, Error> {
    let names: Vec<Option<String>> =
        if names.is_empty() { vec![base.model.clone()] } else { names.iter().cloned().map(Some).collect() };
    let mut clients = Vec::new();
    for name in names {
        let settings = LlmSettings { model: name.filter(|m| !m.trim().is_empty()).or(base.model.clone()), ..base.clone() };
        match build_llm(&settings)? {
            (Some(c), _) => clients.push(c),
            (None, note) => return Ok((Vec::new(), Some(note.unwrap_or_else(|| "--provider none: no LLM".into())))),
        }
    }
    Ok((clients, None))
}

/// Where the store lives.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub qdrant_url: Option<String>,
    /// Shards, replicas and memory settings of collections created on a Qdrant server.
    pub layout: CollectionLayout,
}

pub fn open_store(s: &StoreSettings) -> Result<Arc<dyn ExampleStore>, Error> {
    s.layout.check().map_err(Error::Config)?;
    Ok(match &s.qdrant_url {
        Some(url) => {
            let key = std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.trim().is_empty());
            Arc::new(ServerStore::connect(url, key)?.with_layout(s.layout.clone()))
        }
        None if !s.layout.is_default() => {
            return Err(Error::Config(format!(
                "{} set how a Qdrant server lays out a collection; the embedded store has no shards or replicas: \
                 add --qdrant-url (QDRANT_URL) or drop them",
                s.layout.flags()
            )))
        }
        None => Arc::new(edge_store(&s.data_dir)?),
    })
}

/// The embedded store; in `test-doubles` builds, with the journal faults
/// `TRIAGE_TEST_JOURNAL_FAULTS` asks for (fault-injection soaks: scripts/soak.sh).
fn edge_store(data_dir: &Path) -> Result<EdgeStore, Error> {
    let store = EdgeStore::open(data_dir)?;
    #[cfg(feature = "test-doubles")]
    if let Ok(spec) = std::env::var(crate::store::JOURNAL_FAULTS_ENV) {
        let faults = crate::store::JournalFaults::parse(&spec).map_err(Error::Config)?;
        tracing::warn!("injecting journal faults ({spec}): a test build");
        return Ok(store.with_journal_files(faults.files()));
    }
    #[cfg(not(feature = "test-doubles"))]
    if std::env::var_os("TRIAGE_TEST_JOURNAL_FAULTS").is_some() {
        tracing::warn!("TRIAGE_TEST_JOURNAL_FAULTS is ignored: this build has no test doubles (--features test-doubles)");
    }
    Ok(store)
}

/// The per-user data dir, the same from any working folder: `$XDG_DATA_HOME/ticket-triage`,
/// else `$HOME/.local/share/ticket-triage`, else `.triage` (no home at all).
/// `TRIAGE_DATA_DIR` / `--data-dir` win over it (see `cli::CommonArgs::data_dir`).
pub fn default_data_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |v: &str| env(v).filter(|p| !p.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = set("XDG_DATA_HOME") {
        return x.join("ticket-triage");
    }
    if let Some(h) = set("HOME") {
        return h.join(".local/share/ticket-triage");
    }
    PathBuf::from(".triage")
}

#[cfg(test)]
mod data_dir_tests {
    use super::*;

    #[test]
    fn per_user_data_dir() {
        let env = |xdg: Option<&str>, home: Option<&str>| {
            let (xdg, home) = (xdg.map(std::ffi::OsString::from), home.map(std::ffi::OsString::from));
            move |v: &str| match v {
                "XDG_DATA_HOME" => xdg.clone(),
                "HOME" => home.clone(),
                _ => None,
            }
        };
        assert_eq!(default_data_dir(env(Some("/x/data"), Some("/home/u"))), PathBuf::from("/x/data/ticket-triage"));
        assert_eq!(default_data_dir(env(Some(""), Some("/home/u"))), PathBuf::from("/home/u/.local/share/ticket-triage"));
        // A relative XDG_DATA_HOME is invalid by the spec: ignored.
        assert_eq!(default_data_dir(env(Some("rel"), Some("/home/u"))), PathBuf::from("/home/u/.local/share/ticket-triage"));
        assert_eq!(default_data_dir(env(None, None)), PathBuf::from(".triage"));
    }
}

/// `--models-dir`, else `./models`, else `models/` next to the repository the
/// binary was built in (target/release/triage -> ../../models), else the `models/`
/// of the source folder it was built from (a `cargo install --path .` binary in
/// ~/.cargo/bin finds the models `scripts/setup.sh` put there, from any folder).
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let cwd = PathBuf::from("models");
    if cwd.is_dir() {
        return cwd;
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(repo) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            let p = repo.join("models");
            if p.is_dir() {
                return p;
            }
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    if built_from.is_dir() {
        return built_from;
    }
    cwd
}

/// `serving`: a long-running process (`serve`, `bench-latency`) that also loads the
/// solo session for lone tickets (see [`FastEmbedder`]).
pub fn load_embedder(
    spec: &str,
    models_dir: &Path,
    threads: Option<usize>,
    workers: usize,
    serving: bool,
) -> Result<Arc<dyn Embedder>, Error> {
    let source = ModelSource::resolve(spec, models_dir)?;
    Ok(Arc::new(if serving {
        FastEmbedder::load_serving(&source, models_dir, threads, workers)?
    } else {
        FastEmbedder::load(&source, models_dir, threads, workers)?
    }))
}
