"""`duet doctor`: is this machine ready for the GPU stack, and is the stack healthy?

Checks, each reported with what to fix:
- the Docker engine answers (through the `docker` SDK, as Compose would reach it);
- Docker has the NVIDIA runtime (nvidia-container-toolkit), which GPU reservations need;
- GPU memory holds the configured split: vLLM's share (VLLM_GPU_MEMORY_UTILIZATION x total)
  must fit its weights and one full-length sequence of KV cache, and Ollama's estimated need,
  with the memory Ollama keeps free, must fit in what the share and vLLM's CUDA context leave;
- the Compose services' containers are running and healthy.

The memory arithmetic is plain functions over numbers, so it is tested directly and the sizing
table in docs/gpu.md comes from the same formulas.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from duet.composefile import compose_defaults, parse_env

GIB = 1024**3
MIB = 1024**2

Status = Literal["ok", "problem", "note"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str = ""


# --- memory arithmetic -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What sizes the KV cache: one K and one V vector per layer, KV head and token."""

    layers: int
    kv_heads: int
    head_dim: int


# From the models' config.json: Qwen3-14B has 40 layers, 8 KV heads of 128; Qwen3-0.6B 28 x 8 x 128.
QWEN3_14B = ModelShape(layers=40, kv_heads=8, head_dim=128)
QWEN3_0_6B = ModelShape(layers=28, kv_heads=8, head_dim=128)

# Bytes per cached element. GGUF's q8_0 stores 32 values in 34 bytes, q4_0 in 18.
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class KnownModel:
    shape: ModelShape
    weights_bytes: float


# Weight sizes, in bytes. AWQ: 13.2 G linear weights at 4 bits + group-128 scales and zeros +
# 1.56 G embedding and head parameters kept in BF16 (see docs/gpu.md for the sum).
VLLM_MODELS = {
    "Qwen/Qwen3-14B-AWQ": KnownModel(QWEN3_14B, 9.98e9),
    "Qwen/Qwen3-14B-FP8": KnownModel(QWEN3_14B, 16.3e9),
    "Qwen/Qwen3-14B": KnownModel(QWEN3_14B, 29.5e9),
    "Qwen/Qwen3-0.6B": KnownModel(QWEN3_0_6B, 1.5e9),
}
OLLAMA_SOURCES = {
    "hf.co/Qwen/Qwen3-14B-GGUF:Q4_K_M": KnownModel(QWEN3_14B, 9.0e9),
    "hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0": KnownModel(QWEN3_0_6B, 0.64e9),
}
# Assumed, not measured here (no GPU): vLLM's profiled activations and CUDA graphs at 16
# sequences, inside its share; Ollama's CUDA context and compute graph. docs/gpu.md says how to
# measure them.
VLLM_RUNTIME_OVERHEAD = 2.0 * GIB
OLLAMA_RUNTIME_OVERHEAD = 1.0 * GIB
# vLLM's CUDA context (and NCCL's) exists before vLLM takes the snapshot its share is reckoned
# from (vllm/v1/worker/gpu_worker.py), so it comes on top of VLLM_GPU_MEMORY_UTILIZATION x total.
# Assumed too.
VLLM_CUDA_CONTEXT = 0.5 * GIB
# What Ollama keeps free on the card when it places a model: a model that does not fit with this
# much to spare loses layers to the CPU. Up to 0.29 its scheduler sets aside 457 MiB per CUDA
# card (ml/device.go, MinimumMemory); from 0.30 on llama-server's fit logic keeps 1 GiB free by
# default (LLAMA_ARG_FIT_TARGET, in MiB).
OLLAMA_FREE_RESERVE_SCHEDULER = 457 * MIB
OLLAMA_FREE_RESERVE_FIT = 1.0 * GIB
OLLAMA_FIT_SINCE = (0, 30)


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float = 2.0) -> float:
    return shape.layers * shape.kv_heads * shape.head_dim * 2 * bytes_per_element


def vllm_kv_budget(
    total_bytes: float,
    fraction: float,
    weights_bytes: float,
    overhead: float = VLLM_RUNTIME_OVERHEAD,
) -> float:
    """What vLLM has left for its KV cache inside its share of the card (negative: none)."""
    return total_bytes * fraction - weights_bytes - overhead


