#!/usr/bin/env bash
# Load test of `triage serve`: the bundled saas-support corpus, the instant scripted
# LLM (so the whole pipeline runs: embedding, retrieval, vote, prompt, answer
# validation; only the LLM's own time is left out), wrk on loopback with concurrent
# connections for a fixed duration. Prints one JSON object.
#   scripts/bench-api.sh [DURATION_SECONDS] [CONNECTIONS]      (default 30 s, 16 connections)
# Installs wrk from Debian's packages when it is missing (needs apt and root or sudo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
duration="${1:-30}"
connections="${2:-16}"

if ! command -v wrk >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "installing wrk (Debian package)..." >&2
    $sudo_cmd apt-get install -y -q wrk >/dev/null
fi
./scripts/setup.sh >/dev/null
# --provider scripted exists only in builds with the test-doubles feature.
build_triage --features test-doubles

server_pid=""
bench_cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
bench_workdir bench-api
export TRIAGE_DATA_DIR="$work/data"
"$bin" index examples_store/saas-support --collection saas >/dev/null

# Request bodies: the corpus texts with a varying prefix, so no two requests in a row
# are the same text (nothing is cached, but batching sees realistic variety).
python3 - examples_store/saas-support/examples.jsonl "$work/bodies.lua" <<'PY'
import json, sys
texts = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
prefixes = ["", "Hi team, ", "URGENT: ", "Hello, quick question. ", "Following up: "]
bodies = [json.dumps({"text": prefixes[i % len(prefixes)] + t}) for i, t in enumerate(texts)]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("bodies = {\n")
    for b in bodies:
        f.write("  %s,\n" % json.dumps(b))
    f.write("}\n")
PY
cat >>"$work/bodies.lua" <<'LUA'
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, "/v1/classify", nil, bodies[(i % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "requests_per_s": %.1f, "latency_ms_p50": %.2f, "latency_ms_p95": %.2f, "latency_ms_p99": %.2f, "latency_ms_max": %.2f, "errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
LUA

"$bin" serve --collection saas --addr 127.0.0.1:0 --provider scripted 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 600); do
    grep -q "listening on" "$work/serve.log" && break
    sleep 0.1
done
url="$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)"
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }
curl -fsS "$url/readyz" >/dev/null

# Warm-up, then the measured run.
wrk -t1 -c4 -d2s -s "$work/bodies.lua" "$url" >/dev/null
wrk -t2 -c"$connections" -d"${duration}s" --timeout 10s -s "$work/bodies.lua" "$url" >"$work/wrk.txt"
rss_kb="$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")"
curl -fsS "$url/metrics" >"$work/metrics.txt"

python3 - "$work/wrk.txt" "$rss_kb" "$connections" "$duration" "$work/metrics.txt" <<'PY'
import json, sys, re
wrk_txt, rss_kb, connections, duration, metrics_txt = sys.argv[1:6]
line = next(l for l in open(wrk_txt) if l.startswith("WRK_JSON "))
r = json.loads(line[len("WRK_JSON "):])
metrics = open(metrics_txt).read()
def metric(name):
    m = re.search(r"^%s (\d+)" % re.escape(name), metrics, re.M)
    return int(m.group(1)) if m else None
methods = dict(re.findall(r'^triage_classifications_total\{method="([^"]+)"\} (\d+)', metrics, re.M))
out = {
    "benchmark": "api", "endpoint": "POST /v1/classify", "llm": "scripted (instant)",
    "connections": int(connections), "wrk_threads": 2, "duration_s": r["duration_s"],
    "requests": r["requests"], "requests_per_s": r["requests_per_s"],
    "latency_ms_p50": r["latency_ms_p50"], "latency_ms_p95": r["latency_ms_p95"],
    "latency_ms_p99": r["latency_ms_p99"], "latency_ms_max": r["latency_ms_max"],
    "errors": {k[len("errors_"):]: v for k, v in r.items() if k.startswith("errors_")},
    "rejected_busy": metric("triage_rejected_busy_total"),
    "classifications_by_method": {k: int(v) for k, v in methods.items()},
    "server_peak_rss_mb": round(int(rss_kb) / 1024, 1),
    "cores": __import__("os").cpu_count(),
}
print(json.dumps(out, indent=2))
PY
