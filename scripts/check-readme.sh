#!/usr/bin/env bash
# The README's first screen as a newcomer meets it. Runs ./scripts/quickstart.sh (the
# first set-up command; the second, scripts/test.sh, is what runs this script), then
# every ```bash block of README.md above the line `<!-- first screen ends -->` that
# runs `triage`, each in a fresh shell: `env -i` with a system PATH and a HOME of its
# own, nothing inherited from this shell but the one line quickstart printed to put
# `triage` on PATH (when it printed one), from the repository folder. Every block must
# exit 0 (bash -e: every command in it). Then `cargo install --path . --locked` into a
# temporary root, and that binary classifies from another folder. Both binaries users
# run must be under 100 MB.
#
# Nothing of the user's is touched: quickstart links triage into a temporary folder
# (TRIAGE_BIN_DIR) and the store goes into a temporary data dir (XDG_DATA_HOME), which
# the fresh shells get too. LLM keys are dropped: the commands run with the neighbours'
# vote, offline.
#
#   ./scripts/check-readme.sh            (needs what quickstart needs: python3 with pip, cargo)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
marker='<!-- first screen ends'
max_line=80
limit=$((100 * 1000 * 1000))

line="$(grep -n -m1 -F "$marker" README.md | cut -d: -f1 || true)"
[ -n "$line" ] || { echo "check-readme: README.md has no '$marker' line" >&2; exit 1; }
[ "$line" -le "$max_line" ] || { echo "check-readme: the first screen ends on line $line of README.md (at most $max_line)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/blocks"

# The ```bash blocks above the marker that run triage, one file each.
head -n "$line" README.md | python3 -c '
import sys
out, block, n = sys.argv[1], None, 0
for raw in sys.stdin:
    s = raw.rstrip("\n")
    if block is None and s.strip() == "```bash":
        block = []
    elif block is not None and s.strip() == "```":
        if any(l.lstrip().startswith("triage ") for l in block):
            n += 1
            open(f"{out}/{n:02d}.sh", "w").write("\n".join(block) + "\n")
        block = None
    elif block is not None:
        block.append(s)
if n == 0:
    sys.exit("check-readme: no ```bash block running triage on the first screen")
' "$tmp/blocks"

# A newcomer's shell: no LLM and no Qdrant server (scripts/test.sh exports QDRANT_URL for
# its server tests; quickstart must use the embedded store the fresh shells below use).
no_llm=(-u OXLO_API_KEY -u TRIAGE_LLM_API_KEY -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u TRIAGE_LLM_BASE_URL -u TRIAGE_LLM_PROVIDER
    -u QDRANT_URL -u QDRANT_API_KEY)
echo "check-readme: ./scripts/quickstart.sh" >&2
if ! env "${no_llm[@]}" -u TRIAGE_DATA_DIR TRIAGE_BIN_DIR="$tmp/bin" XDG_DATA_HOME="$tmp/data" \
    ./scripts/quickstart.sh >"$tmp/quickstart.log" 2>&1; then
    cat "$tmp/quickstart.log" >&2
    echo "check-readme: FAILED: ./scripts/quickstart.sh" >&2
    exit 1
fi
last="$(tail -n 1 "$tmp/quickstart.log")"
path_line=""
case "$last" in export\ PATH=*) path_line="$last" ;; esac

system_path=/usr/local/bin:/usr/bin:/bin
fresh() {
    env -i HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" PATH="$system_path" LANG=C.UTF-8 TERM=dumb \
        bash --noprofile --norc -e -o pipefail -c "$1"
}
if fresh 'command -v triage' >/dev/null 2>&1 && [ -n "$path_line" ]; then
    echo "check-readme: a triage is on the system PATH already ($(fresh 'command -v triage')): cannot check quickstart's install" >&2
    exit 1
fi
where="$(fresh "$path_line
command -v triage" || true)"
if [ "$where" != "$tmp/bin/triage" ]; then
    tail -n 5 "$tmp/quickstart.log" >&2
    echo "check-readme: FAILED: after quickstart a fresh shell finds triage at '${where:-nowhere}', not $tmp/bin/triage" >&2
    exit 1
fi

failed=0
for block in "$tmp/blocks"/*.sh; do
    echo "check-readme: block $(basename "$block" .sh):" >&2
    sed 's/^/    /' "$block" >&2
    if fresh "$path_line
cd $(printf '%q' "$root")
$(cat "$block")" >"$block.log" 2>&1; then
        echo "check-readme: ok" >&2
    else
        failed=1
        sed 's/^/  | /' "$block.log" | tail -n 40 >&2
        echo "check-readme: FAILED: the block above (exit status non-zero)" >&2
    fi
done

# cargo install: reuses this checkout's release build (target/), copies the binary.
echo "check-readme: cargo install --path . --locked" >&2
if ! cargo install --path . --locked --quiet --root "$tmp/cargo" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    echo "check-readme: FAILED: cargo install --path . --locked" >&2
    failed=1
elif ! (cd "$tmp/home" && fresh "$(printf '%q' "$tmp/cargo/bin/triage") classify --collection saas-support 'I was charged twice, refund please'") >"$tmp/installed.log" 2>&1; then
    cat "$tmp/installed.log" >&2
    echo "check-readme: FAILED: the cargo-installed triage could not classify from another folder" >&2
    failed=1
fi

for b in "$(readlink -f "$tmp/bin/triage")" "$tmp/cargo/bin/triage"; do
    [ -f "$b" ] || continue
    size="$(stat -c %s "$b")"
    if [ "$size" -ge "$limit" ]; then
        echo "check-readme: FAILED: $b is $size bytes (at most $limit)" >&2
        failed=1
    else
        echo "check-readme: $b: $size bytes" >&2
    fi
done

if [ "$failed" = 0 ]; then
    echo "check-readme: the README's first screen works as written from a fresh shell" >&2
fi
exit "$failed"
