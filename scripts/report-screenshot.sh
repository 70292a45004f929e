#!/usr/bin/env bash
# The eval report as a reader first sees it: `triage eval` (the neighbours' vote, no
# LLM needed) on the bundled BANKING77 subset, then report.html rendered by headless
# Chromium at 1,280 px wide into docs/img/eval-report.png.
#   scripts/report-screenshot.sh [OUT.png] [HEIGHT]     (default docs/img/eval-report.png, 2600 px tall); the Markdown report goes to docs/eval-report-sample.md
# Needs chromium (Debian: apt-get install chromium) or CHROMIUM=/path/to/chrome.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-docs/img/eval-report.png}"
height="${2:-2600}"
chrome="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -n "$chrome" ] || { echo "report-screenshot: no chromium found (apt-get install chromium, or set CHROMIUM)" >&2; exit 2; }
./scripts/setup.sh >/dev/null
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
build_triage
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export TRIAGE_DATA_DIR="$work/data"
fixtures=tests/fixtures/banking77-subset
"$bin" eval --train "$fixtures/train.jsonl" --test "$fixtures/test.jsonl" --methods knn --provider none \
    --report-dir "$work/report" >"$work/eval.log" 2>&1 || { cat "$work/eval.log" >&2; exit 1; }
"$chrome" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="1280,$height" \
    --screenshot="$work/shot.png" "file://$work/report/report.html" >"$work/chrome.log" 2>&1 \
    || { cat "$work/chrome.log" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
cp "$work/shot.png" "$out"
cp "$work/report/report.md" docs/eval-report-sample.md
echo "wrote $out (1280x$height) and docs/eval-report-sample.md from $fixtures"
