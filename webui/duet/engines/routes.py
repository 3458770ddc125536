"""The engine routes Duet serves: one entry each, read by everything that lists engines.

A route is one way to reach one engine (Ollama has two: its native API and its `/v1`). Chat,
compare, runs, `/v1`'s model names, `duet bench load` and the Load page all take their routes
from `ROUTES` through `build_engines`, so a new engine needs its adapter, its settings and one
entry here. A route whose settings are not filled in builds no adapter: it is absent, not down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.engines.ollama import OllamaEngine
from duet.engines.openai import OllamaOpenAIEngine, TransformersEngine, VllmEngine
from duet.settings import Settings, env_name


@dataclass(frozen=True, slots=True)
class Route:
    name: EngineName
    label: str  # on answers and charts
    description: str  # where routes are chosen (the Load page's form)
    build: Callable[[Settings], Engine | None]  # None: not configured
    # The settings it reads, its server's URL first (two routes may share a server).
    settings: tuple[str, ...]


def idle_seconds(settings: Settings, server: str) -> float:
    """How long an idle connection to `server` (a URL setting's name less `_url`) is kept."""
    return float(getattr(settings, f"{server}_connection_idle_seconds"))


def timeouts(settings: Settings, server: str) -> dict[str, float]:
    """The client's timeouts toward `server` (as in `idle_seconds`)."""
    return {
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "connection_idle_seconds": idle_seconds(settings, server),
    }


def vllm(settings: Settings) -> Engine:
    return VllmEngine(
        "vllm", "vLLM", settings.vllm_url, settings.vllm_model,
        api_key=settings.vllm_api_key, **timeouts(settings, "vllm"),
    )  # fmt: skip


def ollama(settings: Settings) -> Engine:
    return OllamaEngine(
        "ollama",
        "Ollama",
        settings.ollama_url,
        settings.ollama_model,
        **timeouts(settings, "ollama"),
    )


def ollama_openai(settings: Settings) -> Engine:
    return OllamaOpenAIEngine(
        "ollama-openai", "Ollama (/v1)", settings.ollama_url, settings.ollama_model,
        **timeouts(settings, "ollama"),
    )  # fmt: skip


def transformers(settings: Settings) -> Engine | None:
    if not settings.transformers_url:
        return None
    return TransformersEngine(
        "transformers", "Transformers", settings.transformers_url, settings.transformers_model,
        **timeouts(settings, "transformers"),
    )  # fmt: skip


VLLM = ("vllm_url", "vllm_model", "vllm_api_key", "vllm_connection_idle_seconds")
OLLAMA = ("ollama_url", "ollama_model", "ollama_connection_idle_seconds")
ROUTES: tuple[Route, ...] = (
    Route("vllm", "vLLM", "vLLM", vllm, VLLM),
    Route("ollama", "Ollama", "Ollama (native API)", ollama, OLLAMA),
    Route("ollama-openai", "Ollama (/v1)", "Ollama (/v1)", ollama_openai, OLLAMA),
    Route(
        "transformers", "Transformers", "Transformers (transformers serve)", transformers,
        ("transformers_url", "transformers_model", "transformers_connection_idle_seconds"),
    ),
)  # fmt: skip
ROUTE_NAMES: tuple[EngineName, ...] = tuple(route.name for route in ROUTES)
DESCRIPTIONS: dict[EngineName, str] = {route.name: route.description for route in ROUTES}


def build_engines(settings: Settings) -> dict[EngineName, Engine]:
    """An adapter for every configured route, in `ROUTES`' order."""
    built = {route.name: route.build(settings) for route in ROUTES}
    return {name: engine for name, engine in built.items() if engine is not None}


def servers(settings: Settings) -> dict[str, str]:
    """The URL of every configured route's server, by the name of its URL setting less `_url`
    (`vllm`, `ollama`, ...): one entry for the two Ollama routes."""
    configured = build_engines(settings)
    return {
        route.settings[0].removesuffix("_url"): getattr(settings, route.settings[0])
        for route in ROUTES
        if route.name in configured
    }


def connection_idle(settings: Settings) -> dict[str, float]:
    """How long an idle connection to each configured server is kept, by `servers`' names."""
    return {name: idle_seconds(settings, name) for name in servers(settings)}


def reached_through(settings: Settings, base: str) -> Settings:
    """`settings` with each server reached at `base`/<its name> (a relay in front of them all)."""
    return replace(settings, **{f"{name}_url": f"{base}/{name}" for name in servers(settings)})


def route_environment(settings: Settings) -> dict[str, str]:
    """The DUET_* variables of every route's settings, so that a `duet serve` started with them
    reaches the same engines with the same models."""
    fields = dict.fromkeys(field for route in ROUTES for field in route.settings)
    return {env_name(field): str(getattr(settings, field)) for field in fields}
