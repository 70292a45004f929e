# Shared helpers for the scripts (sourced, not run).
#
# Sourcing sets $root to the repository (the folder above scripts/).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
#
# build_triage [cargo build flags...]: builds the release binary (quietly) and sets
# $bin to it, wherever cargo put it: `cargo metadata` knows the target directory, so
# CARGO_TARGET_DIR and .cargo/config.toml settings are honoured.
build_triage() {
    cargo build --release --quiet "$@" >&2
    local target
    target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    bin="$target/release/triage"
    [ -x "$bin" ] || { echo "the triage binary is not at $bin after cargo build" >&2; return 1; }
}

# start_sim_llm OUT_PREFIX ARGS...: starts scripts/sim_llm.py with ARGS on a free
# loopback port, waits for it, sets $sim_url (its /v1 base URL) and $sim_pid.
start_sim_llm() {
    local out="$1"
    shift
    python3 "$(dirname "${BASH_SOURCE[0]}")/sim_llm.py" --port 0 "$@" >"$out.out" 2>"$out.err" &
    sim_pid=$!
    local i
    for i in $(seq 1 100); do
        if grep -q '^listening on ' "$out.out" 2>/dev/null; then
            sim_url="$(sed -n 's/^listening on //p' "$out.out")"
            return 0
        fi
        kill -0 "$sim_pid" 2>/dev/null || { cat "$out.err" >&2; return 1; }
        sleep 0.1
    done
    echo "the simulated LLM did not start (see $out.err)" >&2
    return 1
}

# in_scope_rows SRC DST: the JSONL rows of SRC without `"is_oos": true` into DST
# (CLINC150's out-of-scope rows have no right label).
in_scope_rows() {
    python3 - "$1" "$2" <<'PY'
import json, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        if not json.loads(line).get("is_oos"):
            out.write(line)
PY
}

# bench_workdir NAME: sets $work to a fresh temporary folder that goes when the script
# exits, or is kept and named on stderr with BENCH_KEEP=1. At exit, a script's own
# bench_cleanup function (if it defines one) runs first, and a simulated LLM started
# with start_sim_llm is stopped.
bench_workdir() {
    _bench_name="$1"
    work="$(mktemp -d)"
    [ "${BENCH_KEEP:-0}" = 1 ] && echo "$_bench_name: work dir $work" >&2
    trap _bench_exit EXIT
}

_bench_exit() {
    if declare -F bench_cleanup >/dev/null; then bench_cleanup || true; fi
    if [ -n "${sim_pid:-}" ]; then kill "$sim_pid" 2>/dev/null || true; fi
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
