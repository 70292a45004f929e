#!/usr/bin/env bash
# Day one: what a new user gets from `index` then `classify`, with nothing else run.
# Prints one JSON object.
#
#   scripts/bench-dayone.sh
#
# 1. BANKING77 and CLINC150 (in-scope rows) from ../shared/datasets: `triage index` of the
#    train side (the collection is fitted as part of it), then `triage eval --methods knn`
#    of the test side with no --calibrate: accuracy, macro-F1, ECE; and again with
#    --auto-route-precision 0.98: the auto-routed share and its accuracy.
# 2. The same two datasets with the simulated LLM (scripts/sim_llm.py: right with
#    probability p, otherwise a plausible wrong label) at p in BENCH_PS (default
#    "0.70 0.95"): `triage calibrate --llm --llm-sample BENCH_SAMPLE` (default 800) fits the
#    arbiter, then `eval --methods rag --auto-route-precision 0.98`.
# 3. The bundled saas corpus: index, then its held-out test.jsonl: how many answers with
#    confidence >= 0.99 are wrong, and ECE.
# 4. The garbage fixture (tests/fixtures/garbage/: lines of a binary, random strings, texts
#    from unrelated domains) classified against the saas collection: how many are
#    auto-routed, and how many are flagged "no close example".
#
# Environment: BENCH_PS, BENCH_SAMPLE, BENCH_DATASETS (default "banking77 clinc150"),
# BENCH_LLM=0 skips step 2, BENCH_KEEP=1 keeps the work dir. About 40 minutes on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
data="$root/../shared/datasets"
ps="${BENCH_PS:-0.70 0.95}"
sample="${BENCH_SAMPLE:-800}"
datasets="${BENCH_DATASETS:-banking77 clinc150}"
[ -d "$data/banking77" ] || { echo "bench-dayone: ../shared/datasets not found" >&2; exit 1; }
./scripts/setup.sh >/dev/null
build_triage
bench_workdir bench-dayone
export TRIAGE_DATA_DIR="$work/data"
export TRIAGE_LLM_API_KEY=simulated
started=$(date +%s)
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

for ds in $datasets; do
    for side in train test; do
        in_scope_rows "$data/$ds/$side.jsonl" "$work/$ds-$side.jsonl"
    done
    "$bin" index "$work/$ds-train.jsonl" --collection "$ds" >"$work/$ds-index.log" 2>&1
    "$bin" eval --test "$work/$ds-test.jsonl" --collection "$ds" --methods knn --provider none \
        --report-dir "$work/$ds-knn" >"$work/$ds-knn.txt" 2>&1
    "$bin" eval --test "$work/$ds-test.jsonl" --collection "$ds" --methods knn --provider none \
        --auto-route-precision 0.98 --report-dir "$work/$ds-knn-p98" >"$work/$ds-knn-p98.txt" 2>&1
    if [ "${BENCH_LLM:-1}" = 1 ]; then
        for p in $ps; do
            start_sim_llm "$work/sim-$ds-$p" --gold "$work/$ds-train.jsonl" --gold "$work/$ds-test.jsonl" --p "$p" --seed 7
            "$bin" calibrate --collection "$ds" --llm --llm-sample "$sample" --llm-base-url "$sim_url" \
                --llm-model "sim-p$p" --cache-dir "$work/cache" --concurrency 8 >"$work/$ds-$p-arbiter.txt" 2>&1
            "$bin" eval --test "$work/$ds-test.jsonl" --collection "$ds" --methods rag --auto-route-precision 0.98 \
                --llm-base-url "$sim_url" --llm-model "sim-p$p" --concurrency 8 --no-cache \
                --report-dir "$work/$ds-rag-$p" >"$work/$ds-rag-$p.txt" 2>&1
            kill "$sim_pid" 2>/dev/null || true
            sim_pid=""
        done
    fi
done

saas=examples_store/saas-support
"$bin" index "$saas" --collection saas >"$work/saas-index.log" 2>&1
"$bin" eval --test "$saas/test.jsonl" --collection saas --methods knn --provider none \
    --report-dir "$work/saas-test" >"$work/saas-test.txt" 2>&1
"$bin" classify --collection saas --provider none --input tests/fixtures/garbage/garbage.jsonl \
    --output "$work/garbage.jsonl" >"$work/garbage.log" 2>&1
