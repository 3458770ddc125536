"""The replay source: recorded real engine output, streamed at a chosen pace. It measures
Duet, not an engine.

On a GPU box tokens arrive every few milliseconds, and a team's streams make thousands of
chunks a second through one Duet process: more than this machine's CPU engines produce. The
replay source stands in for the engines so that `duet bench load --replay` can drive Duet at
that speed (`duet.bench.load_replay`). It answers every chat request with a stream recorded
from a real engine (`duet.bench.replay_record`), byte for byte, whatever the request asked;
only the timing is its own. No test of an engine uses it in place of one.

One source stands for both engines, each under its own prefix (as the reference relay does),
with what Duet's adapters and health checks call:

    POST /vllm/v1/chat/completions      vLLM's OpenAI-compatible stream (SSE)
    GET  /vllm/v1/models, /vllm/version, /vllm/health
    POST /ollama/api/chat               Ollama's native stream (NDJSON)
    POST /ollama/v1/chat/completions    Ollama's OpenAI-compatible stream (SSE)
    GET  /ollama/api/tags, /ollama/api/ps, /ollama/api/version, /ollama/v1/models
    POST /ollama/api/show

Pacing. A recorded body is cut into the pieces the engine wrote (an SSE event ending in a
blank line, an NDJSON line), and the pieces into steps: a step is one piece that carries
text, with the pieces that carry none (vLLM's role chunk before the first token; the finish,
usage and `[DONE]` pieces after the last) joined to the text next to them. Step i is written
`first_token_ms` + i / `tokens_per_s` after the request's body was read, each against that one
start, so a late step does not push back the ones after it. Each recorded text piece is one
token, so the pace in steps is the pace in tokens.

    python -m duet.bench.replay_source --port 18700 --pace 100 --first-token-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from duet.bench.reference_relay import TEXT_FIELD

RECORDINGS = "replay_recordings.json"
# The chat streams, by the path (after the engine's prefix) a chat request goes to.
STREAM_PATHS: dict[str, dict[str, str]] = {
    "vllm": {"/v1/chat/completions": "vllm"},
    "ollama": {"/api/chat": "ollama", "/v1/chat/completions": "ollama-openai"},
}
# As vLLM's uvicorn keeps an idle connection (VLLM_HTTP_TIMEOUT_KEEP_ALIVE): longer than
# Duet's adapters keep theirs (duet.engines.http.KEEP_ALIVE_SECONDS).
KEEP_ALIVE_SECONDS = 5.0

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded answer: its status, content type and body, as the engine sent them."""

    status: int
    content_type: str
    body: str

    @property
    def data(self) -> bytes:
        return self.body.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Recordings:
    """Chat streams by engine route, and the other answers by prefix and "METHOD /path"."""

    streams: Mapping[str, Recorded]
    documents: Mapping[str, Mapping[str, Recorded]]
    about: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Pace:
    tokens_per_s: float
    first_token_ms: float = 20.0

    def offsets(self, steps: int) -> list[float]:
        """When each step is due, in seconds after the request was read."""
        return [self.first_token_ms / 1000 + i / self.tokens_per_s for i in range(steps)]


def load_recordings(path: Path | None = None) -> Recordings:
    """The recordings at `path`, else the ones Duet ships (duet/bench/replay_recordings.json)."""
    if path is None:
        text = (resources.files("duet.bench") / RECORDINGS).read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    data = json.loads(text)
    return Recordings(
        streams={route: Recorded(**entry) for route, entry in data["streams"].items()},
        documents={
            prefix: {key: Recorded(**entry) for key, entry in answers.items()}
            for prefix, answers in data["documents"].items()
        },
        about=data["about"],
    )


def pieces(recorded: Recorded) -> list[bytes]:
    """The body cut after each event (SSE) or line (NDJSON); joined, they are the body."""
    separator = b"\n\n" if recorded.content_type.startswith("text/event-stream") else b"\n"
    parts = recorded.data.split(separator)
    cut = [part + separator for part in parts[:-1]]
    return cut + ([parts[-1]] if parts[-1] else [])


def steps(recorded: Recorded) -> list[bytes]:
    """The pieces grouped into steps (the module docstring): one text piece each, with the
    pieces without text joined to the text before them (before the first: to the first)."""
    grouped: list[list[bytes]] = []
    leading: list[bytes] = []
    for piece in pieces(recorded):
        if TEXT_FIELD.search(piece):
            grouped.append([*leading, piece])
            leading = []
        elif grouped:
            grouped[-1].append(piece)
        else:
            leading.append(piece)
    if leading:
        grouped.append(leading)  # a body without text: one step
    return [b"".join(group) for group in grouped]


async def read_body(receive: Receive) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"


async def respond(send: Send, recorded: Recorded) -> None:
    data = recorded.data
    headers = [
        (b"content-type", recorded.content_type.encode()),
        (b"content-length", str(len(data)).encode()),
    ]
    await send({"type": "http.response.start", "status": recorded.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def stream(
    send: Send, receive: Receive, recorded: Recorded, chunks: Sequence[bytes], pace: Pace
) -> None:
    """The recorded stream, step by step on the pace's schedule, until it ends or the client
    goes away (Duet's Stop closes the connection, as it does to an engine)."""
    start = time.perf_counter()
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        headers = [(b"content-type", recorded.content_type.encode())]
        await send({"type": "http.response.start", "status": recorded.status, "headers": headers})
        for due, chunk in zip(pace.offsets(len(chunks)), chunks, strict=True):
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        return  # the client went away mid-write
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def create_source(recordings: Recordings, pace: Pace) -> Callable[..., Awaitable[None]]:
    """The replay source as a raw ASGI app (no framework: the source's own cost stays small
    beside Duet's, which it is there to measure)."""
    cut = {route: steps(recorded) for route, recorded in recordings.streams.items()}
    missing = Recorded(404, "application/json", '{"error": "not recorded"}')

    async def source(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        prefix, _, rest = scope["path"].lstrip("/").partition("/")
        path = "/" + rest
        await read_body(receive)
        route = STREAM_PATHS.get(prefix, {}).get(path)
        if scope["method"] == "POST" and route in recordings.streams:
            await stream(send, receive, recordings.streams[route], cut[route], pace)
            return
        answers = recordings.documents.get(prefix, {})
        await respond(send, answers.get(f"{scope['method']} {path}", missing))

    return source


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pace", type=float, required=True, help="tokens/s per stream")
    parser.add_argument("--first-token-ms", type=float, default=20.0)
    parser.add_argument("--recordings", type=Path, help="default: the ones Duet ships")
    args = parser.parse_args()
    app = create_source(load_recordings(args.recordings), Pace(args.pace, args.first_token_ms))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
