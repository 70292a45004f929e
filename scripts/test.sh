#!/usr/bin/env bash
# Set-up and the whole test suite (unit + integration), offline. Fake LLM servers
# run on 127.0.0.1; Qdrant-server tests run only when QDRANT_URL is set.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
cargo test --release --locked "$@"
