# Sourced by scripts/bench-writes.sh and scripts/soak.sh (run from the repo root):
# the triage binary to use, a work folder removed on exit together with the
# processes listed in `pids`, and waiting for a "listening on URL" line.

# TRIAGE_BIN, else the release build of this checkout (set-up and build first), with the
# cargo features in TRIAGE_FEATURES when a script needs some (soak.sh: test-doubles).
bin="${TRIAGE_BIN:-}"
if [ -z "$bin" ]; then
    ./scripts/setup.sh >/dev/null
    . scripts/lib.sh
    build_triage ${TRIAGE_FEATURES:+--features "$TRIAGE_FEATURES"}
fi
export TRIAGE_MODELS_DIR="${TRIAGE_MODELS_DIR:-$PWD/models}"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# wait_listening FILE: wait (up to 60 s) until FILE holds "listening on URL"; print URL.
wait_listening() {
    for _ in $(seq 1 600); do
        grep -q "^listening on " "$1" 2>/dev/null && break
        sleep 0.1
    done
    sed -n 's/^listening on \(http[^ ]*\).*/\1/p' "$1" | head -1
}
