#!/usr/bin/env bash
# Accuracy of the embedding models side by side (issue 31): `triage eval --methods knn
# --provider none --calibrate` (the neighbours' side fitted on the train side, as
# `triage calibrate` does; no LLM) on
#   shop   examples_store/shop-multilingual: 162 examples, 300 held-out tickets in six
#          languages, reported per language (--segment-field lang);
#   b77    BANKING77 (10,003 train rows, 3,080 test tickets, English);
#   clinc  CLINC150 in scope (15,000 train rows, 4,500 test tickets, English).
# Prints one JSON object: per model and data set, accuracy, macro-F1, review rate,
# auto-routed share and accuracy, and per language (shop) tickets, accuracy, auto-routed
# share and accuracy. The eval reports stay in REPORT_DIR (default: a temporary folder).
#
#   scripts/accuracy-multilingual.sh
#   ACC_MODELS="all-minilm-l6-v2-int8 multilingual-e5-small-qint8" ACC_SETS="shop" scripts/accuracy-multilingual.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
models="${ACC_MODELS:-all-minilm-l6-v2-int8 multilingual-e5-small multilingual-e5-small-qint8}"
sets="${ACC_SETS:-shop b77 clinc}"
D="$root/../shared/datasets"
log() { echo "accuracy-multilingual: $*" >&2; }

./scripts/setup.sh --multilingual >&2
build_triage
bench_workdir accuracy-multilingual
reports="${REPORT_DIR:-$work/reports}"
mkdir -p "$reports"
export TRIAGE_DATA_DIR="$work/data" TRIAGE_LOG="warn,qdrant_edge=error"
in_scope_rows "$D/clinc150/train.jsonl" "$work/clinc-in-train.jsonl"
in_scope_rows "$D/clinc150/test.jsonl" "$work/clinc-in-test.jsonl"

for m in $models; do
    for s in $sets; do
        case "$s" in
            shop) train=examples_store/shop-multilingual; test=examples_store/shop-multilingual/test.jsonl
                  extra=(--segment-field lang --min-segment 30) ;;
            b77) train="$D/banking77/train.jsonl"; test="$D/banking77/test.jsonl"; extra=() ;;
            clinc) train="$work/clinc-in-train.jsonl"; test="$work/clinc-in-test.jsonl"; extra=() ;;
            *) echo "unknown set $s" >&2; exit 2 ;;
        esac
        log "$m on $s"
        "$bin" eval --embedding-model "$m" --methods knn --provider none --calibrate --k 8 \
            --train "$train" --test "$test" "${extra[@]}" --report-dir "$reports/$m-$s" >"$reports/$m-$s.out" 2>&1 \
            || { cat "$reports/$m-$s.out" >&2; exit 1; }
    done
done

python3 - "$reports" "$sets" $models <<'PY'
import json, os, sys
reports, sets, models = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
out = {"what": "triage eval --methods knn --provider none --calibrate --k 8", "models": {}}
for m in models:
    out["models"][m] = {}
    for s in sets:
        r = json.load(open(os.path.join(reports, f"{m}-{s}", "report.json")))
        row = r["methods"][0] if "methods" in r else r["runs"][0]
        fig = {k: row.get(k) for k in ("tickets", "accuracy", "macro_f1", "needs_review_rate",
                                        "auto_routed_share", "auto_routed_accuracy")}
        if row.get("languages"):
            fig["languages"] = row["languages"]
        out["models"][m][s] = fig
print(json.dumps(out, indent=2))
PY
