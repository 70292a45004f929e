#!/usr/bin/env bash
# The corpus doctor against label noise. Prints one JSON object.
#
#   scripts/bench-doctor.sh
#
# For BANKING77 (train/test) and CLINC150 in scope (train/test):
# 1. The train side gets an id per row; 5 % of its rows get a random other label
#    (Python's random.Random(SEED), SEED=7 by default), noted per id.
# 2. `clean` is indexed from the clean rows; `noisy` is imported from its export with the
#    flipped labels (same vectors, no second embedding). Both are calibrated, and
#    `triage eval --methods knn --provider none` measures test accuracy (and macro-F1,
#    auto-routed precision) on each.
# 3. `triage doctor --collection noisy --format json --top N` (N = rows flipped):
#    precision at N. The baseline: the same with `--head-only` (rank by 1 - the head's
#    out-of-fold probability of the given label: plain 5-fold out-of-fold logistic
#    regression on the same vectors). The doctor's own list (confident learning's
#    estimate of how many) is scored too: its size, precision and recall.
# 4. `triage doctor --write-review`, every mislabeled row's action set to relabel (its
#    new_label = the doctor's suggestion, as written), `triage examples apply` (which
#    refits), and eval again: test accuracy after the review, against clean and noisy.
# 5. The doctor's wall time on BANKING77 (10,003 examples) is the timing figure.
#
# Environment: SEED (flips), BENCH_KEEP=1 keeps the work dir. About 20 minutes on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
data="$root/../shared/datasets"
[ -d "$data/banking77" ] || { echo "bench-doctor: ../shared/datasets not found" >&2; exit 1; }
seed="${SEED:-7}"
./scripts/setup.sh >/dev/null
build_triage
bench_workdir bench-doctor
export TRIAGE_DATA_DIR="$work/data"
started=$(date +%s)

# prepare NAME TRAIN TEST: ids, flips, test rows (in-scope only).
prepare() {
    python3 - "$work/$1" "$2" "$3" "$seed" <<'PY'
import json, random, sys
out, train, test, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [json.loads(l) for l in open(train) if l.strip()]
rows = [r for r in rows if not r.get("is_oos")]
for i, r in enumerate(rows):
    r["id"] = f"row-{i + 1}"
labels = sorted({r["label"] for r in rows})
rng = random.Random(seed)
flip = rng.sample(range(len(rows)), round(0.05 * len(rows)))
flips = {}
for i in flip:
    r = rows[i]
    new = rng.choice([l for l in labels if l != r["label"]])
    flips[r["id"]] = {"clean": r["label"], "noisy": new}
with open(out + "-train.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps({"id": r["id"], "text": r["text"], "label": r["label"]}) + "\n")
json.dump(flips, open(out + "-flips.json", "w"))
with open(out + "-test.jsonl", "w") as f:
    for l in open(test):
        if l.strip() and not json.loads(l).get("is_oos"):
            f.write(l)
PY
}

# noisy_export NAME: the clean collection's export with the flipped labels.
noisy_export() {
    python3 - "$work/$1" <<'PY'
import json, sys
base = sys.argv[1]
flips = json.load(open(base + "-flips.json"))
with open(base + "-clean.export.jsonl") as src, open(base + "-noisy.export.jsonl", "w") as out:
    out.write(src.readline())
    for line in src:
        p = json.loads(line)
        f = flips.get(p["payload"]["id"])
        if f:
            p["payload"]["label"] = f["noisy"]
        out.write(json.dumps(p) + "\n")
PY
}

# ev COLLECTION DATASET REPORT: test accuracy of the collection's knn (its fit) into $work/REPORT.
ev() { "$bin" eval --collection "$1" --test "$work/$2-test.jsonl" --methods knn --provider none --report-dir "$work/$3" >"$work/$3.log" 2>&1; }

for name in banking77 clinc; do
    case $name in
        banking77) prepare banking77 "$data/banking77/train.jsonl" "$data/banking77/test.jsonl" ;;
        clinc) prepare clinc "$data/clinc150/train.jsonl" "$data/clinc150/test.jsonl" ;;
    esac
    "$bin" index "$work/$name-train.jsonl" --collection "$name-clean" >"$work/$name-index.log" 2>&1
    "$bin" export --collection "$name-clean" -o "$work/$name-clean.export.jsonl" 2>/dev/null
    noisy_export "$name"
    "$bin" import "$work/$name-noisy.export.jsonl" --collection "$name-noisy" >/dev/null
    for c in clean noisy; do
        "$bin" calibrate --collection "$name-$c" >"$work/$name-$c-calibrate.log" 2>&1
        ev "$name-$c" "$name" "$name-$c-eval"
    done
    n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$work/$name-flips.json")
    t0=$(date +%s.%N)
    "$bin" doctor --collection "$name-noisy" --format json --top "$n" >"$work/$name-doctor-top.json" 2>"$work/$name-doctor-top.log"
    t1=$(date +%s.%N)
    python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1" >"$work/$name-doctor-wall"
    "$bin" doctor --collection "$name-noisy" --format json --top "$n" --head-only >"$work/$name-baseline.json" 2>/dev/null
    "$bin" doctor --collection "$name-noisy" --format json --write-review "$work/$name-review.csv" >"$work/$name-doctor.json" 2>/dev/null
    # A person accepting every suggestion: action relabel on the mislabeled rows.
    python3 - "$work/$name-review.csv" <<'PY'
