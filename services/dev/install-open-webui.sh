#!/usr/bin/env bash
# Open WebUI from PyPI, in its own virtualenv outside the clone, for the relay benchmark's path
# through it (`duet bench relay --open-webui`, docs/benchmarks/open-webui.md). Not part of
# `make test`: the wheel pins about ninety requirements (torch, chromadb, onnxruntime,
# sentence-transformers among them), several GB on disk.
#
# Idempotent: a venv whose install completed is left alone. Prints the `open-webui` command last.
set -euo pipefail

. "$(dirname "$0")/../../webui/duet/versions.env"
VERSION="${DUET_OPEN_WEBUI_VERSION:-$OPEN_WEBUI_VERSION}"
CACHE="${DUET_CACHE:-$HOME/.cache/duet}"
VENV="$CACHE/open-webui-$VERSION"
# Open WebUI asks for Python >= 3.11 and < 3.13; find-python.sh prefers a 3.12.
PY="${PYTHON:-$("$(dirname "$0")/find-python.sh")}"

if [ -x "$VENV/bin/open-webui" ] && [ -f "$VENV/.duet-complete" ]; then
  echo "open-webui $VERSION already installed in $VENV" >&2
  echo "$VENV/bin/open-webui"
  exit 0
fi

echo "installing open-webui $VERSION into $VENV (first time: many minutes, several GB)" >&2
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
$pip install --upgrade pip
$pip install "open-webui==$VERSION"
touch "$VENV/.duet-complete"
"$VENV/bin/python" -m pip show open-webui | sed -n 's/^Version: /installed open-webui /p' >&2
echo "$VENV/bin/open-webui"
