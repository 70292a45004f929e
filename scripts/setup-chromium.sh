#!/usr/bin/env bash
# Headless Chromium for the eval report's layout test (tests/it/report_layout.rs):
# Debian's `chromium` from apt when it is not installed yet (as root, or with sudo
# without a password). Exit 0 when a chromium is there afterwards (its path printed),
# else 1 with the reason. CHROMIUM=/path/to/chrome skips the search and the install.
set -euo pipefail
find_chromium() {
    if [ -n "${CHROMIUM:-}" ]; then echo "$CHROMIUM"; return 0; fi
    command -v chromium || command -v chromium-browser || command -v google-chrome
}
if c="$(find_chromium)"; then echo "$c"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "setup-chromium: no chromium and no apt-get" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "setup-chromium: no chromium, and apt-get needs root (run: sudo apt-get install chromium)" >&2
    exit 1
fi
echo "setup-chromium: installing chromium from apt ..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update >/dev/null 2>&1 || true
    "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null \
        || { echo "setup-chromium: apt-get install chromium failed" >&2; exit 1; }
fi
find_chromium || { echo "setup-chromium: chromium installed, yet not found on PATH" >&2; exit 1; }
