#!/usr/bin/env bash
# The routing criteria of issue 16 on data: segments, edge cases and secondary issues on
# the bundled corpus, and the context budget (accuracy against prompt tokens per ticket
# over a k sweep) on BANKING77. Without a hosted LLM the LLM side is the simulated one
# (scripts/sim_llm.py, right with probability BENCH_P per ticket, naming the test file's
# secondary issues when right); what that measures is in docs/accuracy.md.
#
#   scripts/bench-routing.sh            # reports under $BENCH_OUT (default reports/routing)
#
# 1. saas: index examples_store/saas-support, calibrate (k = 8; the secondary threshold
#    is fitted too), eval test.jsonl with --segment-field urgency --edge-field edge, and
#    test-multilingual.jsonl with --segment-field lang --min-segment 5; knn and rag.
# 2. BANKING77: index the train side, eval a seeded sample of BENCH_LIMIT (default 1000)
#    test tickets with knn, zero-shot and rag-always at k = 1,2,4,8,16.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
data="$root/../shared/datasets"
p="${BENCH_P:-0.85}"
limit="${BENCH_LIMIT:-1000}"
out="${BENCH_OUT:-$root/reports/routing}"
./scripts/setup.sh >/dev/null
build_triage
bench_workdir bench-routing
export TRIAGE_DATA_DIR="$work/data"
export TRIAGE_LLM_API_KEY=simulated
mkdir -p "$out"
uptime >"$out/uptime-start.txt"

saas=examples_store/saas-support
"$bin" index "$saas" --collection saas >"$out/saas-index.log" 2>&1
"$bin" calibrate --collection saas >"$out/saas-calibrate.txt" 2>&1
"$bin" calibrate --collection saas --json >"$out/saas-fit.json" 2>/dev/null
start_sim_llm "$work/sim-saas" --gold "$saas/test.jsonl" --gold "$saas/test-multilingual.jsonl" --p "$p" --seed 7
"$bin" eval --test "$saas/test.jsonl" --collection saas --methods knn,rag --k 8 \
    --segment-field urgency --edge-field edge --llm-base-url "$sim_url" --llm-model "sim-p$p" --no-cache \
    --report-dir "$out/saas-test" >"$out/saas-test.txt" 2>&1
"$bin" eval --test "$saas/test-multilingual.jsonl" --collection saas --methods knn,rag --k 8 \
    --segment-field lang --min-segment 5 --llm-base-url "$sim_url" --llm-model "sim-p$p" --no-cache \
    --report-dir "$out/saas-multilingual" >"$out/saas-multilingual.txt" 2>&1
kill "$sim_pid" 2>/dev/null || true
wait "$sim_pid" 2>/dev/null || true

if [ -d "$data/banking77" ]; then
    start_sim_llm "$work/sim-b77" --gold "$data/banking77/test.jsonl" --p "$p" --seed 7
    /usr/bin/time -v -o "$out/banking77-time.txt" "$bin" eval --test "$data/banking77/test.jsonl" \
        --train "$data/banking77/train.jsonl" --methods knn,zero-shot,rag-always --k 1,2,4,8,16 --limit "$limit" \
        --llm-base-url "$sim_url" --llm-model "sim-p$p" --no-cache --concurrency 8 \
        --report-dir "$out/banking77-k-sweep" >"$out/banking77-k-sweep.txt" 2>&1
    curl -s "${sim_url%/v1}/stats" >"$out/banking77-sim-stats.json"
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
else
    echo "bench-routing: ../shared/datasets/banking77 not found: k sweep skipped" >&2
fi
uptime >"$out/uptime-end.txt"
echo "bench-routing: reports in $out" >&2
