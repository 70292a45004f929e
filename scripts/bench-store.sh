#!/usr/bin/env bash
# Store benchmark on the embedded store, a single Qdrant server and a 3-node Qdrant cluster.
# Prints one JSON object (progress on stderr).
#
#   scripts/bench-store.sh                          # edge, server, cluster, server-int8
#   BENCH_BACKENDS=edge scripts/bench-store.sh      # a subset
#
# 1. Builds the release binary.
# 2. Generates BENCH_N examples (default 100,000): the BANKING77 train set (10,003 rows,
#    ../shared/datasets/banking77, CC BY 4.0) plus variants made by small deterministic
#    edits (greetings, sign-offs, "my" -> "the", case, a dropped letter), each with its
#    row's label.
# 3. Per backend, `triage index` of all of them into a fresh store, timed: wall time,
#    examples/s, peak RSS of triage (/usr/bin/time -v; for the embedded store that process
#    also holds the store), RSS of the Qdrant process(es) once the collection is optimised
#    and at the end, and their peak (VmRSS, VmHWM, summed over the nodes), disk (du of the data dir or of the nodes' storage, once the
#    server reports the collection optimised). Embedding dominates the indexing time.
#    - edge: the embedded Qdrant Edge store.
#    - server: one Qdrant node (scripts/qdrant-cluster.sh --single), default settings.
#    - cluster: 3 Qdrant nodes on this machine, collection made with BENCH_CLUSTER_FLAGS
#      (default --shards 3 --replication-factor 2: every example stored twice).
#    - server-int8: a fresh single node, the 100,000 imported from the float collection's
#      export (no embedding) with --quantization int8 --on-disk-vectors --on-disk-payload;
#      also reports how many of the k = 8 neighbours of each query match the float
#      collection's.
# 4. A BENCH_SMALL-example collection (default 10,000) per backend, made without
#    re-embedding: `triage export` of the big one, the first BENCH_SMALL examples,
#    `triage import`.
# 5. Retrieval latency at both sizes: a hidden `triage bench-search` embeds BENCH_QUERIES
#    BANKING77 test tickets once, then times each store search alone (24 candidates, what
#    `classify` asks for with k = 8), after 20 warm-up searches: p50/p99 in ms. Embedding
#    time per ticket is reported separately. On the server backends this includes the gRPC
#    round trip on loopback.
#
# Environment: BENCH_N, BENCH_SMALL, BENCH_QUERIES (default 500), BENCH_BACKENDS,
# BENCH_CLUSTER_FLAGS, BENCH_BIN (a built triage instead of `cargo build --release`),
# TRIAGE_EMBED_THREADS, QDRANT_BIN (default ../shared/bin/qdrant;
# without it the server backends are skipped, and the output says so), BENCH_KEEP=1 keeps
# the work dir (path on stderr).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
n="${BENCH_N:-100000}"
small="${BENCH_SMALL:-10000}"
queries="${BENCH_QUERIES:-500}"
backends="${BENCH_BACKENDS:-edge server cluster server-int8}"
cluster_flags="${BENCH_CLUSTER_FLAGS:---shards 3 --replication-factor 2}"
train="$root/../shared/datasets/banking77/train.jsonl"
test="$root/../shared/datasets/banking77/test.jsonl"
[ -f "$train" ] && [ -f "$test" ] || { echo "bench-store: BANKING77 not found under ../shared/datasets" >&2; exit 1; }
[ "$small" -le "$n" ] || { echo "bench-store: BENCH_SMALL must not exceed BENCH_N" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-store: /usr/bin/time (GNU time) is required for peak RSS" >&2; exit 1; }
qdrant_bin="${QDRANT_BIN:-$root/../shared/bin/qdrant}"

./scripts/setup.sh >/dev/null
if [ -n "${BENCH_BIN:-}" ]; then
    bin="$BENCH_BIN"
else
    build_triage
fi
clusters=()
bench_cleanup() {
    for c in "${clusters[@]}"; do ./scripts/qdrant-cluster.sh stop "$c" >/dev/null 2>&1 || true; done
}
bench_workdir bench-store
log() { echo "bench-store: $*" >&2; }

python3 - "$train" "$n" "$work/examples.jsonl" <<'PY'
import json, sys
train, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [json.loads(l) for l in open(train) if l.strip()]
prefixes = ["", "Hi, ", "Hello, ", "Hey team, ", "Good morning. ", "Quick question: ", "Sorry to bother you, ", "Help! "]
suffixes = ["", " Thanks.", " Thank you!", " Please help.", " Cheers", " Any idea?", " Regards, Sam", " ASAP please."]
def variant(text, v):
    t = text
    if v % 5 == 1:
        t = t.replace(" my ", " the ")
    if v % 5 == 2:
        t = t.lower()
    if v % 5 == 3 and len(t) > 12:
        i = 5 + (v * 7) % (len(t) - 10)
        t = t[:i] + t[i + 1:]
    if v % 5 == 4:
        t = t.rstrip("?.!") + "??"
    return prefixes[v % len(prefixes)] + t + suffixes[(v // len(prefixes)) % len(suffixes)]
with open(out, "w") as f:
    v = 0
    written = 0
    while written < n:
        for i, r in enumerate(rows):
            if written == n:
                break
            text = r["text"] if v == 0 else variant(r["text"], v)
            f.write(json.dumps({"id": f"b77-{i}-{v}", "text": text, "label": r["label"], "lang": "en"}) + "\n")
            written += 1
        v += 1
PY
head -n "$queries" "$test" >"$work/queries.jsonl"

# Sum of a /proc/PID/status field (kB) over the Qdrant nodes of cluster dir $1.
qdrant_kb() {
    local total=0 f
    for f in "$1"/node*/pid; do
        [ -f "$f" ] || continue
        local kb
        kb=$(awk -v k="$2:" '$1 == k {print $2}' "/proc/$(cat "$f")/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# Wait until every node reports collection $2 optimised (status green).
wait_green() {
    local dir="$1" name="$2" i http
    . "$dir/env"
    for i in $(seq 1 "$NODES"); do
        http="$(eval echo "\$NODE${i}_HTTP")"
        for _ in $(seq 1 1800); do
            if curl -sf "http://127.0.0.1:$http/collections/$name" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["result"]["status"] == "green" else 1)'; then
                break
            fi
            sleep 1
        done
    done
}

# run_backend NAME: index (or import), small collection, searches; writes $work/NAME/result.json.
run_backend() {
    local b="$1" d="$work/$1" flags=() qdir="" start_args=()
    mkdir -p "$d"
    export TRIAGE_DATA_DIR="$d/data"
    unset QDRANT_URL
    case "$b" in
    edge) ;;
    server | server-int8 | cluster)
        if [ ! -x "$qdrant_bin" ]; then
            log "SKIPPED $b: no Qdrant binary at $qdrant_bin (set QDRANT_BIN)"
            echo '{"skipped": "no Qdrant binary"}' >"$d/result.json"
            return
        fi
        qdir="$d/qdrant"
        [ "$b" = cluster ] || start_args=(--single)
        QDRANT_BIN="$qdrant_bin" ./scripts/qdrant-cluster.sh start "$qdir" "${start_args[@]}" >/dev/null
        clusters+=("$qdir")
        QDRANT_URL="$(. "$qdir/env" && echo "$QDRANT_URL")"
        export QDRANT_URL
        ;;
    *) log "unknown backend $b"; exit 1 ;;
    esac
    [ "$b" = cluster ] && read -r -a flags <<<"$cluster_flags"
    [ "$b" = server-int8 ] && flags=(--quantization int8 --on-disk-vectors --on-disk-payload)

    if [ "$b" = server-int8 ]; then
        log "$b: importing the float collection's export (${flags[*]})"
        /usr/bin/time -v -o "$d/time.txt" "$bin" import "$work/export.jsonl" --collection bench "${flags[@]}" --json >"$d/index.json"
    else
        log "$b: indexing $n examples ${flags[*]}"
        /usr/bin/time -v -o "$d/time.txt" "$bin" index "$work/examples.jsonl" --collection bench "${flags[@]}" --json >"$d/index.json"
    fi
    [ -z "$qdir" ] || wait_green "$qdir" bench
    local disk qpeak=0 qidx=0 qrss=0
    if [ -n "$qdir" ]; then
        disk=$(du -sbc "$qdir"/node*/storage | tail -n1 | cut -f1)
        qidx=$(qdrant_kb "$qdir" VmRSS)
    else
        disk=$(du -sb "$d/data" | cut -f1)
    fi
    "$bin" bench-search --collection bench --input "$work/queries.jsonl" >"$d/search-big.json"
    "$bin" classify --collection bench --provider none --input "$work/queries.jsonl" --format jsonl >"$d/neighbours.jsonl"
    if [ "$b" = edge ] || [ ! -f "$work/export.jsonl" ]; then
        "$bin" export --collection bench --output "$work/export.jsonl" 2>/dev/null
    fi
    head -n $((small + 1)) "$work/export.jsonl" >"$d/export-small.jsonl"
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" import "$d/export-small.jsonl" --collection bench-small "${flags[@]}" --json >"$d/import.json"
    t1=$(date +%s.%N)
    [ -z "$qdir" ] || wait_green "$qdir" bench-small
    "$bin" bench-search --collection bench-small --input "$work/queries.jsonl" >"$d/search-small.json"
    if [ -n "$qdir" ]; then
        qrss=$(qdrant_kb "$qdir" VmRSS)
        qpeak=$(qdrant_kb "$qdir" VmHWM)
    fi
    python3 - "$d" "$b" "$disk" "$qpeak" "$qidx" "$qrss" "$t0" "$t1" "${flags[*]:-}" "$work/edge/neighbours.jsonl" <<'PY'
import json, os, re, sys
d, b, disk, qpeak, qidx, qrss, t0, t1, flags, edge_nb = sys.argv[1:11]
time_txt = open(os.path.join(d, "time.txt")).read()
def field(name):
    m = re.search(r"^\s*" + re.escape(name) + r": (.+)$", time_txt, re.M)
    return m.group(1).strip() if m else None
def wall(s):
    secs = 0.0
    for p in s.split(":"):
        secs = secs * 60 + float(p)
    return secs
index = json.load(open(os.path.join(d, "index.json")))
examples = index.get("points_in_collection", index.get("examples_in_collection"))
wall_s = wall(field("Elapsed (wall clock) time (h:mm:ss or m:ss)"))
big = json.load(open(os.path.join(d, "search-big.json")))
sm = json.load(open(os.path.join(d, "search-small.json")))
imp = json.load(open(os.path.join(d, "import.json")))
keys = ("queries", "limit", "search_ms_p50", "search_ms_p99", "search_ms_mean")
out = {
    "settings": flags or "defaults",
    "index" if b != "server-int8" else "import": {
        "examples": examples,
        "wall_seconds": round(wall_s, 1),
        "examples_per_second": round(examples / wall_s, 1),
        "triage_peak_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
        "triage_cpu_percent": field("Percent of CPU this job got"),
        "disk_mb": round(int(disk) / 2**20, 1),
    },
    "import_small": {"examples": imp["examples"], "seconds": round(float(t1) - float(t0), 1)},
    "search": {
        str(sm["examples"]): {k: sm[k] for k in keys},
        str(big["examples"]): {k: big[k] for k in keys},
        "embed_ms_per_query_batched": big["embed_ms_per_ticket_batched"],
    },
}
if b != "edge":
    # Summed over the nodes. Peak: the whole run (both collections); after index: the
    # big collection alone, optimised; at end: both collections loaded.
    out["qdrant"] = {"nodes": 3 if b == "cluster" else 1, "rss_mb_after_index": round(int(qidx) / 1024, 1),
                     "rss_mb_at_end": round(int(qrss) / 1024, 1), "peak_rss_mb": round(int(qpeak) / 1024, 1)}
def ids(path):
    return [[n["id"] for n in json.loads(l)["neighbors"]] for l in open(path) if l.strip()]
if b != "edge" and os.path.exists(edge_nb):
    mine, ref = ids(os.path.join(d, "neighbours.jsonl")), ids(edge_nb)
    same = sum(len(set(a) & set(r)) for a, r in zip(mine, ref))
    total = sum(len(r) for r in ref)
    out["neighbours_same_as_edge"] = {"k": 8, "queries": len(ref), "share": round(same / total, 4)}
json.dump(out, open(os.path.join(d, "result.json"), "w"))
PY
    if [ -n "$qdir" ]; then ./scripts/qdrant-cluster.sh stop "$qdir" >/dev/null; rm -rf "$qdir"/node*/storage; fi
    rm -rf "$d/data"
}

for b in $backends; do run_backend "$b"; done

python3 - "$work" "$backends" <<'PY'
import json, os, platform, sys
work, backends = sys.argv[1], sys.argv[2].split()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(json.dumps({
    "embedding_model": os.environ.get("TRIAGE_EMBEDDING_MODEL", "all-minilm-l6-v2-int8"),
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "load_average_at_end": os.getloadavg()[0],
                "embed_workers": os.environ.get("TRIAGE_EMBED_WORKERS", "one per core"),
                "embed_threads": os.environ.get("TRIAGE_EMBED_THREADS", "cores / workers")},
    "backends": {b: json.load(open(os.path.join(work, b, "result.json"))) for b in backends},
}, indent=2))
PY
