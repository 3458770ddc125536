"""An engine whose server is down: every call goes to a loopback port nothing listens on.

Not a stand-in for a real engine's stream: it makes a real HTTP request and fails the way an
adapter meets a stopped vLLM or Ollama (connection refused), so the app's handling of a down
engine is tested against a real socket error. Once the adapters exist, the same tests can point a
real adapter at `closed_port()`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import httpx
from duet.engines.base import ChatRequest, ContextWindow, EngineHealth, OnSent
from duet.engines.events import EngineName, StreamEvent


def closed_port() -> int:
    """A loopback port that was free a moment ago (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DownEngine:
    def __init__(self, name: EngineName, label: str, port: int) -> None:
        self.name = name
        self.label = label
        self.model = "qwen3-test"
        self.url = f"http://127.0.0.1:{port}"
        self.requests = 0

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.requests += 1
        async with (
            httpx.AsyncClient(base_url=self.url, timeout=2.0) as client,
            client.stream("POST", "/v1/chat/completions", json={"stream": True}) as response,
        ):
            async for line in response.aiter_lines():  # never reached: the connect fails
                yield _unreachable(line)

    async def health(self) -> EngineHealth:
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
                await client.get("/health")
        except httpx.HTTPError as error:
            return EngineHealth(self.name, up=False, detail=f"{self.url}: {error}")
        return EngineHealth(self.name, up=True, models=(self.model,))

    async def context_window(self, model: str | None = None) -> ContextWindow:
        health = await self.health()
        return ContextWindow(None, f"{self.label} could not be asked: {health.detail}")

    async def aclose(self) -> None:
        return None


def _unreachable(line: str) -> StreamEvent:
    raise AssertionError(f"a closed port answered: {line!r} at {time.perf_counter()}")