def ollama_need(
    model: KnownModel,
    context_length: int,
    parallel: int = 1,
    kv_cache_type: str = "f16",
    overhead: float = OLLAMA_RUNTIME_OVERHEAD,
) -> float:
    """Ollama's memory for one loaded model: weights + KV for every parallel slot + runtime."""
    per_token = kv_bytes_per_token(model.shape, KV_BYTES_PER_ELEMENT[kv_cache_type])
    return model.weights_bytes + per_token * context_length * parallel + overhead


def largest_vllm_fraction(total_bytes: float, ollama_bytes: float) -> float:
    """The biggest VLLM_GPU_MEMORY_UTILIZATION that leaves Ollama `ollama_bytes` (its need and
    the memory it keeps free) beside vLLM's CUDA context, rounded down."""
    left = total_bytes - ollama_bytes - VLLM_CUDA_CONTEXT
    return max(0.0, int(left / total_bytes * 100) / 100)


def ollama_free_reserve(image: str) -> float:
    """What the Ollama of `image` (ollama/ollama:TAG) keeps free on the card; a tag that is no
    version is taken as a recent one."""
    version = re.match(r"v?(\d+)\.(\d+)", image.rpartition(":")[2])
    if version and (int(version[1]), int(version[2])) < OLLAMA_FIT_SINCE:
        return OLLAMA_FREE_RESERVE_SCHEDULER
    return OLLAMA_FREE_RESERVE_FIT


# --- the knobs ---------------------------------------------------------------------------------


