"""The Ollama adapter's health check when Ollama cannot answer: what the badge says, how long
it takes, and that the adapter's management client closes with it. Needs no engine: a closed
loopback port, and a socket that takes connections and never answers. The answers of a running
Ollama are checked in test_engines.py."""

from __future__ import annotations

import socket
import time

import pytest
from down_engine import closed_port
from duet.engines.ollama import HEALTH_SECONDS, OllamaEngine

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def test_an_ollama_that_is_down_is_reported_with_its_address_and_the_reason() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    engine = OllamaEngine("ollama", "Ollama", url, "qwen3-duet-tiny")
    try:
        health = await engine.health()
    finally:
        await engine.aclose()
    assert not health.up
    assert health.detail.startswith(f"Ollama is not reachable at {url}: ConnectError")


async def test_an_ollama_that_never_answers_is_down_within_the_bound() -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nobody reads
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        engine = OllamaEngine("ollama", "Ollama", url, "qwen3-duet-tiny")
        started = time.monotonic()
        try:
            health = await engine.health()
        finally:
            await engine.aclose()
        took = time.monotonic() - started
    assert not health.up
    assert health.detail == f"Ollama is not reachable at {url}: no answer within 3 s"
    assert HEALTH_SECONDS <= took < HEALTH_SECONDS + 0.5


async def test_closing_the_adapter_closes_its_management_client() -> None:
    engine = OllamaEngine("ollama", "Ollama", f"http://127.0.0.1:{closed_port()}", "m")
    management = engine.management
    await engine.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await management.list()
    assert engine.management is not management, "a closed adapter opens a new client on use"
    await engine.aclose()
