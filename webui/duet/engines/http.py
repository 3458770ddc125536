"""Reading an engine's streaming HTTP response line by line, stamping each line on arrival.

Both wire formats Duet speaks are line-based (SSE `data:` lines, NDJSON), so one reader serves
all adapters. It reads with httpx's `aiter_lines()`, which hands over each line as soon as the
bytes holding it arrive; nothing here waits for a byte count or a time window (buffering is
exactly what Duet exists to expose, so it must not add any).

Failures become `EngineError`s with a sentence a person can act on; adapters turn them into
`StreamError` events.

Whoever runs a stream can learn the moment its request is on the wire (its last byte written to
the socket, after any connection setup) by setting `on_request_sent` in its task: that moment is
the honest origin of the engine's TTFT, and lets the caller wait until the request has left
before doing other work on the same event loop. A context variable rather than a parameter keeps
the `Engine` protocol and every adapter unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

from duet.engines.base import EngineHealth
from duet.engines.events import EngineName

# Called with perf_counter() once the request body is written (see the module docstring).
on_request_sent: ContextVar[Callable[[float], None] | None] = ContextVar(
    "on_request_sent", default=None
)


def _sent_tracer(callback: Callable[[float], None]) -> Callable[[str, Any], Any]:
    """An httpcore trace hook that calls `callback` when the request body has been written
    ("http11.send_request_body.complete", or its http2 twin)."""

    async def trace(event_name: str, info: Any) -> None:
        if event_name.endswith("send_request_body.complete"):
            callback(time.perf_counter())

    return trace


class EngineError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class HTTPEngine:
    """What every adapter shares: where the engine is, and one HTTP client to reach it."""

    name: EngineName
    label: str  # shown in the UI, e.g. "vLLM" or "Ollama (/v1)"
    base_url: str
    model: str
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    @property
    def client(self) -> httpx.AsyncClient:
        # Created on first use, so it belongs to the event loop that uses it.
        if self._client is None:
            timeout = httpx.Timeout(
                connect=self.connect_timeout, read=self.read_timeout, write=30.0, pool=30.0
            )
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        return self._client

    def unreachable(self, error: Exception) -> EngineHealth:
        detail = f"{self.label} is not reachable at {self.base_url}: {type(error).__name__}"
        return EngineHealth(self.name, up=False, detail=detail)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _error_text(body: bytes) -> str:
    """The engine's own error message: vLLM nests it under error.message, Ollama under error."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:500]
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:500]


async def post_lines(
    client: httpx.AsyncClient, path: str, payload: dict, label: str, headers: dict | None = None
) -> AsyncIterator[tuple[float, str]]:
    """POST `payload` and yield (arrival time, line) for each non-empty line of the response.

    Leaving the iteration early closes the response, which closes the connection: that is how
    the engine learns that nobody is listening and stops generating.
    """
    callback = on_request_sent.get()
    extensions = {"trace": _sent_tracer(callback)} if callback is not None else None
    try:
        async with client.stream(
            "POST", path, json=payload, headers=headers, extensions=extensions
        ) as response:
            if response.status_code >= 400:
                body = await response.aread()
                raise EngineError(
                    f"{label} refused the request (HTTP {response.status_code}): "
                    f"{_error_text(body)}",
                    status=response.status_code,
                )
            async for line in response.aiter_lines():
                if line:
                    yield time.perf_counter(), line
    except httpx.ConnectError as error:
        raise EngineError(f"{label} is not reachable at {client.base_url}: {error}") from error
    except httpx.TimeoutException as error:
        raise EngineError(f"{label} did not answer in time ({type(error).__name__})") from error
    except (httpx.RemoteProtocolError, httpx.ReadError) as error:
        raise EngineError(f"{label} closed the connection mid-stream: {error}") from error
