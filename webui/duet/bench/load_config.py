"""What a load run records about the engines it measured and the machine it ran on.

From the engines' own APIs: vLLM's version, the model it serves and its context
(`/version`, `/v1/models`) and its KV cache (`vllm:cache_config_info` on `/metrics`); Ollama's
version, the model's family, size and quantization (`/api/show`) and the context it was loaded
with (`/api/ps`). Settings no API tells — vLLM's `--max-num-seqs` and Ollama's
`OLLAMA_NUM_PARALLEL`, `OLLAMA_MAX_QUEUE`, `OLLAMA_CONTEXT_LENGTH` — are read from the
engine's process when it runs on this machine (the process listening on the engine's port: its
command line and environment); otherwise they are recorded as unknown. A setting its process
does not set is recorded as the engine's default.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from duet.settings import Settings

OLLAMA_SETTINGS = (
    "OLLAMA_NUM_PARALLEL",
    "OLLAMA_MAX_QUEUE",
    "OLLAMA_CONTEXT_LENGTH",
    "OLLAMA_KEEP_ALIVE",
    "OLLAMA_FLASH_ATTENTION",
    "OLLAMA_KV_CACHE_TYPE",
    "OLLAMA_NUM_THREADS",
)
VLLM_FLAGS = ("--max-num-seqs", "--max-model-len", "--max-num-batched-tokens", "--dtype")
VLLM_ENVIRONMENT = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND")
CACHE_INFO_LABELS = ("block_size", "num_gpu_blocks", "kv_cache_memory_bytes", "cache_dtype")
UNKNOWN = "unknown (the engine does not run on this machine)"
DEFAULT = "not set (the engine's default)"


def local_process(url: str) -> psutil.Process | None:
    """The process on this machine listening on the URL's port, if any can be seen."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                return psutil.Process(connection.pid)
    return None


def flag_values(command: list[str], flags: tuple[str, ...]) -> dict[str, str]:
    values = dict.fromkeys(flags, DEFAULT)
    for position, word in enumerate(command):
        name, equals, value = word.partition("=")
        if name in values:
            values[name] = value if equals else (command[position + 1 : position + 2] or [""])[0]
    return values


def process_settings(
    url: str, flags: tuple[str, ...], environment: tuple[str, ...]
) -> dict[str, str]:
    process = local_process(url)
    if process is None:
        return dict.fromkeys((*flags, *environment), UNKNOWN)
    try:
        command, env = process.cmdline(), process.environ()
    except psutil.Error:
        return dict.fromkeys((*flags, *environment), UNKNOWN)
    return {**flag_values(command, flags), **{name: env.get(name, DEFAULT) for name in environment}}


def get_json(client: httpx.Client, url: str, **kwargs: Any) -> Any:
    try:
        response = client.request(kwargs.pop("method", "GET"), url, **kwargs)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as error:
        return {"error": str(error) or type(error).__name__}


def vllm_facts(client: httpx.Client, settings: Settings) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {settings.vllm_api_key}"} if settings.vllm_api_key else {}
    models = get_json(client, settings.vllm_url + "/v1/models", headers=headers)
    served = next((m for m in models.get("data") or () if m.get("id") == settings.vllm_model), {})
    cache: dict[str, str] = {}
    with contextlib.suppress(httpx.HTTPError):
        metrics = client.get(settings.vllm_url + "/metrics").text
        found = re.search(r"^vllm:cache_config_info\{(.*)\}", metrics, re.MULTILINE)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            cache = {name: labels[name] for name in CACHE_INFO_LABELS if name in labels}
    return {
        "url": settings.vllm_url,
        "version": get_json(client, settings.vllm_url + "/version").get("version"),
        "model": settings.vllm_model,
        "model_root": served.get("root"),
        "max_model_len": served.get("max_model_len"),
        "kv_cache": cache,
        "settings": process_settings(settings.vllm_url, VLLM_FLAGS, VLLM_ENVIRONMENT),
    }


def ollama_facts(client: httpx.Client, settings: Settings) -> dict[str, Any]:
    base = settings.ollama_url
    shown = get_json(
        client, base + "/api/show", method="POST", json={"model": settings.ollama_model}
    )
    running = get_json(client, base + "/api/ps").get("models") or []
    loaded = next(
        (
            m
            for m in running
            if m.get("model") in (settings.ollama_model, f"{settings.ollama_model}:latest")
        ),
        {},
    )
    details = shown.get("details") or {}
    return {
        "url": base,
        "version": get_json(client, base + "/api/version").get("version"),
        "model": settings.ollama_model,
        "family": details.get("family"),
        "parameter_size": details.get("parameter_size"),
        "quantization": details.get("quantization_level"),
        "loaded_context_length": loaded.get("context_length"),
        "settings": process_settings(base, (), OLLAMA_SETTINGS),
    }


def engine_facts(settings: Settings, routes: list[str]) -> dict[str, Any]:
    """What each engine the run used says of itself (the module docstring lists it)."""
    facts: dict[str, Any] = {}
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        if "vllm" in routes:
            facts["vllm"] = vllm_facts(client, settings)
        if any(route.startswith("ollama") for route in routes):
            facts["ollama"] = ollama_facts(client, settings)
    return facts
