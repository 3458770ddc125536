"""Server-sent events on the wire (the `text/event-stream` format of the HTML standard)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from duet.generation import Generation

# How long an event stream may stay silent before a comment is sent to keep it open (a model can
# think for a long time before its first token).
HEARTBEAT_SECONDS = 15.0

# Headers for every event stream. `X-Accel-Buffering: no` tells nginx-style proxies to pass each
# event on at once; `no-cache` keeps caches from holding the stream. (The app installs no gzip
# middleware, and Starlette's would skip text/event-stream anyway.)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def format_event(name: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One event. JSON never contains a raw newline, so `data` is always a single line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {name}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def format_comment(text: str) -> bytes:
    """A comment line: ignored by browsers, keeps idle connections from timing out."""
    return f": {text}\n\n".encode()


async def generation_events(generation: Generation, after_seq: int = -1) -> AsyncIterator[bytes]:
    """A generation's events after `after_seq`, as they happen, each stamped `s` when written
    (ms since the engine request was on the wire, like `t`); a comment when nothing happened
    for HEARTBEAT_SECONDS."""
    async for event in generation.subscribe(after_seq, HEARTBEAT_SECONDS):
        if event is None:
            yield format_comment("waiting")
            continue
        sent = generation.ms_since_start(time.perf_counter())
        yield format_event(event.name, {**event.data, "s": sent}, event.seq)
