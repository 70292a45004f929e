#!/usr/bin/env bash
# One dataset's queue of prototype runs, one after another, 1 thread, niced; a run whose result
# file exists is skipped (the queue can be restarted).
#   scripts/prototypes/tune/sweep.sh DATASET "SIZE:SEED ..."
# e.g. sweep.sh banking77 "10:0 10:1 10:2 full:0 5:0 5:1 5:2 20:0 20:1 20:2 full:1 full:2"
# Full data is tuned for one epoch with at most 64 anchors per label (see README.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dataset="$1"
jobs="$2"
py="${PYTHON:-/work/venv-tune/bin/python}"
results="${TUNE_RESULTS:-$here/results}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for job in $jobs; do
    size="${job%%:*}"
    seed="${job##*:}"
    out="$results/$dataset-$size-s$seed.json"
    if [[ -f "$out" ]]; then
        echo "skip $out" >&2
        continue
    fi
    extra=()
    if [[ "$size" == full ]]; then
        extra=(--epochs 1 --max-anchors-per-label 64)
    fi
    nice -n 10 "$py" "$here/setfit_proto.py" run --dataset "$dataset" --per-label "$size" --seed "$seed" \
        --threads 1 "${extra[@]}"
done