def load_knobs(
    compose_file: Path, env_file: Path, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Compose's view of the knobs: defaults from the Compose file, then .env, then the shell."""
    knobs = compose_defaults(compose_file.read_text(encoding="utf-8"))
    if env_file.is_file():
        knobs.update(parse_env(env_file.read_text(encoding="utf-8")))
    environ = os.environ if environ is None else environ
    knobs.update({name: environ[name] for name in knobs if name in environ})
    return knobs


def modelfile_source(modelfile: Path) -> str | None:
    for line in modelfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    return None


# --- GPUs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    total_bytes: float
    used_bytes: float


NVIDIA_SMI_QUERY = [
    "--query-gpu=index,name,memory.total,memory.used",
    "--format=csv,noheader,nounits",
]


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,...`."""
    gpus = []
    for line in text.strip().splitlines():
        index, name, total, used = (part.strip() for part in line.split(","))
        gpus.append(Gpu(index, name, float(total) * MIB, float(used) * MIB))
    return gpus


def query_gpus() -> list[Gpu] | None:
    """The host's NVIDIA GPUs, or None when there is no driver (no nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    done = subprocess.run([smi, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return None
    return parse_nvidia_smi(done.stdout)


def check_memory_split(
    gpu: Gpu,
    knobs: Mapping[str, str],
    vllm_model: KnownModel | None,
    ollama_model: KnownModel | None,
    vllm_running: bool,
) -> list[Finding]:
    """Does the configured split fit this card? One finding per thing that can go wrong."""
    findings = []
    fraction = float(knobs["VLLM_GPU_MEMORY_UTILIZATION"])
    vllm_share = gpu.total_bytes * fraction
    card = f"GPU {gpu.index} ({gpu.name}, {gpu.total_bytes / GIB:.1f} GiB)"
    if vllm_model is not None:
        max_len = int(knobs["VLLM_MAX_MODEL_LEN"])
        budget = vllm_kv_budget(gpu.total_bytes, fraction, vllm_model.weights_bytes)
        needed = kv_bytes_per_token(vllm_model.shape) * max_len
        if budget < needed:
            findings.append(
                Finding(
                    "vLLM share",
                    "problem",
                    f"{fraction:.2f} of {card} is {vllm_share / GIB:.1f} GiB; after weights and "
                    f"runtime about {max(budget, 0) / GIB:.1f} GiB is left for KV cache, but one "
                    f"{max_len}-token sequence needs {needed / GIB:.2f} GiB",
                    "raise VLLM_GPU_MEMORY_UTILIZATION or lower VLLM_MAX_MODEL_LEN in .env",
                )
            )
        else:
            findings.append(
                Finding(
                    "vLLM share",
                    "ok",
                    f"{vllm_share / GIB:.1f} GiB of {card}; KV cache for about "
                    f"{int(budget / kv_bytes_per_token(vllm_model.shape)):,} tokens",
                )
            )
    if ollama_model is not None:
        need = ollama_need(
            ollama_model,
            int(knobs["OLLAMA_CONTEXT_LENGTH"]),
            int(knobs["OLLAMA_NUM_PARALLEL"]),
            knobs["OLLAMA_KV_CACHE_TYPE"],
        )
        reserve = ollama_free_reserve(knobs["OLLAMA_IMAGE"])
        left = gpu.total_bytes - vllm_share - VLLM_CUDA_CONTEXT
        spare = left - need - reserve
        if spare < 0:
            findings.append(
                Finding(
                    "Ollama share",
                    "problem",
                    f"Ollama needs about {need / GIB:.1f} GiB and keeps {reserve / GIB:.2f} GiB "
                    f"free, but vLLM's share and CUDA context leave {left / GIB:.1f} GiB of "
                    f"{card}: Ollama would put layers on the CPU",
                    "set VLLM_GPU_MEMORY_UTILIZATION to at most "
                    f"{largest_vllm_fraction(gpu.total_bytes, need + reserve):.2f}, or lower "
                    "OLLAMA_CONTEXT_LENGTH / use OLLAMA_KV_CACHE_TYPE=q8_0",
                )
            )
        else:
            findings.append(
                Finding(
                    "Ollama share",
                    "ok",
                    f"needs about {need / GIB:.1f} GiB of the {left / GIB:.1f} GiB vLLM leaves, "
                    f"keeps {reserve / GIB:.2f} GiB free, {spare / GIB:.2f} GiB to spare",
                )
            )
    vllm_start = vllm_share + VLLM_CUDA_CONTEXT
    if not vllm_running and gpu.total_bytes - gpu.used_bytes < vllm_start:
        findings.append(
            Finding(
                "free memory",
                "problem",
                f"{gpu.used_bytes / GIB:.1f} GiB of {card} is already in use, so vLLM cannot "
                f"claim {vllm_start / GIB:.1f} GiB (its share and CUDA context) at start",
                "stop what uses the card (see nvidia-smi), or lower VLLM_GPU_MEMORY_UTILIZATION",
            )
        )
    return findings


# --- Docker ------------------------------------------------------------------------------------


def docker_client() -> tuple[Any | None, Finding]:
    """A connected docker SDK client, or None with a finding that says why not."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        where = os.environ.get("DOCKER_HOST", "the default socket (/var/run/docker.sock)")
        return None, Finding(
            "Docker engine",
            "problem",
            f"cannot reach the Docker engine at {where}: {error}",
            "start Docker (e.g. `sudo systemctl start docker`); if it runs elsewhere (Docker "
            "Desktop, rootless), set DOCKER_HOST to its socket; `docker info` must work",
        )
    version = client.version().get("Version", "unknown version")
    return client, Finding("Docker engine", "ok", f"Docker {version} answers")


def check_nvidia_runtime(info: Mapping[str, Any]) -> Finding:
    runtimes = info.get("Runtimes") or {}
    if "nvidia" in runtimes:
        return Finding("NVIDIA runtime", "ok", "Docker has the nvidia runtime")
    return Finding(
        "NVIDIA runtime",
        "problem",
        f"Docker has no nvidia runtime (runtimes: {', '.join(sorted(runtimes)) or 'none'}), so "
        "the GPU reservations in docker-compose.yml cannot be met",
        "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure "
        "--runtime=docker && sudo systemctl restart docker`",
    )


def check_container(service: str, state: Mapping[str, Any]) -> Finding:
    """Judge one Compose service from its container's `State` (as `docker inspect` shows it)."""
    status = state.get("Status", "unknown")
    health = (state.get("Health") or {}).get("Status")
    logs = f"`docker compose logs {service}`"
    if status == "exited":
        code = state.get("ExitCode")
        if code == 0:
            return Finding(service, "ok", "finished its work (exit code 0)")
        return Finding(service, "problem", f"exited with code {code}", f"read {logs}")
    if status != "running":
        return Finding(
            service,
            "problem",
            f"container is {status}",
            f"read {logs}, then `docker compose up -d`",
        )
    if health in (None, "healthy"):
        return Finding(service, "ok", "running" + (" and healthy" if health else ""))
    if health == "starting":
        return Finding(service, "note", "still starting (first start downloads the model)")
    last = ((state.get("Health") or {}).get("Log") or [{}])[-1].get("Output", "").strip()
    return Finding(service, "problem", f"unhealthy: {last[:200] or 'no output'}", f"read {logs}")