import csv, sys
path = sys.argv[1]
rows = list(csv.DictReader(open(path, newline="")))
for r in rows:
    if "likely mislabeled" in r["finding"] and r["new_label"]:
        r["action"] = "relabel"
with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["action", "id", "label", "new_label"])
    w.writeheader()
    w.writerows(rows)
PY
    "$bin" examples apply "$work/$name-review.csv" --collection "$name-noisy" --json >"$work/$name-apply.json" 2>"$work/$name-apply.log" || true
    ev "$name-noisy" "$name" "$name-fixed-eval"
done

python3 - "$work" "$started" "$seed" <<'PY'
import json, sys, time
work, started, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {"benchmark": "doctor", "date": time.strftime("%Y-%m-%d"), "seed": seed, "results": {}}
def acc(name):
    m = json.load(open(f"{work}/{name}/report.json"))["methods"][0]
    return {k: m.get(k) for k in ["accuracy", "macro_f1", "auto_routed_share", "auto_routed_accuracy"]}
for name in ["banking77", "clinc"]:
    flips = json.load(open(f"{work}/{name}-flips.json"))
    n = len(flips)
    def precision(path):
        d = json.load(open(path))
        ids = [m["id"] for m in d["mislabeled"]]
        return sum(i in flips for i in ids[:n]) / n, d
    p, top = precision(f"{work}/{name}-doctor-top.json")
    b, _ = precision(f"{work}/{name}-baseline.json")
    d = json.load(open(f"{work}/{name}-doctor.json"))
    listed = [m["id"] for m in d["mislabeled"]]
    hit = [i for i in listed if i in flips]
    right_suggestion = sum(1 for m in d["mislabeled"] if m["id"] in flips and m["suggested"] == flips[m["id"]]["clean"])
    applied = json.load(open(f"{work}/{name}-apply.json"))
    clean, noisy, fixed = acc(f"{name}-clean-eval"), acc(f"{name}-noisy-eval"), acc(f"{name}-fixed-eval")
    out["results"][name] = {
        "examples": top["examples"], "labels": top["labels"], "flipped": n,
        "precision_at_n": round(p, 4), "baseline_precision_at_n": round(b, 4),
        "listed": len(listed), "mislabeled_estimate": d["method"]["mislabeled_estimate"],
        "listed_precision": round(len(hit) / max(len(listed), 1), 4), "listed_recall": round(len(hit) / n, 4),
        "suggestion_right_on_flips": round(right_suggestion / max(len(hit), 1), 4),
        "applied": {k: applied[k] for k in ["relabeled", "deleted", "kept"]} | {"refused": len(applied["rejected"])},
        "test_accuracy": {"clean": clean["accuracy"], "noisy": noisy["accuracy"], "after_review": fixed["accuracy"]},
        "macro_f1": {"clean": clean["macro_f1"], "noisy": noisy["macro_f1"], "after_review": fixed["macro_f1"]},
        "auto_routed_accuracy": {"clean": clean["auto_routed_accuracy"], "noisy": noisy["auto_routed_accuracy"], "after_review": fixed["auto_routed_accuracy"]},
        "doctor_seconds": top["seconds"], "doctor_wall_seconds": round(float(open(f"{work}/{name}-doctor-wall").read()), 2),
        "conflicting_duplicates": len(d["conflicting_duplicates"]), "junk": len(d["junk"]),
    }
r = out["results"]
out["targets"] = {}
for name in r:
    x = r[name]
    out["targets"][f"{name}_precision_at_n_at_least_0_95"] = x["precision_at_n"] >= 0.95
    out["targets"][f"{name}_beats_the_baseline"] = x["precision_at_n"] > x["baseline_precision_at_n"]
    out["targets"][f"{name}_after_review_within_half_a_point_of_clean"] = x["test_accuracy"]["clean"] - x["test_accuracy"]["after_review"] <= 0.005
out["targets"]["doctor_on_10k_examples_under_30_s"] = r["banking77"]["doctor_wall_seconds"] < 30
out["seconds"] = int(time.time()) - started
print(json.dumps(out, indent=2))
PY
