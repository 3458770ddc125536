"""Reading an engine's streaming HTTP response line by line, stamping each line on arrival.

Both wire formats Duet speaks are line-based (SSE `data:` lines, NDJSON), so one reader serves
all adapters. It reads with httpx's `aiter_lines()`, which hands over each line as soon as the
bytes holding it arrive; nothing here waits for a byte count or a time window (buffering is
exactly what Duet exists to expose, so it must not add any).

Failures become `EngineError`s with a sentence a person can act on; adapters turn them into
`StreamError` events.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx


class EngineError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def make_client(base_url: str, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=30.0, pool=30.0)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout)


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
    try:
        async with client.stream("POST", path, json=payload, headers=headers) as response:
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
