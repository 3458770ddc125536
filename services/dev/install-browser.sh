#!/usr/bin/env bash
# Install what the browser tests need: Debian's Chromium and the Playwright driver library.
#
# Playwright's own `playwright install` downloads a browser build from outside the package
# registries, which cannot work here (and is not needed): the tests launch Debian's
# /usr/bin/chromium through `executable_path`. The Python wheel carries its own Node driver, so
# pip alone is enough on the Python side. Safe to run again: each step is skipped when done.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${DUET_PYTHON:-$REPO/.venv/bin/python}"
CHROMIUM="${DUET_CHROMIUM:-/usr/bin/chromium}"

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

if [ -x "$CHROMIUM" ]; then
  echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
else
  install_chromium() {
    # fonts-dejavu-core: without a font, pages render without text and screenshots show nothing
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
      chromium fonts-dejavu-core
  }
  echo "installing Debian's chromium (a few minutes the first time)"
  # Refresh the package lists only when needed: apt does not know chromium yet (a fresh
  # machine), or its lists are stale and name a version the mirror no longer has.
  if ! apt-cache show chromium >/dev/null 2>&1 || ! install_chromium; then
    echo "refreshing apt package lists"
    $sudo_cmd apt-get update -qq
    install_chromium
  fi
  "$CHROMIUM" --version
fi

if [ ! -x "$PYTHON" ]; then
  echo "error: no Python at $PYTHON; create the project venv first (python3 -m venv .venv)" >&2
  exit 1
fi

if "$PYTHON" -c "import playwright.async_api" 2>/dev/null; then
  echo "playwright already installed: $("$PYTHON" -m pip show playwright 2>/dev/null \
    | sed -n 's/^Version: //p')"
else
  echo "installing the playwright Python package into $PYTHON's environment"
  "$PYTHON" -m pip install --quiet "playwright>=1.45"
fi
