#!/usr/bin/env bash
# Headless Chromium for the eval report's layout test (tests/it/report_layout.rs) and
# the review page's end-to-end test (tests/it/review_ui.rs, driven through WebDriver):
# Debian's `chromium` and `chromium-driver` from apt when they are not installed yet (as
# root, or with sudo without a password). Exit 0 when a chromium is there afterwards (its
# path printed), else 1 with the reason; a chromedriver that cannot be installed is
# reported on stderr (the review page test then skips unless required).
# CHROMIUM=/path/to/chrome skips the search and the install.
set -euo pipefail
find_chromium() {
    if [ -n "${CHROMIUM:-}" ]; then echo "$CHROMIUM"; return 0; fi
    command -v chromium || command -v chromium-browser || command -v google-chrome
}
have_driver() { [ -n "${CHROMEDRIVER:-}" ] || command -v chromedriver >/dev/null 2>&1; }
if c="$(find_chromium)" && have_driver; then echo "$c"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "setup-chromium: no chromium and no apt-get" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "setup-chromium: no chromium, and apt-get needs root (run: sudo apt-get install chromium)" >&2
    exit 1
fi
echo "setup-chromium: installing chromium and chromium-driver from apt ..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update >/dev/null 2>&1 || true
    "${sudo[@]}" apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
        || "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null \
        || { echo "setup-chromium: apt-get install chromium failed" >&2; exit 1; }
fi
have_driver || echo "setup-chromium: chromium-driver (chromedriver) could not be installed" >&2
find_chromium || { echo "setup-chromium: chromium installed, yet not found on PATH" >&2; exit 1; }