def check_services(client: Any, project: str) -> list[Finding]:
    containers = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    if not containers:
        return [
            Finding(
                "services",
                "note",
                f"no containers of Compose project {project!r} yet",
                "`docker compose up -d` starts them",
            )
        ]
    return [
        check_container(c.labels.get("com.docker.compose.service", c.name), c.attrs["State"])
        for c in sorted(containers, key=lambda c: c.name)
    ]


# --- the whole run -----------------------------------------------------------------------------


def gpu_findings(knobs: Mapping[str, str], modelfiles: Path, vllm_running: bool) -> list[Finding]:
    gpus = query_gpus()
    if gpus is None:
        return [
            Finding(
                "GPU",
                "problem",
                "no NVIDIA driver found (nvidia-smi is missing or failed)",
                "install the NVIDIA driver, or use the CPU demo (compose/cpu.yml, docs/gpu.md) "
                "and check it with `duet doctor --cpu`",
            )
        ]
    wanted = knobs.get("VLLM_GPU_DEVICE", "0")
    gpu = next((g for g in gpus if g.index == wanted), gpus[0])
    vllm_model = VLLM_MODELS.get(knobs["VLLM_MODEL"])
    modelfile = modelfiles / knobs["OLLAMA_MODELFILE"]
    source = modelfile_source(modelfile) if modelfile.is_file() else None
    ollama_model = OLLAMA_SOURCES.get(source or "")
    findings = []
    if vllm_model is None:
        findings.append(Finding("vLLM share", "note", f"no size known for {knobs['VLLM_MODEL']}"))
    if ollama_model is None:
        findings.append(Finding("Ollama share", "note", f"no size known for {source or modelfile}"))
    if knobs.get("OLLAMA_GPU_DEVICE", "0") != wanted:
        ollama_model = None  # Ollama has its own card: nothing to share.
    return findings + check_memory_split(gpu, knobs, vllm_model, ollama_model, vllm_running)


def diagnose(compose_file: Path, env_file: Path, project: str, cpu: bool = False) -> list[Finding]:
    findings: list[Finding] = []
    client, engine = docker_client()
    findings.append(engine)
    service_findings: list[Finding] = []
    if client is not None:
        if not cpu:
            findings.append(check_nvidia_runtime(client.info()))
        service_findings = check_services(client, project)
    vllm_running = any(f.check == "vllm" and f.status != "problem" for f in service_findings)
    if not compose_file.is_file():
        findings.append(
            Finding(
                "configuration",
                "problem",
                f"no {compose_file} here",
                "run `duet doctor` in the Duet repository, beside docker-compose.yml",
            )
        )
    elif not cpu:
        knobs = load_knobs(compose_file, env_file)
        findings += gpu_findings(knobs, compose_file.parent / "modelfiles", vllm_running)
    return findings + service_findings


MARKS = {"ok": "ok     ", "problem": "PROBLEM", "note": "note   "}


def report(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{MARKS[finding.status]}  {finding.check}: {finding.message}")
        if finding.fix:
            lines.append(f"         fix: {finding.fix}")
    problems = sum(f.status == "problem" for f in findings)
    lines.append(f"{problems} problem{'s' if problems != 1 else ''} found")
    return "\n".join(lines) + "\n"


def run_doctor(
    env_file: str = ".env",
    project: str | None = None,
    compose_file: str = "docker-compose.yml",
    cpu: bool = False,
) -> int:
    """Print the findings; the exit code is 1 if any is a problem, else 0."""
    project = project or os.environ.get("COMPOSE_PROJECT_NAME", "duet")
    findings = diagnose(Path(compose_file), Path(env_file), project, cpu=cpu)
    print(report(findings), end="")
    return 1 if any(f.status == "problem" for f in findings) else 0
