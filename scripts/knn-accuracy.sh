#!/usr/bin/env bash
# Accuracy of `triage classify --provider none` (the neighbours' vote) on a labeled
# test set after indexing a train set, with the wall time of each step. Prints JSON.
#   scripts/knn-accuracy.sh [TRAIN.jsonl] [TEST.jsonl] [K]
# Default: BANKING77 from ../shared/datasets (official split), k = 8.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
train="${1:-$root/../shared/datasets/banking77/train.jsonl}"
test="${2:-$root/../shared/datasets/banking77/test.jsonl}"
k="${3:-8}"
./scripts/setup.sh >/dev/null
build_triage
bench_workdir knn-accuracy
export TRIAGE_DATA_DIR="$work/data"
t0=$(date +%s.%N)
"$bin" index "$train" --collection bench --json >"$work/index.json"
t1=$(date +%s.%N)
"$bin" classify --collection bench --provider none --k "$k" --input "$test" --format jsonl --output "$work/pred.jsonl"
t2=$(date +%s.%N)
python3 - "$test" "$work/pred.jsonl" "$work/index.json" "$t0" "$t1" "$t2" "$k" "$train" <<'PY'
import json, sys
test, pred, index, t0, t1, t2, k, train = sys.argv[1:9]
gold = [json.loads(l) for l in open(test) if l.strip()]
preds = [json.loads(l) for l in open(pred) if l.strip()]
assert len(gold) == len(preds), (len(gold), len(preds))
correct = sum(g["label"] == p["category"] for g, p in zip(gold, preds))
auto = [(g, p) for g, p in zip(gold, preds) if not p["needs_review"]]
rep = json.load(open(index))
print(json.dumps({
    "train": train, "test": test, "k": int(k),
    "train_examples_indexed": rep["points_in_collection"], "train_rows_rejected": len(rep["rejected"]),
    "test_tickets": len(gold),
    "accuracy": round(correct / len(gold), 4),
    "needs_review_rate": round(1 - len(auto) / len(gold), 4),
    "accuracy_of_auto_routed": round(sum(g["label"] == p["category"] for g, p in auto) / max(1, len(auto)), 4),
    "index_seconds": round(float(t1) - float(t0), 2),
    "classify_seconds": round(float(t2) - float(t1), 2),
}, indent=2))
PY
