"""docker-compose.yml and its variants as a real Compose implementation resolves them.

`compose config` resolves the files the way `docker compose up` would (merging, interpolation,
`!override`/`!reset`, profiles) without needing a Docker engine, so tests can read what each
variant would run. Install Compose with services/dev/install-compose.sh, or point DUET_COMPOSE
at a binary.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from duet.composefile import compose_binary

ROOT = Path(__file__).resolve().parents[1]

# Variant name → override files stacked on docker-compose.yml, and the services it runs.
VARIANTS: dict[str, tuple[list[str], set[str]]] = {
    "gpu": ([], {"vllm", "ollama", "ollama-init", "webui"}),
    "vllm-only": (["compose/vllm-only.yml"], {"vllm", "webui"}),
    "ollama-only": (["compose/ollama-only.yml"], {"ollama", "ollama-init", "webui"}),
    "cpu": (["compose/cpu.yml"], {"vllm", "ollama", "ollama-init", "webui"}),
    "cpu-vllm-only": (["compose/cpu.yml", "compose/vllm-only.yml"], {"vllm", "webui"}),
    "cpu-ollama-only": (
        ["compose/cpu.yml", "compose/ollama-only.yml"],
        {"ollama", "ollama-init", "webui"},
    ),
}


def find_compose() -> Path:
    """The Compose binary; in CI its absence fails the test, elsewhere it skips it."""
    binary = compose_binary()
    if binary is None or not binary.is_file():
        message = "no Compose binary: run services/dev/install-compose.sh or set DUET_COMPOSE"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def run_config(
    compose: Path, overrides: list[str], tmp_path: Path, **knobs: str
) -> subprocess.CompletedProcess[str]:
    # An empty env file and a bare environment: the defaults in the files are what is tested,
    # not a developer's .env or shell.
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    files = [arg for path in ["docker-compose.yml", *overrides] for arg in ("-f", path)]
    return subprocess.run(
        [str(compose), *files, "--env-file", str(empty_env), "config", "--format", "json"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **knobs},
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved(compose: Path, overrides: list[str], tmp_path: Path, **knobs: str) -> dict[str, Any]:
    done = run_config(compose, overrides, tmp_path, **knobs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
