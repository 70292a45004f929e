#!/usr/bin/env bash
# Write throughput of `triage serve`: POST /v1/examples with one new example per
# request, from CONCURRENCY clients at once (Python standard library, keep-alive), on
# loopback against the embedded store holding the bundled saas-support corpus. Prints
# one JSON object per concurrency level.
#   scripts/bench-writes.sh [REQUESTS] [CONCURRENCY...]      (default 400 requests; 1 and 8 clients)
#   TRIAGE_BIN=/path/to/triage scripts/bench-writes.sh ...   (another build, e.g. to compare before/after)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
requests="${1:-400}"
shift || true
levels=("$@")
[ ${#levels[@]} -eq 0 ] && levels=(1 8)
. scripts/serve-common.sh
TRIAGE_DATA_DIR="$work/golden" "$bin" index examples_store/saas-support --collection saas >/dev/null

for c in "${levels[@]}"; do
    rm -rf "$work/data" "$work/serve.log" && cp -a "$work/golden" "$work/data"
    TRIAGE_DATA_DIR="$work/data" "$bin" serve --collection saas --addr 127.0.0.1:0 --provider none 2>"$work/serve.log" &
    server_pid=$!
    pids=("$server_pid")
    base="$(wait_listening "$work/serve.log")"
    [ -n "$base" ] || { cat "$work/serve.log" >&2; exit 1; }
    python3 - "$base" "$requests" "$c" <<'PY'
import http.client, json, sys, threading, time, urllib.parse
base, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlparse(base)
latencies, errors, lock = [], [], threading.Lock()
counter = iter(range(n))
def worker(w):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        body = json.dumps({"examples": [{"id": f"bench-{i}", "label": "Billing",
                "text": f"Write benchmark {i}: I was charged {i % 97} times for invoice {i * 7919 % 100003}"}]})
        t = time.perf_counter()
        conn.request("POST", "/v1/examples", body, {"Content-Type": "application/json"})
        r = conn.getresponse(); data = r.read()
        dt = time.perf_counter() - t
        with lock:
            if r.status == 200 and json.loads(data)["indexed"] == 1:
                latencies.append(dt)
            else:
                errors.append(r.status)
started = time.perf_counter()
threads = [threading.Thread(target=worker, args=(w,)) for w in range(c)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.perf_counter() - started
latencies.sort()
pct = lambda p: round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 2) if latencies else None
print(json.dumps({"clients": c, "requests": n, "stored": len(latencies), "errors": len(errors), "seconds": round(wall, 3),
                  "examples_per_s": round(len(latencies) / wall, 1), "latency_ms_p50": pct(50), "latency_ms_p99": pct(99)}))
PY
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; pids=()
done
