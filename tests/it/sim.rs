//! The simulated LLM (scripts/sim_llm.py) as a test fixture: an OpenAI-compatible
//! server on 127.0.0.1 that knows the gold labels of the files it is given, is right
//! with probability p per ticket and otherwise answers a plausible wrong label.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::repo;

pub struct SimLlm {
    pub url: String,
    _child: tokio::process::Child,
}

impl SimLlm {
    /// Start it with `--gold` for each file, `--p p` and `extra` flags.
    pub async fn start(gold: &[&Path], p: f64, extra: &[&str]) -> SimLlm {
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(repo().join("scripts").join("sim_llm.py")).args(["--port", "0", "--p"]).arg(p.to_string());
        for g in gold {
            cmd.arg("--gold").arg(g);
        }
        cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("python3 runs scripts/sim_llm.py");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the simulated LLM starts within 30 s")
            .expect("read its stdout")
            .expect("it prints its address");
        let url = line.strip_prefix("listening on ").expect("listening on URL").trim().to_string();
        SimLlm { url, _child: child }
    }

    /// Its counters (`GET /stats`): requests, right, wrong, invalid, ...
    pub async fn stats(&self) -> Value {
        let base = self.url.trim_end_matches("/v1");
        reqwest::get(format!("{base}/stats")).await.expect("stats").json().await.expect("stats JSON")
    }

    /// The flags that point `triage` at it under the model name `model`.
    pub fn args(&self, model: &str) -> Vec<String> {
        vec!["--llm-base-url".into(), self.url.clone(), "--llm-model".into(), model.into()]
    }
}
