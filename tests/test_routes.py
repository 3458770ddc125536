"""The registry of engine routes (duet.engines.routes): every list of engines is built from it,
and a route whose settings are empty is absent, not down."""

from __future__ import annotations

from duet.engines import build_engines
from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.engines.openai import TransformersEngine
from duet.engines.routes import (
    DESCRIPTIONS,
    ROUTE_NAMES,
    connection_idle,
    route_environment,
)
from duet.settings import Settings


def test_the_transformers_route_is_absent_until_its_url_is_set() -> None:
    assert list(build_engines(Settings())) == ["vllm", "ollama", "ollama-openai"]
    configured = Settings(transformers_url="http://127.0.0.1:8001", transformers_model="m")
    engines = build_engines(configured)
    assert list(engines) == list(ROUTE_NAMES)
    engine = engines["transformers"]
    assert isinstance(engine, TransformersEngine)
    assert (engine.label, engine.base_url, engine.model) == (
        "Transformers", "http://127.0.0.1:8001", "m"
    )  # fmt: skip


def test_each_route_keeps_idle_connections_as_its_servers_setting_says() -> None:
    settings = Settings(
        transformers_url="http://127.0.0.1:8001",
        vllm_connection_idle_seconds=60.0,
        ollama_connection_idle_seconds=30.0,
    )
    idle = {
        name: engine.connection_idle_seconds for name, engine in build_engines(settings).items()
    }
    assert idle == {"vllm": 60.0, "ollama": 30.0, "ollama-openai": 30.0, "transformers": 4.0}
    assert connection_idle(settings) == {"vllm": 60.0, "ollama": 30.0, "transformers": 4.0}
    # A `duet serve` started from these settings (the benchmark's) keeps the same.
    started = Settings.from_env(route_environment(settings))
    assert connection_idle(started) == connection_idle(settings)


def test_every_route_has_a_description_and_a_unique_name() -> None:
    assert len(set(ROUTE_NAMES)) == len(ROUTE_NAMES)
    assert set(DESCRIPTIONS) == set(ROUTE_NAMES) and all(DESCRIPTIONS.values())


def test_the_transformers_payload_holds_only_fields_its_server_accepts() -> None:
    """`transformers serve` answers 422 to any field outside OpenAI's schema but its three
    extensions (chat_template_kwargs, seed, generation_config): no top_k, no min_p."""
    engine = build_engines(Settings(transformers_url="http://127.0.0.1:9"))["transformers"]
    assert isinstance(engine, TransformersEngine)
    request = ChatRequest(
        (ChatMessage("user", "Hi"),), False, Sampling(0.6, 0.95, 20, 64, min_p=0.0, seed=1)
    )
    payload = engine.payload(request)
    assert set(payload) == {
        "model", "messages", "stream", "temperature", "top_p", "max_tokens", "seed",
        "chat_template_kwargs",
    }  # fmt: skip
    assert payload["chat_template_kwargs"] == {"enable_thinking": False}