# A binary given as --input, as a user might (the first 300 KB of triage itself), is
# refused whole; its lines as ticket texts (undecodable bytes replaced) are classified.
head -c 300000 "$bin" >"$work/binary.bin"
if "$bin" classify --collection saas --provider none --input "$work/binary.bin" --format jsonl \
    --output "$work/binary-file.jsonl" >"$work/binary-file.log" 2>&1; then binary_file=accepted; else binary_file=refused; fi
python3 -c 'import json,sys
for l in open(sys.argv[1], "rb").read().split(b"\n"):
    t = l.decode("utf-8", "replace")
    if t.strip(): print(json.dumps({"text": t}))' "$work/binary.bin" >"$work/binary-lines.jsonl"
"$bin" classify --collection saas --provider none --input "$work/binary-lines.jsonl" --format jsonl \
    --output "$work/binary.jsonl" >"$work/binary.log" 2>&1 || true

python3 - "$work" "$started" "$datasets" "$ps" "${BENCH_LLM:-1}" "$load_start" "$binary_file" <<'PY'
import json, sys, time
work, started, datasets, ps, llm, load_start, binary_file = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5] == "1", sys.argv[6], sys.argv[7]
def method(d):
    r = json.load(open(f"{work}/{d}/report.json"))
    return r["methods"][0]
out = {"benchmark": "day-one", "date": time.strftime("%Y-%m-%d"), "k": 8, "results": {}}
for ds in datasets:
    m, p = method(f"{ds}-knn"), method(f"{ds}-knn-p98")
    res = {
        "index_then_classify": {k: m[k] for k in ["accuracy", "macro_f1", "ece", "auto_routed_share", "auto_routed_accuracy"]},
        "auto_route_precision_0.98": {k: p[k] for k in ["auto_routed_share", "auto_routed_accuracy"]},
        "targets": {
            "ece_at_most_0.02": m["ece"] is not None and m["ece"] <= 0.02,
            "p98_accuracy_at_least_0.975": (p["auto_routed_accuracy"] or 0) >= 0.975,
            "p98_share_at_least_0.80": (p["auto_routed_share"] or 0) >= 0.80,
        },
    }
    if llm:
        for pp in ps:
            r = method(f"{ds}-rag-{pp}")
            res[f"sim_llm_p{pp}_auto_route_precision_0.98"] = {
                k: r.get(k) for k in ["accuracy", "auto_routed_share", "auto_routed_accuracy", "llm_answer_accuracy", "vote_accuracy", "llm_calls_per_ticket"]
            } | {"target_accuracy_at_least_0.975": (r.get("auto_routed_accuracy") or 0) >= 0.975}
    out["results"][ds] = res
preds = [json.loads(l) for l in open(f"{work}/saas-test/predictions.jsonl")]
confident = [p for p in preds if (p.get("confidence") or 0) >= 0.99]
wrong = [p for p in confident if not p.get("correct")]
sm = method("saas-test")
out["results"]["saas_test"] = {"tickets": len(preds), "confidence_at_least_0.99": len(confident), "of_them_wrong": len(wrong), "ece": sm["ece"], "accuracy": sm["accuracy"], "auto_routed_share": sm["auto_routed_share"]}
g = [json.loads(l) for l in open(f"{work}/garbage.jsonl")]
try:
    g += [dict(json.loads(l), id="binary-" + json.loads(l)["id"]) for l in open(f"{work}/binary.jsonl")]
except FileNotFoundError:
    pass
kinds = {}
for r in g:
    k = r["id"].split("-")[0]
    e = kinds.setdefault(k, {"lines": 0, "auto_routed": 0, "no_close_example": 0, "other_review": 0})
    e["lines"] += 1
    if not r["needs_review"]:
        e["auto_routed"] += 1
    elif (r.get("review_reason") or "").startswith("no_close_example"):
        e["no_close_example"] += 1
    else:
        e["other_review"] += 1
        e.setdefault("other_reasons", []).append((r.get("review_reason") or "")[:60])
out["results"]["garbage_on_saas"] = kinds
out["results"]["binary_file_as_input"] = binary_file
out["seconds"] = int(time.time()) - started
out["load_average_at_start"] = load_start
print(json.dumps(out, indent=1))
PY
