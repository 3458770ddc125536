"""Speaking HTTP to an engine: one client per adapter, and a streaming response read line by
line, each line stamped the moment the bytes holding it arrive.

Both wire formats Duet speaks are line-based (SSE `data:` lines, NDJSON), so one reader serves
all adapters. It splits whatever the socket delivers into lines itself; nothing here waits for a
byte count or a time window (buffering is exactly what Duet exists to expose, so it must not add
any). Lines that arrived in one read carry the same stamp: they did arrive together.

The client is aiohttp's: on Duet's 2-core development machine it put a request on the wire in
about a third of the time httpx took (`docs/benchmarks/relay.md`), and that time is part of
every answer's time to first token.

Failures become `EngineError`s with a sentence a person can act on; adapters turn them into
`StreamError` events.

Whoever runs a stream can learn the moment its request is on the wire (its last byte written to
the socket, after any connection setup) by passing `on_sent`: that moment is the honest origin
of the engine's TTFT, and lets the caller wait until the request has left before doing other
work on the same event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp

from duet.engines.base import EngineHealth
from duet.engines.events import EngineName

# How long an idle connection to an engine is kept for the next request, unless the adapter is
# told (the settings' `*_connection_idle_seconds` say why each must be under its server's own
# limit): under the 5 s of uvicorn's default, which vLLM and `transformers serve` run on.
KEEP_ALIVE_SECONDS = 4.0

# What a failed request raises, below the adapters: aiohttp's own errors and timeouts.
CLIENT_ERRORS = (aiohttp.ClientError, TimeoutError)


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
    connection_idle_seconds: float = KEEP_ALIVE_SECONDS
    # TCP connections the client has opened: one per engine while requests reuse it.
    connections_opened: int = 0
    _client: aiohttp.ClientSession | None = field(default=None, repr=False)

    @property
    def client(self) -> aiohttp.ClientSession:
        # Created on first use, so it belongs to the event loop that uses it.
        if self._client is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.connect_timeout, sock_read=self.read_timeout
            )
            self._client = aiohttp.ClientSession(
                timeout=timeout,
                trace_configs=[self._tracing()],
                raise_for_status=False,
                connector=aiohttp.TCPConnector(keepalive_timeout=self.connection_idle_seconds),
            )
        return self._client

    def _tracing(self) -> aiohttp.TraceConfig:
        tracing = aiohttp.TraceConfig()

        async def body_sent(session: Any, context: SimpleNamespace, params: Any) -> None:
            callback = (context.trace_request_ctx or {}).get("on_sent")
            if callback is not None:
                callback(time.perf_counter())

        async def connection_opened(session: Any, context: SimpleNamespace, params: Any) -> None:
            self.connections_opened += 1

        tracing.on_request_chunk_sent.append(body_sent)
        tracing.on_connection_create_end.append(connection_opened)
        return tracing

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    async def get_json(self, path: str, headers: dict | None = None) -> Any:
        """GET a small JSON document (health checks), within 3 s; EngineError if that fails."""
        timeout = aiohttp.ClientTimeout(total=3.0)
        try:
            async with self.client.get(self.url(path), headers=headers, timeout=timeout) as got:
                if got.status >= 400:
                    raise EngineError(f"HTTP {got.status} from {path}", status=got.status)
                return await got.json(content_type=None)
        except CLIENT_ERRORS as error:
            raise EngineError(type(error).__name__) from error

    def unreachable(self, error: Exception) -> EngineHealth:
        reason = error.message if isinstance(error, EngineError) else type(error).__name__
        detail = f"{self.label} is not reachable at {self.base_url}: {reason}"
        return EngineHealth(self.name, up=False, detail=detail)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
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


async def read_lines(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[float, str]]:
    """(arrival time, line) for each non-empty line of a response body, as the bytes arrive.
    Lines are split here from each read, and lines that arrived in one read share its stamp:
    the time the bytes came off the socket, not when a line reader got to them."""
    pending = b""
    async for data in response.content.iter_any():
        at = time.perf_counter()
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                yield at, line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending.strip():
        yield time.perf_counter(), pending.decode("utf-8", errors="replace")


async def post_lines(
    client: aiohttp.ClientSession,
    url: str,
    payload: dict,
    label: str,
    headers: dict | None = None,
    on_sent: Callable[[float], None] | None = None,
) -> AsyncIterator[tuple[float, str]]:
    """POST `payload` and yield (arrival time, line) for each non-empty line of the response.
    `on_sent`, if given, is called with perf_counter() once the request's body is written.

    Leaving the iteration early closes the response, which closes the connection: that is how
    the engine learns that nobody is listening and stops generating. A response read to its end
    leaves its connection open for the next request.
    """
    body = json.dumps(payload).encode()
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    trace = {"on_sent": on_sent} if on_sent is not None else None
    try:
        async with client.post(
            url, data=body, headers=sent_headers, trace_request_ctx=trace
        ) as response:
            if response.status >= 400:
                raise EngineError(
                    f"{label} refused the request (HTTP {response.status}): "
                    f"{_error_text(await response.read())}",
                    status=response.status,
                )
            finished = False
            try:
                async for at, line in read_lines(response):
                    yield at, line
                finished = True
            finally:
                if not finished:
                    response.close()
    except aiohttp.ClientConnectorError as error:
        raise EngineError(f"{label} is not reachable at {url}: {error}") from error
    except (TimeoutError, aiohttp.ServerTimeoutError) as error:
        raise EngineError(f"{label} did not answer in time ({type(error).__name__})") from error
    except aiohttp.ClientError as error:
        raise EngineError(f"{label} closed the connection mid-stream: {error}") from error
