#!/usr/bin/env bash
# Screenshots of the review page (/ui) from the real server: the bundled corpus indexed,
# `triage serve` on loopback (no API key, so no sign-in), the corpus's first 40 test tickets
# classified with a review threshold they do not all reach (the flagged ones are queued),
# then headless Chromium renders /ui at 1,280 px (queue and ticket view side by side) and
# at phone width (390 px).
#   scripts/review-screenshots.sh [OUT_DIR]     (default docs/img: review-queue.png, review-phone.png)
# Needs chromium (Debian: apt-get install chromium) or CHROMIUM=/path/to/chrome.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-docs/img}"
chrome="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -n "$chrome" ] || { echo "review-screenshots: no chromium found (apt-get install chromium, or set CHROMIUM)" >&2; exit 2; }
# shellcheck source=scripts/serve-common.sh
. scripts/serve-common.sh
export TRIAGE_DATA_DIR="$work/data"
"$bin" index examples_store/saas-support --collection saas >"$work/index.log" 2>&1 || { cat "$work/index.log" >&2; exit 1; }
"$bin" serve --collection saas --addr 127.0.0.1:0 --provider none >"$work/serve.log" 2>&1 &
pids+=($!)
url="$(wait_listening "$work/serve.log")"
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }
python3 - "$url" examples_store/saas-support/test.jsonl <<'EOF'
import json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()][:40]
tickets = [{"id": r.get("id", f"T-{i + 1}"), "text": r["text"]} for i, r in enumerate(rows)]
req = urllib.request.Request(base + "/v1/classify/batch", data=json.dumps({"tickets": tickets, "min_confidence": 0.9}).encode(),
                             headers={"content-type": "application/json"})
out = json.load(urllib.request.urlopen(req))
print(f"{sum(r['needs_review'] for r in out['results'])} of {len(tickets)} test tickets flagged", file=sys.stderr)
EOF
mkdir -p "$out"
shot() {
    "$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$work/profile-$1" \
        --window-size="$2" --virtual-time-budget=5000 --screenshot="$out/$1" "$url/ui" >"$work/chrome.log" 2>&1 \
        || { cat "$work/chrome.log" >&2; exit 1; }
}
shot review-queue.png 1280,900
shot review-phone.png 390,1100
echo "wrote $out/review-queue.png (1280x900) and $out/review-phone.png (390x1100) from $url/ui"
