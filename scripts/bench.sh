#!/usr/bin/env bash
# Speed benchmark (issue 7). Prints one JSON object on stdout; progress goes to stderr.
#
#   scripts/bench.sh [TRAIN.jsonl] [TEST.jsonl]
#   BENCH_LATENCY_N=1000 BENCH_STARTUP_RUNS=5 scripts/bench.sh
#
# Default: BANKING77 from ../shared/datasets (10,003 train rows, 3,080 test tickets), k = 8.
#  1. triage: `triage index TRAIN` then `triage classify --provider none --input TEST`, two
#     processes from a fresh data dir, each timed by /usr/bin/time (wall, CPU, peak RSS);
#     accuracy of the predictions against TEST's labels.
#  2. reference: scripts/bench_reference.py, the same model.onnx + tokenizer.json in a plain
#     onnxruntime + tokenizers + numpy loop (batches of 32 in file order, brute-force
#     cosine, the same vote), timed the same way, model load and imports included.
#     ratio = triage (index + classify) wall / reference wall.
#  3. single-ticket latency: `triage bench-latency` (hidden) loads everything once, then
#     classifies BENCH_LATENCY_N test tickets one at a time (no batching, no LLM) and
#     reports p50/p90/p99 of classify, and of embedding and retrieval alone.
#  4. startup: wall time of `triage classify --provider none "one ticket"` (process start,
#     model load, collection open, one ticket, exit), median of BENCH_STARTUP_RUNS runs.
#  5. fitted: `triage calibrate` (leave-one-out votes, the logistic head cross-fitted on 5
#     folds and once on everything), timed; then classify and single-ticket latency again
#     with the fitted head and calibration. bench-latency also times the fit's own per-ticket
#     work alone ("fit_alone": the head's probabilities, the mixture, calibration and the
#     out-of-scope score), since the difference of two noisy p50s cannot resolve 0.2 ms.
#
# Installs what it needs: models (scripts/setup.sh), the release build, a venv
# .venv-bench with pinned onnxruntime/numpy/tokenizers, and GNU time (apt) if missing.
# The load average before and after is in the output: numbers taken while other
# processes use the cores are not comparable with a quiet machine's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
train="${1:-$root/../shared/datasets/banking77/train.jsonl}"
test="${2:-$root/../shared/datasets/banking77/test.jsonl}"
k=8
latency_n="${BENCH_LATENCY_N:-1000}"
startup_runs="${BENCH_STARTUP_RUNS:-5}"
log() { echo "bench: $*" >&2; }

PINS=(onnxruntime==1.24.4 numpy==2.4.6 tokenizers==0.23.2)
venv="$root/.venv-bench"

log "set-up (models, release build, reference venv)"
./scripts/setup.sh >&2
build_triage
if ! [ -x /usr/bin/time ] || ! /usr/bin/time -f %e true >/dev/null 2>&1; then
    log "installing GNU time (apt package time)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2 && apt-get install -y -qq time >&2
    else sudo apt-get update -qq >&2 && sudo apt-get install -y -qq time >&2; fi
fi
want_pins="$(printf '%s\n' "${PINS[@]}")"
if ! [ -f "$venv/.pins" ] || [ "$(cat "$venv/.pins")" != "$want_pins" ] || ! "$venv/bin/python" -c 'import onnxruntime, numpy, tokenizers' 2>/dev/null; then
    log "creating $venv with ${PINS[*]}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" >&2
    echo "$want_pins" >"$venv/.pins"
fi

model_dir="$root/models/${TRIAGE_EMBEDDING_MODEL:-all-minilm-l6-v2-int8}"
bench_workdir bench
export TRIAGE_DATA_DIR="$work/data"
export TRIAGE_LOG="warn,qdrant_edge=error"
TIMEFMT='{"wall_seconds": %e, "user_seconds": %U, "sys_seconds": %S, "max_rss_kb": %M}'
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load_before="$(loadavg)"

