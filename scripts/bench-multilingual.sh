#!/usr/bin/env bash
# Speed and memory of the embedding models side by side, in one run (issue 31). Prints one
# JSON object on stdout; progress goes to stderr.
#
#   scripts/bench-multilingual.sh
#   BENCH_MODELS="all-minilm-l6-v2-int8 multilingual-e5-small-qint8" BENCH_INDEX_ROWS=2000 scripts/bench-multilingual.sh
#
# For each model (default: the English all-minilm-l6-v2-int8 and -qint8, the multilingual
# multilingual-e5-small and -qint8), from a fresh data dir:
#  1. index throughput: `triage index` of the first BENCH_INDEX_ROWS (2,000) rows of
#     BANKING77 train, timed by /usr/bin/time (wall, CPU, peak RSS): examples per second;
#  2. `triage index examples_store/shop-multilingual`, then single-ticket latency:
#     `triage bench-latency` on its 300 held-out tickets in six languages, one at a time
#     (p50/p90/p99 of classify, embedding and retrieval alone);
#  3. serve's memory: `triage serve --provider none` on that collection, 100 single-ticket
#     requests (POST /v1/classify), then its resident memory (VmRSS) and peak (VmHWM).
# The load average before and after is in the output: figures taken while other processes
# use the cores are not comparable with a quiet machine's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
models="${BENCH_MODELS:-all-minilm-l6-v2-int8 all-minilm-l6-v2-qint8 multilingual-e5-small multilingual-e5-small-qint8}"
index_rows="${BENCH_INDEX_ROWS:-2000}"
train="$root/../shared/datasets/banking77/train.jsonl"
shop="$root/examples_store/shop-multilingual"
log() { echo "bench-multilingual: $*" >&2; }

log "set-up (models with the multilingual one, release build)"
./scripts/setup.sh --multilingual >&2
build_triage
if ! [ -x /usr/bin/time ] || ! /usr/bin/time -f %e true >/dev/null 2>&1; then
    log "installing GNU time (apt package time)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2 && apt-get install -y -qq time >&2
    else sudo apt-get update -qq >&2 && sudo apt-get install -y -qq time >&2; fi
fi

server_pid=""
bench_cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
bench_workdir bench-multilingual
export TRIAGE_LOG="warn,qdrant_edge=error"
TIMEFMT='{"wall_seconds": %e, "user_seconds": %U, "sys_seconds": %S, "max_rss_kb": %M}'
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
head -n "$index_rows" "$train" >"$work/train.jsonl"
python3 - "$shop/test.jsonl" "$work/bodies" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for r in rows[::3]:
        f.write(json.dumps({"text": r["text"]}) + "\n")
PY
load_before="$(loadavg)"

for m in $models; do
    d="$work/$m"
    mkdir -p "$d"
    export TRIAGE_DATA_DIR="$d/data" TRIAGE_EMBEDDING_MODEL="$m"
    log "$m: index $index_rows BANKING77 rows"
    /usr/bin/time -f "$TIMEFMT" -o "$d/index.time" "$bin" index "$work/train.jsonl" --collection bench --json >"$d/index.json"
    log "$m: index shop-multilingual, single-ticket latency on its 300 test tickets"
    "$bin" index "$shop" --collection shop --json >"$d/index-shop.json"
    "$bin" bench-latency --collection shop --input "$shop/test.jsonl" --n 300 --k 8 >"$d/latency.json"
    log "$m: serve, 100 requests, memory"
    "$bin" serve --collection shop --addr 127.0.0.1:0 --provider none 2>"$d/serve.log" &
    server_pid=$!
    for _ in $(seq 1 600); do
        grep -q "listening on" "$d/serve.log" && break
        sleep 0.1
    done
    url="$(grep -o 'http://[0-9.:]*' "$d/serve.log" | head -1)"
    [ -n "$url" ] || { cat "$d/serve.log" >&2; exit 1; }
    curl -fsS "$url/readyz" >/dev/null
    awk '/VmRSS/ {print $2}' "/proc/$server_pid/status" >"$d/rss-idle"
    while IFS= read -r body; do
        curl -fsS -H 'Content-Type: application/json' -d "$body" "$url/v1/classify" >/dev/null
    done <"$d/../bodies"
    awk '/VmRSS/ {print $2}' "/proc/$server_pid/status" >"$d/rss"
    awk '/VmHWM/ {print $2}' "/proc/$server_pid/status" >"$d/hwm"
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
done
load_after="$(loadavg)"

python3 - "$work" "$load_before" "$load_after" $models <<'PY'
import json, os, sys
work, before, after, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
out = {"what": "per model: index throughput on BANKING77 train rows, single-ticket latency on the 300 tickets of "
               "examples_store/shop-multilingual/test.jsonl (six languages), serve memory after 100 requests",
       "machine": {"cores": os.cpu_count(), "loadavg_before": before, "loadavg_after": after}, "models": {}}
for m in models:
    d = os.path.join(work, m)
    rd = lambda n: json.load(open(os.path.join(d, n)))
    kb = lambda n: int(open(os.path.join(d, n)).read().strip())
    t, idx, lat = rd("index.time"), rd("index.json"), rd("latency.json")
    out["models"][m] = {
        "index": {"rows": idx["rows"], "wall_seconds": t["wall_seconds"],
                  "cpu_seconds": round(t["user_seconds"] + t["sys_seconds"], 2),
                  "examples_per_second": round(idx["rows"] / t["wall_seconds"], 1),
                  "peak_rss_mb": round(t["max_rss_kb"] / 1024, 1)},
        "single_ticket_latency_ms": {"tickets": lat["tickets"], "classify": lat["classify"], "embed": lat["embed"],
                                     "search": lat["search"], "load_seconds": lat["load_seconds"]},
        "serve_memory_mb": {"rss_ready": round(kb("rss-idle") / 1024, 1), "rss_after_100_requests": round(kb("rss") / 1024, 1),
                            "peak": round(kb("hwm") / 1024, 1)},
    }
print(json.dumps(out, indent=2))
PY
