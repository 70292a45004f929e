#!/usr/bin/env bash
# The review queue under load: N flagged tickets (default 10,000) queued through
# POST /v1/classify/batch (a review threshold of 1.0 flags every result) on the
# embedded store, then timed with loopback HTTP from one client:
#  - the /ui page's first screen: the requests it makes before it shows the first ticket
#    (/ui, /ui/app.js, /ui/app.css, /v1/review/summary, /v1/collections,
#    /v1/review?limit=50, /ui/session), one after the other as the page does;
#  - GET /v1/review?limit=50: the first page, and pages from the middle of the queue
#    (following next_cursor), and a page filtered by label.
# Prints one JSON object (milliseconds; p50/p99 over the repetitions).
#   scripts/bench-review.sh [N] [REPS]        (defaults 10000, 200)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-10000}"
reps="${2:-200}"
# shellcheck source=scripts/serve-common.sh
. scripts/serve-common.sh
export TRIAGE_DATA_DIR="$work/data" TRIAGE_EMBED_THREADS="${TRIAGE_EMBED_THREADS:-1}"
"$bin" index examples_store/saas-support --collection saas >"$work/index.log" 2>&1 || { cat "$work/index.log" >&2; exit 1; }
"$bin" serve --collection saas --addr 127.0.0.1:0 --provider none --max-batch 500 >"$work/serve.log" 2>&1 &
pids+=($!)
url="$(wait_listening "$work/serve.log")"
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }
python3 - "$url" "$n" "$reps" <<'EOF'
import json, sys, time, urllib.request

base, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def call(path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers={"content-type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()

words = ["invoice", "refund", "login", "export", "crash", "slow", "password", "plan", "upgrade", "webhook",
         "charge", "card", "sync", "mobile", "report", "dashboard", "api", "timeout", "email", "team"]
started = time.time()
for start in range(0, n, 500):
    tickets = [{"id": f"Q-{i}", "text": f"ticket {i}: {words[i % 20]} {words[(i // 20) % 20]} {words[(i // 400) % 20]} problem number {i}"}
               for i in range(start, min(n, start + 500))]
    out = json.loads(call("/v1/classify/batch", {"tickets": tickets, "min_confidence": 1.0}))
    assert all(r["needs_review"] for r in out["results"])
fill_s = time.time() - started
summary = json.loads(call("/v1/review/summary"))
assert summary["open"] >= n, summary

def timed(fn):
    xs = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    xs.sort()
    return {"p50": round(xs[len(xs) // 2], 2), "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2), "max": round(xs[-1], 2)}

def first_screen():
    for p in ["/ui", "/ui/app.js", "/ui/app.css", "/v1/review/summary", "/v1/collections", "/v1/review?limit=50", "/ui/session"]:
        call(p)

# Cursors into the middle of the queue.
cursors, cursor = [], None
for _ in range(100):
    page = json.loads(call("/v1/review?limit=50" + (f"&cursor={cursor}" if cursor else "")))
    cursor = page["next_cursor"]
    if not cursor:
        break
    cursors.append(cursor)
i = [0]
def mid_page():
    call(f"/v1/review?limit=50&cursor={cursors[i[0] % len(cursors)]}")
    i[0] += 1
label = sorted(summary["by_label"].items(), key=lambda kv: kv[1])[0][0]
print(json.dumps({
    "queued": summary["open"],
    "fill_seconds": round(fill_s, 1),
    "reps": reps,
    "first_screen_ms": timed(first_screen),
    "summary_ms": timed(lambda: call("/v1/review/summary")),
    "review_first_page_ms": timed(lambda: call("/v1/review?limit=50")),
    "review_mid_page_ms": timed(mid_page),
    "review_label_filtered_ms": {"label": label, "open": summary["by_label"][label], **timed(lambda: call(f"/v1/review?limit=50&label={urllib.parse.quote(label)}"))},
}, indent=1))
EOF