log "triage index $(basename "$train")"
/usr/bin/time -f "$TIMEFMT" -o "$work/index.time" \
    "$bin" index "$train" --collection bench --json >"$work/index.json"
log "triage classify $(basename "$test") --provider none"
/usr/bin/time -f "$TIMEFMT" -o "$work/classify.time" \
    "$bin" classify --collection bench --provider none --k "$k" --input "$test" --format jsonl --output "$work/pred.jsonl"

log "single-ticket latency ($latency_n tickets, one process)"
"$bin" bench-latency --collection bench --input "$test" --n "$latency_n" --k "$k" >"$work/latency.json"

log "startup ($startup_runs runs of triage classify on one ticket)"
for i in $(seq "$startup_runs"); do
    /usr/bin/time -f "$TIMEFMT" -o "$work/startup.$i.time" \
        "$bin" classify --collection bench --provider none --format jsonl "I am still waiting on my card?" >/dev/null
done

log "triage calibrate (leave-one-out votes, cross-fitted head)"
/usr/bin/time -f "$TIMEFMT" -o "$work/calibrate.time" \
    "$bin" calibrate --collection bench --k "$k" --json >"$work/fitted.json"
log "triage classify with the fit"
/usr/bin/time -f "$TIMEFMT" -o "$work/classify-fitted.time" \
    "$bin" classify --collection bench --provider none --k "$k" --input "$test" --format jsonl --output "$work/pred-fitted.jsonl"
log "single-ticket latency with the fit"
"$bin" bench-latency --collection bench --input "$test" --n "$latency_n" --k "$k" >"$work/latency-fitted.json"

log "reference: python onnxruntime + numpy loop"
/usr/bin/time -f "$TIMEFMT" -o "$work/reference.time" \
    "$venv/bin/python" scripts/bench_reference.py "$model_dir" "$train" "$test" "$k" 32 >"$work/reference.json"
load_after="$(loadavg)"

python3 - "$work" "$train" "$test" "$k" "$load_before" "$load_after" "$startup_runs" <<'PY'
import json, os, platform, statistics, sys
work, train, test, k, load_before, load_after, runs = sys.argv[1:8]
rd = lambda name: json.load(open(os.path.join(work, name)))
idx_t, cls_t, ref_t = rd("index.time"), rd("classify.time"), rd("reference.time")
index, ref, lat = rd("index.json"), rd("reference.json"), rd("latency.json")
gold = [json.loads(l) for l in open(test) if l.strip()]
pred = [json.loads(l) for l in open(os.path.join(work, "pred.jsonl")) if l.strip()]
assert len(gold) == len(pred), (len(gold), len(pred))
accuracy = sum(g["label"] == p["category"] for g, p in zip(gold, pred)) / len(gold)
pred_fit = [json.loads(l) for l in open(os.path.join(work, "pred-fitted.jsonl")) if l.strip()]
accuracy_fit = sum(g["label"] == p["category"] for g, p in zip(gold, pred_fit)) / len(gold)
cal_t, cls2_t, lat_fit = rd("calibrate.time"), rd("classify-fitted.time"), rd("latency-fitted.json")
fitted = rd("fitted.json")["neighbours"]
startup = [rd(f"startup.{i}.time") for i in range(1, int(runs) + 1)]
triage_wall = idx_t["wall_seconds"] + cls_t["wall_seconds"]
cpu = lambda t: round(t["user_seconds"] + t["sys_seconds"], 2)
model = platform.processor() or platform.machine()
try:
    model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
