#!/usr/bin/env bash
# Validate an OpenAPI document with openapi-spec-validator (PyPI), installed on first
# use into .venv-openapi/ beside the repository (so a fresh clone needs only Python 3
# and access to PyPI).
#   scripts/openapi-validate.sh FILE.json
#   scripts/openapi-validate.sh --setup       (only make the venv; scripts/test.sh)
# Exit 0: valid; 1: invalid (the validator's message on stderr); 77: the venv could
# not be made (no python3 -m venv, no PyPI): the caller reports the check as skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OPENAPI_VENV:-$root/.venv-openapi}"
[ $# -eq 1 ] || { echo "usage: $0 FILE.json" >&2; exit 2; }
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'openapi-spec-validator>=0.7,<0.10'; } >"$venv.log" 2>&1; then
        echo "openapi-validate: cannot make the venv at $venv (see $venv.log)" >&2
        rm -rf "$venv"
        exit 77
    fi
fi
[ "$1" = --setup ] && exit 0
"$venv/bin/openapi-spec-validator" "$1"
