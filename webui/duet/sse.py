"""Server-sent events on the wire (the `text/event-stream` format of the HTML standard)."""

from __future__ import annotations

import json
from typing import Any

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