out = {
    "dataset": {"train": train, "test": test, "train_rows": index["rows"], "test_tickets": len(gold), "k": int(k)},
    "machine": {"cores": os.cpu_count(), "cpu": model,
                "loadavg_before": load_before, "loadavg_after": load_after},
    "triage": {
        "index": {
            "wall_seconds": idx_t["wall_seconds"],
            "cpu_seconds": cpu(idx_t),
            "examples_indexed": index["indexed"],
            "rows_rejected": len(index["rejected"]),
            "examples_per_second": round(index["rows"] / idx_t["wall_seconds"], 1),
            "peak_rss_mb": round(idx_t["max_rss_kb"] / 1024, 1),
            "in_process_seconds": index["seconds"],
            "timings": index.get("timings"),
        },
        "classify": {
            "wall_seconds": cls_t["wall_seconds"],
            "cpu_seconds": cpu(cls_t),
            "tickets_per_second": round(len(gold) / cls_t["wall_seconds"], 1),
            "peak_rss_mb": round(cls_t["max_rss_kb"] / 1024, 1),
        },
        "accuracy": round(accuracy, 4),
        "wall_seconds": round(triage_wall, 2),
        "single_ticket_latency_ms": {"tickets": lat["tickets"], "classify": lat["classify"],
                                     "embed": lat["embed"], "search": lat["search"],
                                     "lang": lat.get("lang")},
        "startup": {
            "what": "triage classify --provider none on one ticket: process start to exit (model load, collection open, one ticket)",
            "median_seconds": statistics.median(s["wall_seconds"] for s in startup),
            "runs_seconds": [s["wall_seconds"] for s in startup],
            "peak_rss_mb": round(max(s["max_rss_kb"] for s in startup) / 1024, 1),
            "in_process_load_seconds": lat["load_seconds"],
        },
    },
    "fitted": {
        "calibrate_wall_seconds": cal_t["wall_seconds"],
        "calibrate_cpu_seconds": cpu(cal_t),
        "calibrate_peak_rss_mb": round(cal_t["max_rss_kb"] / 1024, 1),
        "head_fit_seconds": (fitted.get("head_info") or {}).get("seconds"),
        "head_weight": fitted["head_weight"],
        "vote_temperature": fitted["vote_temperature"],
        "held_out": fitted["stats"],
        "classify_wall_seconds": cls2_t["wall_seconds"],
        "accuracy": round(accuracy_fit, 4),
        "single_ticket_latency_ms": {"classify": lat_fit["classify"], "embed": lat_fit["embed"], "search": lat_fit["search"],
                                     "lang": lat_fit.get("lang"),
                                     "fit_alone": lat_fit.get("fit")},
    },
    "reference": {
        "what": "python onnxruntime + tokenizers + numpy, batches of 32 in file order, brute-force cosine (scripts/bench_reference.py)",
        "wall_seconds": ref_t["wall_seconds"],
        "cpu_seconds": cpu(ref_t),
        "peak_rss_mb": round(ref_t["max_rss_kb"] / 1024, 1),
        "accuracy": ref["accuracy"],
        "details": ref,
    },
    "ratio_triage_to_reference_wall": round(triage_wall / ref_t["wall_seconds"], 3),
    "targets": {"ratio_at_most": 0.8, "single_ticket_p50_ms_at_most": 5.0},
}
out["targets"]["ratio_met"] = out["ratio_triage_to_reference_wall"] <= 0.8
out["targets"]["same_accuracy"] = abs(out["triage"]["accuracy"] - ref["accuracy"]) <= 0.002
out["targets"]["p50_met"] = lat["classify"]["p50_ms"] <= 5.0
out["targets"]["p50_fitted_met"] = lat_fit["classify"]["p50_ms"] <= 5.0
out["targets"]["fit_per_ticket_p50_ms_at_most"] = 0.2
out["targets"]["fit_per_ticket_met"] = (lat_fit.get("fit") or {}).get("p50_ms", 1e9) <= 0.2
out["targets"]["ratio_issue_18_at_most"] = 0.5
out["targets"]["ratio_issue_18_met"] = out["ratio_triage_to_reference_wall"] <= 0.5
out["targets"]["head_fit_at_most_seconds"] = 30
out["targets"]["head_fit_met"] = (fitted.get("head_info") or {}).get("seconds", 1e9) <= 30
print(json.dumps(out, indent=2))
PY
