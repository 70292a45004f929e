#!/usr/bin/env bash
# Set up, build, index the bundled saas-support corpus into the embedded store and
# classify the sample tickets. Uses an LLM when one is configured (OXLO_API_KEY,
# TRIAGE_LLM_API_KEY, --llm-base-url via TRIAGE_LLM_BASE_URL, ...); otherwise the
# neighbours' vote (knn), which needs nothing but this machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# The binary wherever cargo puts it (CARGO_TARGET_DIR, .cargo/config.toml).
build_triage
export TRIAGE_DATA_DIR="${TRIAGE_DATA_DIR:-$root/.triage}"
"$bin" index examples_store/saas-support --collection saas-support
"$bin" classify --collection saas-support \
  --input examples_store/saas-support/sample_tickets.txt --format table
