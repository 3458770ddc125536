"""Server-sent events on the wire (the `text/event-stream` format of the HTML standard), and the
response that writes a generation's events to a page the moment they are published.

`encode_published` is the one place where an answer's typed events (`duet.published`) become
what the page reads. Each event's `data` is a JSON object with `t` (when the server read it, ms
since the engine request was on the wire) and `s` (when it was written to this response, same
clock); by event name:

    sent          after_receipt_ms, received_at      the engine request is on the wire (t = 0)
    reasoning     text, chunk                        thinking text; `chunk` numbers the upstream
    answer        text, chunk                          chunk it came in
    usage         prompt_tokens, completion_tokens   the engine's own counts
    done          finish_reason                      the engine ended the stream normally
    engine_error  message, status                    the engine failed (status: its HTTP status)
    end           status, error, unsaved             the answer is over; nothing follows

(`engine_error`, not `error`: EventSource uses that name for its own connection errors.)

An event stream is written by whoever has something to say: the answer's own task writes each
event as it folds it in (`EventStream.follow`, `Generation.watch`), with no task of the stream's
in between; the request's task only opens the stream, writes heartbeats and closes it. A write
never waits: when the connection does not take the bytes at once (a client that reads slowly),
they queue behind the waiting write, in order, and the answer goes on for everyone else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from duet.engines.events import AnswerDelta, Done, ReasoningDelta, StreamError, Usage
from duet.generation import Generation
from duet.published import AnswerEnded, Published, RequestSent
from duet.tasks import start_task

log = logging.getLogger(__name__)

# How long an event stream may stay silent before a comment is sent to keep it open (a model can
# think for a long time before its first token).
HEARTBEAT_SECONDS = 15.0

# Headers for every event stream. `X-Accel-Buffering: no` tells nginx-style proxies to pass each
# event on at once; `no-cache` keeps caches from holding the stream. (The app installs no gzip
# middleware, and Starlette's would skip text/event-stream anyway.)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# One encoder for every event: `json.dumps` with options builds a new one per call, which cost
# about 3 of its 9 µs per event here.
JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def format_event(name: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One event. JSON never contains a raw newline, so `data` is always a single line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {name}")
    lines.append("data: " + JSON_ENCODER.encode(data))
    return ("\n".join(lines) + "\n\n").encode()


def published_data(published: Published) -> tuple[str, dict[str, Any]]:
    """An answer's event as its SSE event name and data (see the module docstring)."""
    event, t = published.event, published.t
    if isinstance(event, ReasoningDelta | AnswerDelta):
        return event.kind, {"text": event.text, "t": t, "chunk": event.chunk}
    if isinstance(event, Usage):
        return "usage", {
            "t": t,
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
        }
    if isinstance(event, Done):
        return "done", {"t": t, "finish_reason": event.finish_reason}
    if isinstance(event, StreamError):
        return "engine_error", {"t": t, "message": event.message, "status": event.status}
    if isinstance(event, RequestSent):
        return "sent", {
            "t": t,
            "after_receipt_ms": event.after_receipt_ms,
            "received_at": event.received_at,
        }
    if isinstance(event, AnswerEnded):
        return "end", {
            "t": t,
            "status": event.status,
            "error": event.error,
            "unsaved": event.unsaved,
        }
    raise TypeError(f"not an answer event: {event!r}")


def encode_published(events: Sequence[Published], written_ms: float) -> bytes:
    """Events as written to a page at `written_ms` (their `s`)."""
    parts = []
    for published in events:
        name, data = published_data(published)
        data["s"] = written_ms
        parts.append(format_event(name, data, published.seq))
    return b"".join(parts)


def format_comment(text: str) -> bytes:
    """A comment line: ignored by browsers, keeps idle connections from timing out."""
    return f": {text}\n\n".encode()


class EventStream:
    """One page's open event stream: `write` puts bytes on its connection, in order, at once."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._queued: deque[bytes] = deque()
        self._writing: asyncio.Task[None] | None = None
        # Set whenever the stream may be done: its generation ended, or the client left.
        self._changed = asyncio.Event()
        self.closed = False  # the client left, or the connection failed
        self.last_write = time.monotonic()

    def write(self, data: bytes) -> None:
        """Write `data` now if the connection takes it; else after what is already waiting.

        On Python 3.12 the write runs in the caller's turn of the event loop (an eager task,
        `tasks.start_task`) and, when the connection takes the bytes, is done before this
        returns; its task only lives on when it has to wait. On 3.11 it runs one turn later."""
        if self.closed:
            return
        self.last_write = time.monotonic()
        self._queued.append(data)
        if self._writing is None or self._writing.done():
            self._writing = start_task(self._write_queued(), name="event stream write")

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                body = self._queued.popleft()
                await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            # How ASGI servers that follow spec 2.4 say the client has gone.
            self.close()
        except Exception:
            log.exception("writing to an event stream failed")
            self.close()

    def close(self) -> None:
        self.closed = True
        self._queued.clear()
        self._changed.set()

    async def drained(self) -> None:
        """Wait until everything written is on the connection (or the client has gone)."""
        if self._writing is not None and not self._writing.done():
            await asyncio.wait({self._writing})

    async def follow(self, generation: Generation, after_seq: int = -1) -> None:
        """Write the generation's events after `after_seq` as they are published, each stamped
        `s` when written (ms since the engine request was on the wire, like `t`), until its
        `end` event or until the client leaves; a comment whenever nothing was written for
        HEARTBEAT_SECONDS."""
        done = generation.ended

        def write_events(events: Sequence[Published]) -> None:
            nonlocal done
            self.write(encode_published(events, generation.ms_since_start(time.perf_counter())))
            if events[-1].is_end:
                done = True
                self._changed.set()

        stop_watching = generation.watch(after_seq, write_events)
        try:
            while not done and not self.closed:
                quiet = time.monotonic() - self.last_write
                if quiet >= HEARTBEAT_SECONDS:
                    self.write(format_comment("waiting"))
                    continue
                self._changed.clear()
                try:
                    async with asyncio.timeout(HEARTBEAT_SECONDS - quiet):
                        await self._changed.wait()
                except TimeoutError:
                    pass
        finally:
            stop_watching()


class EventStreamResponse(Response):
    """A `text/event-stream` response whose body `produce` writes through an `EventStream`.

    `produce` is cancelled when the client disconnects; when it returns, the response ends once
    everything written has gone out."""

    media_type = "text/event-stream"

    def __init__(self, produce: Callable[[EventStream], Awaitable[None]]) -> None:
        self.produce = produce
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        stream = EventStream(send)

        async def produce() -> None:
            await self.produce(stream)

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stream.close()

        producing = start_task(produce(), name="event stream")
        listening = start_task(until_disconnect(), name="event stream disconnect")
        try:
            await asyncio.wait({producing, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producing, listening):
                task.cancel()
            # Let both finish their cleanup (a producer stops watching its generation) before
            # the response is over.
            await asyncio.wait({producing, listening})
        if not producing.cancelled():
            producing.result()  # raises what `produce` raised
        await stream.drained()
        if not stream.closed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
