#!/usr/bin/env bash
# Small categories count: an imbalanced BANKING77, this build side by side with an older
# one, in one run. Prints one JSON object.
#
#   BASELINE_BIN=/path/to/old/triage scripts/bench-imbalance.sh
#   BASELINE_REF=6f57b70 scripts/bench-imbalance.sh     # builds that commit first (cold build: slow)
#
# The train side keeps, for the i-th label in name order (1-based), max(3, round(300 / i))
# examples (seeded shuffle, seed 7): one label with 300, most with 3 to 10; the test side
# is unchanged (40 tickets per label). Each binary indexes it and evaluates the test side
# with --methods knn (k = 8): as a new user gets it (index, then classify) and after
# `triage calibrate` (the old default path to a fitted collection). Reported: accuracy,
# macro-F1, ECE, auto-routed share and accuracy, and the differences new - old (best old).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
data="$root/../shared/datasets"
[ -d "$data/banking77" ] || { echo "bench-imbalance: ../shared/datasets not found" >&2; exit 1; }
./scripts/setup.sh >/dev/null
build_triage
bench_workdir bench-imbalance
if [ -z "${BASELINE_BIN:-}" ]; then
    ref="${BASELINE_REF:?set BASELINE_BIN to an older triage binary, or BASELINE_REF to a commit to build}"
    git worktree add --detach "$work/baseline" "$ref" >&2
    (cd "$work/baseline" && CARGO_TARGET_DIR="$work/baseline-target" cargo build --release --quiet >&2)
    BASELINE_BIN="$work/baseline-target/release/triage"
    bench_cleanup() { git worktree remove --force "$work/baseline" >/dev/null 2>&1 || true; }
fi
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date +%s)

python3 - "$data/banking77/train.jsonl" "$work/train.jsonl" <<'PY'
import json, random, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(r)
rng = random.Random(7)
with open(sys.argv[2], "w") as out:
    for i, label in enumerate(sorted(by), start=1):
        group = by[label][:]
        rng.shuffle(group)
        for r in group[: max(3, round(300 / i))]:
            out.write(json.dumps(r) + "\n")
PY

run() {
    local name="$1" bin="$2"
    TRIAGE_DATA_DIR="$work/data-$name" "$bin" index "$work/train.jsonl" --collection imb >"$work/$name-index.log" 2>&1
    TRIAGE_DATA_DIR="$work/data-$name" "$bin" eval --test "$data/banking77/test.jsonl" --collection imb --methods knn \
        --provider none --report-dir "$work/$name-first" >"$work/$name-first.txt" 2>&1
    TRIAGE_DATA_DIR="$work/data-$name" "$bin" calibrate --collection imb >"$work/$name-calibrate.log" 2>&1
    TRIAGE_DATA_DIR="$work/data-$name" "$bin" eval --test "$data/banking77/test.jsonl" --collection imb --methods knn \
        --provider none --report-dir "$work/$name-calibrated" >"$work/$name-calibrated.txt" 2>&1
}
run new "$bin"
run old "$BASELINE_BIN"

python3 - "$work" "$started" "$load_start" "$BASELINE_BIN" <<'PY'
import json, sys, time
work, started, load, old = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def m(d):
    x = json.load(open(f"{work}/{d}/report.json"))["methods"][0]
    return {k: x.get(k) for k in ["accuracy", "macro_f1", "ece", "auto_routed_share", "auto_routed_accuracy"]}
train = sum(1 for _ in open(f"{work}/train.jsonl"))
out = {"benchmark": "imbalance", "date": time.strftime("%Y-%m-%d"), "train_examples": train, "baseline_bin": old, "results": {}}
for name in ["new", "old"]:
    for when in ["first", "calibrated"]:
        out["results"][f"{name}_{when}"] = m(f"{name}-{when}")
r = out["results"]
best_old = max([r["old_first"], r["old_calibrated"]], key=lambda x: x["macro_f1"] or 0)
new = r["new_first"]
out["new_first_minus_best_old"] = {k: round((new[k] or 0) - (best_old[k] or 0), 4) for k in ["accuracy", "macro_f1"]}
out["target_macro_f1_plus_5_points_at_equal_or_better_accuracy"] = (
    out["new_first_minus_best_old"]["macro_f1"] >= 0.05 and out["new_first_minus_best_old"]["accuracy"] >= 0
)
out["seconds"] = int(time.time()) - started
out["load_average_at_start"] = load
print(json.dumps(out, indent=1))
PY
