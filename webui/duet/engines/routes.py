"""The engine routes Duet serves: one entry each, read by everything that lists engines.

A route is one way to reach one engine (Ollama has two: its native API and its `/v1`). Chat,
compare, runs, `/v1`'s model names, `duet bench load` and the Load page all take their routes
from `ROUTES` through `build_engines`, so a new engine needs its adapter, its settings and one
entry here. A route whose settings are not filled in builds no adapter: it is absent, not down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.engines.ollama import OllamaEngine
from duet.engines.openai import OllamaOpenAIEngine, TransformersEngine, VllmEngine
from duet.settings import Settings


@dataclass(frozen=True, slots=True)
class Route:
    name: EngineName
    label: str  # on answers and charts
    description: str  # where routes are chosen (the Load page's form)
    build: Callable[[Settings], Engine | None]  # None: not configured


def timeouts(settings: Settings) -> dict[str, float]:
    return {"connect_timeout": settings.connect_timeout, "read_timeout": settings.read_timeout}


def vllm(settings: Settings) -> Engine:
    return VllmEngine(
        "vllm", "vLLM", settings.vllm_url, settings.vllm_model,
        api_key=settings.vllm_api_key, **timeouts(settings),
    )  # fmt: skip


def ollama(settings: Settings) -> Engine:
    return OllamaEngine(
        "ollama", "Ollama", settings.ollama_url, settings.ollama_model, **timeouts(settings)
    )


def ollama_openai(settings: Settings) -> Engine:
    return OllamaOpenAIEngine(
        "ollama-openai", "Ollama (/v1)", settings.ollama_url, settings.ollama_model,
        **timeouts(settings),
    )  # fmt: skip


def transformers(settings: Settings) -> Engine | None:
    if not settings.transformers_url:
        return None
    return TransformersEngine(
        "transformers", "Transformers", settings.transformers_url, settings.transformers_model,
        **timeouts(settings),
    )  # fmt: skip


ROUTES: tuple[Route, ...] = (
    Route("vllm", "vLLM", "vLLM", vllm),
    Route("ollama", "Ollama", "Ollama (native API)", ollama),
    Route("ollama-openai", "Ollama (/v1)", "Ollama (/v1)", ollama_openai),
    Route("transformers", "Transformers", "Transformers (transformers serve)", transformers),
)
ROUTE_NAMES: tuple[EngineName, ...] = tuple(route.name for route in ROUTES)
DESCRIPTIONS: dict[EngineName, str] = {route.name: route.description for route in ROUTES}


def build_engines(settings: Settings) -> dict[EngineName, Engine]:
    """An adapter for every configured route, in `ROUTES`' order."""
    built = {route.name: route.build(settings) for route in ROUTES}
    return {name: engine for name, engine in built.items() if engine is not None}
