"""The least a Python relay can do: the floor `duet bench relay` compares Duet's relay with.

A raw ASGI app (no framework, no store, no templates) on the same server stack as Duet
(uvicorn, with httptools and uvloop when installed) and the same HTTP client (aiohttp): it
forwards `POST /<engine>/<path>` to that engine's `<path>` and copies the response's bytes back
as soon as they are read. What it adds to a stream is what any relay written this way adds on this
machine before doing any work of its own; Duet's added time beyond it is Duet's own.

It keeps the perf_counter() stamps of its last request (received, request on the wire, first
bytes read, first text read) and serves them at `GET /stamps`, so the benchmark, on the same
machine and clock (CLOCK_MONOTONIC), can take the engine's time out of each request as it does
for Duet.
Only for benchmarks: one request at a time, no checks.

    python -m duet.bench.reference_relay --port 18601 --upstream vllm=http://127.0.0.1:8000 \
        --idle vllm=4 ...
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

import aiohttp

from duet.engines.http import KEEP_ALIVE_SECONDS

Stamps = dict[str, float]

# A JSON text field with something in it, in either engine's stream: the first read holding one
# is where the engine's time to first token ends. (vLLM's first event is the role alone, with
# empty content; taking the first bytes as the first token would put vLLM's time between the two
# on the relay.)
TEXT_FIELD = re.compile(rb'"(?:content|reasoning_content|reasoning|thinking)":"[^"]')


def create_relay(upstreams: dict[str, str], idle: dict[str, float] | None = None) -> Any:
    """The relay app: `upstreams` by name, and how long an idle connection to each is kept
    (Duet's adapters' limits, `duet.engines.routes.connection_idle`; KEEP_ALIVE_SECONDS where
    none is given)."""
    idle = idle or {}
    sessions: dict[str, aiohttp.ClientSession] = {}
    last: Stamps = {}

    async def body_sent(session: Any, context: Any, params: Any) -> None:
        last["wire"] = time.perf_counter()

    async def relay(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        received = time.perf_counter()
        if scope["path"] == "/stamps":
            await respond(send, 200, json.dumps(last).encode())
            return
        name, _, path = scope["path"].lstrip("/").partition("/")
        if name not in upstreams:
            await respond(send, 404, b"unknown upstream")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        session = sessions.get(name)
        if session is None:
            tracing = aiohttp.TraceConfig()
            tracing.on_request_chunk_sent.append(body_sent)
            keep = idle.get(name, KEEP_ALIVE_SECONDS)
            connector = aiohttp.TCPConnector(keepalive_timeout=keep)
            session = sessions[name] = aiohttp.ClientSession(
                trace_configs=[tracing], connector=connector
            )
        last.clear()
        last["received"] = received
        headers = {"Content-Type": "application/json"}
        for key, value in scope["headers"]:
            if key == b"authorization":
                headers["Authorization"] = value.decode()
        url = upstreams[name].rstrip("/") + "/" + path
        async with session.post(url, data=body, headers=headers) as response:
            start = {"type": "http.response.start", "status": response.status}
            await send({**start, "headers": [(b"content-type", b"text/plain")]})
            async for data in response.content.iter_any():
                read_at = time.perf_counter()
                last.setdefault("first_bytes", read_at)
                if "first_text" not in last and TEXT_FIELD.search(data):
                    last["first_text"] = read_at
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return relay


async def respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", default=[], help="name=url")
    parser.add_argument(
        "--idle", action="append", default=[], help="name=seconds an idle connection to it is kept"
    )
    parser.add_argument(
        "--keep-alive", type=float, default=5.0, help="seconds an idle connection is kept open"
    )
    args = parser.parse_args()
    upstreams = dict(entry.split("=", 1) for entry in args.upstream)
    idle = {name: float(seconds) for name, seconds in (e.split("=", 1) for e in args.idle)}
    uvicorn.run(
        create_relay(upstreams, idle),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        timeout_keep_alive=args.keep_alive,
    )


if __name__ == "__main__":
    main()
