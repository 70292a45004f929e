#!/usr/bin/env bash
# The arbiter benchmark: how the neighbours (vote + fitted head) and an LLM combine,
# with a simulated LLM (scripts/sim_llm.py) that is right with probability p for each
# ticket and otherwise answers a plausible wrong label (a retrieved example's label that
# is not the gold one). Prints one JSON object.
#
#   scripts/bench-arbiter.sh
#
# For BANKING77 and CLINC150 (in-scope rows only) from ../shared/datasets:
# 1. `triage index` of the train side, `triage calibrate` (leave-one-out votes,
#    cross-fitted head) at k = 8.
# 2. For each p in BENCH_PS (default 0.95 0.85 0.70): a simulated LLM that knows the gold
#    labels of both sides; `triage calibrate --llm --llm-sample BENCH_SAMPLE` (default
#    800) fits the arbiter on its answers to held-out train examples; `triage eval` of the
#    test side with knn, rag (knn-shortcut on) and rag-always.
# 3. Per dataset and p: the neighbours' accuracy, the model's own answers' accuracy,
#    rag and rag-always accuracy, auto-routed share and accuracy, ECE, LLM calls per
#    ticket, and whether each target of the arbiter issue is met.
#
# Environment: BENCH_PS, BENCH_SAMPLE, BENCH_DATASETS (default "banking77 clinc150"),
# BENCH_KEEP=1 keeps the work dir (path on stderr). Takes about 20 minutes on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
data="$root/../shared/datasets"
ps="${BENCH_PS:-0.95 0.85 0.70}"
sample="${BENCH_SAMPLE:-800}"
datasets="${BENCH_DATASETS:-banking77 clinc150}"
[ -d "$data/banking77" ] || { echo "bench-arbiter: ../shared/datasets not found" >&2; exit 1; }
./scripts/setup.sh >/dev/null
build_triage
bench_workdir bench-arbiter
export TRIAGE_DATA_DIR="$work/data"
export TRIAGE_LLM_API_KEY=simulated
started=$(date +%s)

for ds in $datasets; do
    # In-scope rows only (CLINC150's out-of-scope rows have no right label).
    for side in train test; do
        in_scope_rows "$data/$ds/$side.jsonl" "$work/$ds-$side.jsonl"
    done
    "$bin" index "$work/$ds-train.jsonl" --collection "$ds" >"$work/$ds-index.log" 2>&1
    "$bin" calibrate --collection "$ds" --json >"$work/$ds-fit.json" 2>"$work/$ds-calibrate.log"
    for p in $ps; do
        start_sim_llm "$work/sim-$ds-$p" --gold "$work/$ds-train.jsonl" --gold "$work/$ds-test.jsonl" --p "$p" --seed 7
        "$bin" calibrate --collection "$ds" --llm --llm-sample "$sample" --llm-base-url "$sim_url" \
            --llm-model "sim-p$p" --cache-dir "$work/cache" --concurrency 8 >"$work/$ds-$p-arbiter.txt" 2>&1
        "$bin" eval --test "$work/$ds-test.jsonl" --collection "$ds" --methods knn,rag,rag-always \
            --llm-base-url "$sim_url" --llm-model "sim-p$p" --concurrency 8 --no-cache \
            --report-dir "$work/report-$ds-$p" >"$work/$ds-$p-eval.txt" 2>&1
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    done
done

python3 - "$work" "$ps" "$datasets" "$sample" "$started" <<'PY'
import json, os, sys, time
work, ps, datasets, sample, started = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4]), int(sys.argv[5])
out = {"benchmark": "arbiter", "date": time.strftime("%Y-%m-%d"), "k": 8, "llm_sample": sample, "results": []}
for ds in datasets:
    fit = json.load(open(f"{work}/{ds}-fit.json"))["neighbours"]["stats"]
    for p in ps:
        r = json.load(open(f"{work}/report-{ds}-{p}/report.json"))
        m = {x["method"]: x for x in r["methods"]}
        knn, rag, always = m["knn"], m["rag"], m["rag-always"]
        p_f = float(p)
        vote = knn["accuracy"]
        best = max(vote, always["llm_answer_accuracy"])
        floor = (max(vote, p_f) + 0.01) if p_f >= 0.85 else vote + 0.005
        out["results"].append({
            "dataset": ds, "p": p_f, "test_tickets": r["dataset"]["rows"],
            "neighbours_accuracy": vote, "llm_own_accuracy": always["llm_answer_accuracy"],
            "rag_accuracy": rag["accuracy"], "rag_always_accuracy": always["accuracy"],
            "rag_auto_routed_share": rag["auto_routed_share"], "rag_auto_routed_accuracy": rag["auto_routed_accuracy"],
            "rag_ece": rag["ece"], "rag_always_ece": always["ece"],
            "rag_llm_calls_per_ticket": rag["llm_calls_per_ticket"], "arbiter_used": rag["arbiter"],
            "targets": {
                "accuracy_floor": round(floor, 4),
                "accuracy_met": rag["accuracy"] >= floor,
                "beats_best_part": rag["accuracy"] > best,
                "auto_routed_accuracy_met": (rag["auto_routed_accuracy"] or 0) >= 0.98,
                "auto_routed_share_met": p_f < 0.95 or rag["auto_routed_share"] >= 0.90,
                "ece_met": (rag["ece"] or 1) <= 0.02,
                "shortcut_cost_met": rag["accuracy"] >= always["accuracy"] - 0.003,
                "calls_met": p_f < 0.95 or rag["llm_calls_per_ticket"] <= 0.5,
            },
        })
out["seconds"] = int(time.time()) - started
print(json.dumps(out, indent=2))
PY
