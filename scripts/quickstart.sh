#!/usr/bin/env bash
# Set up, build, index the bundled saas-support corpus into the embedded store and
# classify the sample tickets. Uses an LLM when one is configured (OXLO_API_KEY,
# TRIAGE_LLM_API_KEY, --llm-base-url via TRIAGE_LLM_BASE_URL, ...); otherwise the
# neighbours' vote (knn), which needs nothing but this machine.
#
# The collection goes into the data dir every `triage` command uses by default (the
# per-user $XDG_DATA_HOME/ticket-triage, else ~/.local/share/ticket-triage; TRIAGE_DATA_DIR
# if set), so the README's commands find it from a new shell. Then `triage` is put where
# the shell finds it: a link $TRIAGE_BIN_DIR/triage (default ~/.local/bin/triage) to the
# release binary; when that folder is not on PATH, the last line printed is the one line
# that puts it there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# The binary wherever cargo puts it (CARGO_TARGET_DIR, .cargo/config.toml).
build_triage
"$bin" index examples_store/saas-support --collection saas-support
"$bin" classify --collection saas-support \
  --input examples_store/saas-support/sample_tickets.txt --format table

# A link, not a copy: a later build is what `triage` runs, and the binary finds models/
# next to the build it really is.
bin_dir="${TRIAGE_BIN_DIR:-$HOME/.local/bin}"
link="$bin_dir/triage"
mkdir -p "$bin_dir"
if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "quickstart: $link exists and is not a link made by this script: left as it is; the build is $bin" >&2
else
    ln -sfn "$bin" "$link"
fi
echo
found="$(command -v triage || true)"
case ":$PATH:" in
    *":$bin_dir:"*)
        if [ -n "$found" ] && [ "$found" != "$link" ]; then
            echo "quickstart: note: another triage comes first on your PATH: $found" >&2
        fi
        echo "triage is on your PATH: $link -> $bin"
        echo "try: triage classify --collection saas-support \"I was charged twice, refund please\""
        ;;
    *)
        echo "triage is in $link -> $bin, but $bin_dir is not on your PATH."
        echo "Put it there with this line (add it to ~/.bashrc or ~/.profile to keep it):"
        echo "export PATH=\"$bin_dir:\$PATH\""
        ;;
esac
