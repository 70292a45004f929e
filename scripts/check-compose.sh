#!/usr/bin/env bash
# Check docker-compose.yml, without a Docker engine:
#
# 1. A real Compose validator: `docker compose config` if the Compose plugin is there,
#    else `docker-compose config` (Debian's docker-compose package, installed here with
#    apt-get when missing and this runs as root; CHECK_COMPOSE_INSTALL=0 forbids that).
#    It parses the file, checks every key against the Compose schema and interpolates the
#    variables from deploy/triage.env.example (as `cp deploy/triage.env.example .env`).
# 2. The structure docs/scaling.md relies on (scripts/check_compose.py):
#    Qdrant with its storage volume and /readyz health check, triage waiting for a healthy
#    Qdrant and reaching it over gRPC at qdrant:6334, the .env file, no published Qdrant
#    port beyond loopback.
#
# Both must also reject deliberately broken copies (an unknown key, a missing health check),
# so a validator that accepts everything fails this script. Without a validator, step 1 is
# reported as SKIPPED and step 2 still runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${1:-$root/docker-compose.yml}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

compose=()
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif [ "${CHECK_COMPOSE_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check-compose: installing Debian's docker-compose (a Compose file validator; no engine needed)" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >"$work/apt.log" 2>&1; then
        apt-get update -qq >>"$work/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >>"$work/apt.log" 2>&1 || true
    fi
    command -v docker-compose >/dev/null 2>&1 && compose=(docker-compose)
fi

# The project folder as Compose sees it: the file, the example env as .env, the build context.
project() {
    local dir="$1" src="$2"
    mkdir -p "$dir"
    cp "$src" "$dir/docker-compose.yml"
    cp "$root/deploy/triage.env.example" "$dir/.env"
    cp "$root/Dockerfile" "$dir/Dockerfile"
    mkdir -p "$dir/examples_store"
}

validate() {
    (cd "$1" && "${compose[@]}" -f docker-compose.yml config >"$1/config.out" 2>"$1/config.err")
}

# Broken copies that a working check must refuse.
python3 - "$file" "$work" <<'PY'
import sys
src, work = sys.argv[1], sys.argv[2]
text = open(src).read()
assert "    healthcheck:\n" in text and "    depends_on:\n" in text, "docker-compose.yml lost the keys the negative checks edit"
open(f"{work}/unknown-key.yml", "w").write(text.replace("    healthcheck:\n", "    healthchek:\n", 1))
start = text.index("    healthcheck:\n")
end = text.index("\n\n", start)
open(f"{work}/no-healthcheck.yml", "w").write(text[:start] + text[end + 1:])
PY

status=0
if [ ${#compose[@]} -gt 0 ]; then
    project "$work/ok" "$file"
    if validate "$work/ok"; then
        echo "check-compose: \`${compose[*]} config\` accepts $(basename "$file")"
    else
        echo "check-compose: \`${compose[*]} config\` rejects $(basename "$file"):" >&2
        cat "$work/ok/config.err" >&2
        status=1
    fi
    project "$work/bad" "$work/unknown-key.yml"
    if validate "$work/bad"; then
        echo "check-compose: the validator accepted an unknown key; it checks nothing" >&2
        status=1
    fi
    config="$work/ok/config.out"
else
    echo "check-compose: SKIPPED the Compose validator (no \`docker compose\` or \`docker-compose\`, and none could be installed); structural check only" >&2
    config=""
fi

python3 -c "import yaml" 2>/dev/null || python3 -m pip install -q pyyaml >&2
python3 "$root/scripts/check_compose.py" "$file" ${config:+--resolved "$config"} || status=1
if python3 "$root/scripts/check_compose.py" "$work/no-healthcheck.yml" >/dev/null 2>&1; then
    echo "check-compose: the structural check accepted a file without Qdrant's health check" >&2
    status=1
fi
exit $status
