#!/usr/bin/env bash
# The neighbours' side without an LLM: the fitted head mixed with the vote, out-of-scope
# examples and language awareness. Prints one JSON object.
#
#   scripts/bench-neighbours.sh
#
# 1. BANKING77: `triage eval --train train --test test --methods knn --calibrate` (k = 8):
#    accuracy and ECE, with the fit's held-out figures (vote, head, mixture).
# 2. CLINC150 in scope: the same on the in-scope rows of both sides.
# 3. CLINC150 with its 100 out-of-scope train rows indexed as negatives
#    (`--out-of-scope-label oos`), on the whole test side (1,000 out-of-scope rows):
#    oos_flag_recall, in-scope accuracy counting an out-of-scope flag as wrong, and the same
#    figure without abstention (the plain in-scope accuracy of run 2 is the reference).
# 4. The bundled saas-support corpus: its held-out test.jsonl (with 15 out-of-scope rows) and
#    test-multilingual.jsonl with `--provider none`: per language, how often the detected
#    language is right and how many non-English tickets were auto-routed (must be 0).
#
# Environment: BENCH_KEEP=1 keeps the work dir (path on stderr). About 12 minutes on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
data="$root/../shared/datasets"
[ -d "$data/banking77" ] || { echo "bench-neighbours: ../shared/datasets not found" >&2; exit 1; }
./scripts/setup.sh >/dev/null
build_triage
bench_workdir bench-neighbours
export TRIAGE_DATA_DIR="$work/data"
started=$(date +%s)
for side in train test; do
    in_scope_rows "$data/clinc150/$side.jsonl" "$work/clinc-in-$side.jsonl"
done
ev() { local name="$1"; shift; "$bin" eval --methods knn --provider none --report-dir "$work/$name" "$@" >"$work/$name.log" 2>&1; }
ev banking77 --train "$data/banking77/train.jsonl" --test "$data/banking77/test.jsonl" --calibrate
ev clinc-in --train "$work/clinc-in-train.jsonl" --test "$work/clinc-in-test.jsonl" --calibrate
ev clinc-oos --train "$data/clinc150/train.jsonl" --test "$data/clinc150/test.jsonl" --calibrate --out-of-scope-label oos
"$bin" index examples_store/saas-support --collection saas >"$work/saas-index.log" 2>&1
"$bin" calibrate --collection saas >"$work/saas-calibrate.log" 2>&1
ev saas-test --collection saas --test examples_store/saas-support/test.jsonl
ev saas-multilingual --collection saas --test examples_store/saas-support/test-multilingual.jsonl

python3 - "$work" "$started" <<'PY'
import json, sys, time
work, started = sys.argv[1], int(sys.argv[2])
def rep(name):
    r = json.load(open(f"{work}/{name}/report.json"))
    return r, r["methods"][0], (r["calibrations"] or [{}])[0]
out = {"benchmark": "neighbours", "date": time.strftime("%Y-%m-%d"), "k": 8, "results": {}}
for name in ["banking77", "clinc-in", "clinc-oos", "saas-test", "saas-multilingual"]:
    r, m, fit = rep(name)
    out["results"][name] = {
        "test_tickets": r["dataset"]["rows"], "out_of_scope_rows": r["dataset"]["out_of_scope_rows"],
        "train_examples": r["dataset"]["train_examples"],
        "accuracy": m["accuracy"], "in_scope_accuracy": m["in_scope_accuracy"],
        "in_scope_accuracy_without_abstention": m["in_scope_accuracy_without_abstention"],
        "oos_flag_recall": m["oos_flag_recall"], "oos_recall_any_review": m["oos_recall"],
        "in_scope_review_rate": m["in_scope_review_rate"], "ece": m["ece"], "in_scope_ece": m["in_scope_ece"],
        "auto_routed_share": m["auto_routed_share"], "auto_routed_accuracy": m["auto_routed_accuracy"],
        "fit": {k: fit.get(k) for k in ["head_weight", "oos", "stats"]} | {"head_seconds": (fit.get("head") or {}).get("seconds")},
    }
m = rep("saas-multilingual")[1]
langs = m["languages"]
non = {l: f for l, f in langs.items() if l != "en"}
out["results"]["saas-multilingual"]["languages"] = {
    "non_english_tickets": sum(f["tickets"] for f in non.values()),
    "non_english_lang_right": sum(f["detected"] for f in non.values()),
    "non_english_auto_routed": sum(f["auto_routed"] for f in non.values()),
    "english_tickets": langs.get("en", {}).get("tickets", 0),
    "english_lang_right": langs.get("en", {}).get("detected", 0),
    "per_language": langs,
}
b, ci, co = out["results"]["banking77"], out["results"]["clinc-in"], out["results"]["clinc-oos"]
ml = out["results"]["saas-multilingual"]["languages"]
out["targets"] = {
    "banking77_accuracy_at_least_0_935": b["accuracy"] >= 0.935,
    "banking77_ece_at_most_0_015": b["ece"] <= 0.015,
    "clinc150_in_scope_accuracy_at_least_0_945": ci["in_scope_accuracy"] >= 0.945,
    "clinc150_oos_flag_recall_at_least_0_80": co["oos_flag_recall"] >= 0.80,
    "clinc150_in_scope_cost_at_most_2_points": ci["in_scope_accuracy"] - co["in_scope_accuracy"] <= 0.02,
    "no_non_english_ticket_auto_routed": ml["non_english_auto_routed"] == 0,
    "lang_right_for_95_percent_of_non_english": ml["non_english_lang_right"] >= 0.95 * ml["non_english_tickets"],
}
out["seconds"] = int(time.time()) - started
print(json.dumps(out, indent=2))
PY
