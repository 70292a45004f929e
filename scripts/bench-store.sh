#!/usr/bin/env bash
# Embedded-store benchmark. Prints one JSON object.
#
#   scripts/bench-store.sh
#
# 1. Builds the release binary.
# 2. Generates BENCH_N examples (default 100,000): the BANKING77 train set (10,003 rows,
#    ../shared/datasets/banking77, CC BY 4.0) plus variants made by small deterministic
#    edits (greetings, sign-offs, "my" -> "the", case, a dropped letter), each with its
#    row's label.
# 3. `triage index` of all of them into a fresh embedded store, timed: wall time,
#    examples/s, peak RSS (/usr/bin/time -v; the process that embeds and stores), disk
#    size of the data dir (du). Embedding dominates the indexing time.
# 4. A BENCH_SMALL-example collection (default 10,000) made without re-embedding:
#    `triage export` of the big one, the first BENCH_SMALL examples, `triage import`.
# 5. Retrieval latency at both sizes: a hidden `triage bench-search` embeds BENCH_QUERIES
#    BANKING77 test tickets once, then times each store search alone (24 candidates, what
#    `classify` asks for with k = 8), after 20 warm-up searches: p50/p99 in ms. Embedding
#    time per ticket is reported separately.
#
# Environment: BENCH_N, BENCH_SMALL, BENCH_QUERIES (default 500), TRIAGE_EMBED_THREADS
# (default: all cores), BENCH_KEEP=1 keeps the work dir (path on stderr).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${BENCH_N:-100000}"
small="${BENCH_SMALL:-10000}"
queries="${BENCH_QUERIES:-500}"
train="$root/../shared/datasets/banking77/train.jsonl"
test="$root/../shared/datasets/banking77/test.jsonl"
[ -f "$train" ] && [ -f "$test" ] || { echo "bench-store: BANKING77 not found under ../shared/datasets" >&2; exit 1; }
[ "$small" -le "$n" ] || { echo "bench-store: BENCH_SMALL must not exceed BENCH_N" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-store: /usr/bin/time (GNU time) is required for peak RSS" >&2; exit 1; }

./scripts/setup.sh >/dev/null
cargo build --release --quiet
bin="$root/target/release/triage"
work="$(mktemp -d)"
if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-store: work dir $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

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

export TRIAGE_DATA_DIR="$work/big"
/usr/bin/time -v -o "$work/time.txt" "$bin" index "$work/examples.jsonl" --collection bench --json >"$work/index.json"
disk_bytes=$(du -sb "$work/big" | cut -f1)
"$bin" bench-search --collection bench --input "$work/queries.jsonl" >"$work/search-big.json"

t0=$(date +%s.%N)
"$bin" export --collection bench --output "$work/export.jsonl" 2>/dev/null
t1=$(date +%s.%N)
head -n $((small + 1)) "$work/export.jsonl" >"$work/export-small.jsonl"
export TRIAGE_DATA_DIR="$work/small"
t2=$(date +%s.%N)
"$bin" import "$work/export-small.jsonl" --collection bench --json >"$work/import.json"
t3=$(date +%s.%N)
"$bin" bench-search --collection bench --input "$work/queries.jsonl" >"$work/search-small.json"
export_bytes=$(stat -c %s "$work/export.jsonl")

python3 - "$work" "$n" "$small" "$disk_bytes" "$export_bytes" "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, os, platform, re, sys
work, n, small, disk, export_bytes, t0, t1, t2, t3 = sys.argv[1:10]
time_txt = open(os.path.join(work, "time.txt")).read()
def field(name):
    m = re.search(r"^\s*" + re.escape(name) + r": (.+)$", time_txt, re.M)
    return m.group(1).strip() if m else None
def wall(s):
    parts = [float(p) for p in s.split(":")]
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return secs
index = json.load(open(os.path.join(work, "index.json")))
wall_s = wall(field("Elapsed (wall clock) time (h:mm:ss or m:ss)"))
big = json.load(open(os.path.join(work, "search-big.json")))
sm = json.load(open(os.path.join(work, "search-small.json")))
imp = json.load(open(os.path.join(work, "import.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(json.dumps({
    "backend": "edge (Qdrant Edge, embedded)",
    "embedding_model": os.environ.get("TRIAGE_EMBEDDING_MODEL", "all-minilm-l6-v2-int8"),
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "embed_workers": os.environ.get("TRIAGE_EMBED_WORKERS", "one per core"), "embed_threads": os.environ.get("TRIAGE_EMBED_THREADS", "cores / workers")},
    "index": {
        "examples": index["points_in_collection"],
        "wall_seconds": round(wall_s, 1),
        "examples_per_second": round(index["points_in_collection"] / wall_s, 1),
        "peak_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
        "cpu_percent": field("Percent of CPU this job got"),
        "disk_mb": round(int(disk) / 2**20, 1),
    },
    "export": {"examples": int(n), "seconds": round(float(t1) - float(t0), 1), "file_mb": round(int(export_bytes) / 2**20, 1)},
    "import": {"examples": imp["examples"], "seconds": round(float(t3) - float(t2), 1)},
    "search": {
        str(sm["examples"]): {k: sm[k] for k in ("queries", "limit", "search_ms_p50", "search_ms_p99", "search_ms_mean")},
        str(big["examples"]): {k: big[k] for k in ("queries", "limit", "search_ms_p50", "search_ms_p99", "search_ms_mean")},
        "embed_ms_per_query_batched": big["embed_ms_per_ticket_batched"],
    },
}, indent=2))
PY
