"""The names `/v1` gives models: `<engine>/<model>`, so that a name says which engine serves it
(`vllm/qwen3`, `ollama/qwen3:latest`, `ollama-openai/qwen3:latest`), and the listing of every
model of every engine route.
"""

from __future__ import annotations

from collections.abc import Mapping

from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.views.health import check_all

SEPARATOR = "/"
# Ollama names a model given without a tag by its default tag: `qwen3` is `qwen3:latest`.
TAGGED_ENGINES = frozenset({"ollama", "ollama-openai"})
DEFAULT_TAG = ":latest"


def model_id(engine: str, model: str) -> str:
    return f"{engine}{SEPARATOR}{model}"


def split_model_id(
    name: str, engines: Mapping[EngineName, Engine]
) -> tuple[EngineName, str] | None:
    """The engine and the engine's own model name that a /v1 model name means, or None if it
    names no engine of this instance. The engine is what comes before the first `/`; a model
    name may hold more (`vllm/Qwen/Qwen3-14B`)."""
    engine, separator, model = name.partition(SEPARATOR)
    if not separator or not model:
        return None
    for known in engines:
        if engine == known:
            return known, model
    return None


def canonical(name: str) -> str:
    """One spelling per model, for comparing names (an Ollama model with its default tag)."""
    engine, _, model = name.partition(SEPARATOR)
    if engine in TAGGED_ENGINES and ":" not in model:
        return name + DEFAULT_TAG
    return name


async def served_models(engines: Mapping[EngineName, Engine]) -> list[tuple[EngineName, str]]:
    """Every (engine, model) the engines say they serve now; an engine that is down lists
    nothing."""
    return [
        (engine.name, model)
        for engine, health in await check_all(engines)
        for model in health.models
    ]
