"""`duet bench relay`: what Duet's own relaying adds to a stream, measured, not assumed.

In one run, for each engine, the same request (fixed prompt, greedy, no thinking) is streamed N
times on each of three paths, in rotating order, with Duet running as a separate process
(`duet serve`) on a loopback port, exactly as in production:

- direct: Duet's engine adapter, in this process; TTFT and gaps from the adapter's arrival stamps.
- through Duet: POST /chat/send, then GET the answer's event stream, as the page does; TTFT from
  the POST to the first text event read here.
- through the reference relay (`duet.bench.reference_relay`): the same adapter pointed at the
  least a Python relay on Duet's server stack and HTTP client can do; the floor for Duet's
  number here.
- with `--accounts`, a fourth path, through Duet signed in: a second `duet serve`, in accounts
  mode (DUET_MODE=accounts), with an account made in its database before it starts; the
  benchmark signs in once (POST /signin, as the sign-in form does) and sends every request of
  this path with that session's cookie, so each one is checked as a teammate's would be. It
  runs in the same rounds as the others, so what accounts add is measured against the same
  engine and machine, and it is held to the same targets on its own.

What a relay adds to TTFT is taken per request, so the engine's own variation cancels out
(`duet.bench.measured.added_ttft_ms`):

    added = (TTFT here through the relay - TTFT the relay saw) - this client's pre-wire time

The relay stamps its engine time itself (Duet's `t`, counted from when its engine request was
on the wire; the reference relay's stamps at /stamps), so the first difference is everything
but the engine's time: this client putting its request on the wire, the relay receiving it,
its work until its own engine request is on the wire, and the relay back. The first of these is
this client's own (building and writing the request with aiohttp; a direct request pays it
too), measured on every request with the same on-the-wire hook Duet uses and subtracted from
that very request: its hiccups are the client's, not the relay's. The unpaired difference of
the paths' TTFT p50 is printed too: it moves with the engine's noise, and on a machine where the
engine and Duet share the cores it also holds what Duet's work slows the engine by.

The added time is split into four parts. Two come from Duet's own clocks: "Duet receipt to
engine wire" (the `sent` event's `after_receipt_ms`, from the app receiving the POST) and "first
chunk held in Duet" (`s - t` of the first text event: from reading it to writing it to this
client, including any wait for the event stream to open). Two line this client's clock up with
Duet's (both perf_counter(), CLOCK_MONOTONIC on Linux, one clock for every process on the
machine, through the `sent` event's `received_at`): "request in" (from this client's POST
being on the wire to Duet's app receiving it) and "first chunk out" (from Duet writing the
first text event to this client reading it). The reference relay's stamps give the same parts
for it. Chunk counts are compared request by request and ITL distributions by their p50/p95,
with Duet's server-side gaps beside them. Every number, and the verdicts against the targets
(relative to the reference relay measured in the same run), is declared in
`duet.bench.summary`; what the run prints and writes, in `duet.bench.report`.

Now and then this whole machine stands still for a few hundred ms (docs/benchmarks/relay.md),
and a request caught in it reports the stall as its own time, whatever its path. A watcher
process (`duet.bench.stall_watch`) runs beside the requests and notes every moment it was not
run for 100 ms or more; each request carries how much of its time to first token such a stall
covered. The added TTFT is given over all requests, and beside it over the requests no stall
touched.

Every request starts on a settled machine: the benchmark pauses `SETTLE_SECONDS` before each
one, on every path. The end of a stream is not the end of the work it caused: the engine
finishes its request (and a relay its own bookkeeping) in the milliseconds after the last
chunk, on the same cores, and a request sent at that moment pays for it. Without the pause, the
path that follows a direct request in each round paid for it and the others did not (measured
through Duet with vLLM: a send right after a direct stream took about a millisecond longer to
be received and 1.3 ms longer from receipt to engine wire than one sent 5 ms later; from 5 to
100 ms after, no difference). The pause is short on purpose: after a long one (250 ms) the
machine has gone idle, and every path starts colder and slower, Duet's more than the
reference relay's (docs/benchmarks/relay.md).

Every request goes over a kept-open connection, on every path, as in a steady exchange: the
relays under test keep an idle connection for `RELAY_KEEP_ALIVE_SECONDS`, longer than the
benchmark's clients keep one (`CLIENT_KEEP_ALIVE_SECONDS`, aiohttp's own default, which the
engine adapters use). The other way round, a client now and then sends its next request on a
connection the server is closing at that very moment, and fails it: aiohttp retries such a
request only when its method is idempotent, and POST /chat/send is not. Duet's stream is read
to its end (nothing follows its `end` event), so its connection goes back to the pool too.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx

from duet.api import keys as api_keys
from duet.auth.passwords import HASHER
from duet.auth.sessions import COOKIE
from duet.bench import open_webui
from duet.bench.measured import (
    ALL_PATHS,
    NGINX_PATHS,
    OPEN_WEBUI,
    PATHS,
    EngineResult,
    Measured,
    PathName,
    Run,
    mark_stalls,
)
from duet.bench.nginx import Variant, nginx_proxy
from duet.bench.ports import free_port
from duet.bench.report import (
    machine_description,
    raw_document,
    report_lines,
    summary_document,
    write_json,
)
from duet.bench.sse_client import ServerSentEvent, stamped_events
from duet.bench.stall_watch import StallWatch
from duet.bench.summary import summarize
from duet.engines import build_engines
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import EngineName
from duet.engines.http import read_lines
from duet.engines.ollama import OllamaEngine
from duet.engines.routes import connection_idle, reached_through, route_environment, servers
from duet.metrics.stream import ChunkArrival, arrivals_from_events, compare_hops, stream_metrics
from duet.settings import Settings
from duet.store import open_database, users

PROMPT = "Tell me a story that never ends."
WARMUP_REQUESTS = 2
START_SECONDS = 30.0
# How long the benchmark's clients, and the relays under test, keep an idle connection open
# (the module's docstring says why the relays' must be the longer).
CLIENT_KEEP_ALIVE_SECONDS = 15.0
RELAY_KEEP_ALIVE_SECONDS = 60.0
# The pause before each request, unless told (the module's docstring says why).
SETTLE_SECONDS = 0.01
# The mode of the `duet serve` behind each path through Duet, and the page that answers 200
# once it is up (in accounts mode, the one page open to a client that has not signed in).
DUET_MODES: dict[PathName, str] = {"duet": "local", "signed_in": "accounts"}
UP_PAGES = {"local": "/compare", "accounts": "/signin"}
BENCH_ACCOUNT = "bench"
# The site each path through nginx runs (duet.bench.nginx): in front of the local Duet.
NGINX_VARIANTS: dict[PathName, Variant] = {"nginx": "shipped", "nginx_buffering": "buffering"}
# The engines a path serves, where not every one: Open WebUI is pointed at Ollama.
ENGINES_OF: dict[PathName, tuple[EngineName, ...]] = {OPEN_WEBUI: ("ollama",)}


def bench_request(max_tokens: int) -> ChatRequest:
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=max_tokens, seed=0)
    return ChatRequest(
        messages=(ChatMessage(role="user", content=PROMPT),), thinking=False, sampling=sampling
    )


def measure(path: PathName, sent_at: float, arrivals: list[ChunkArrival], **extra: Any) -> Measured:
    metrics = stream_metrics(sent_at, arrivals, extra.pop("output_tokens", None))
    return Measured(
        path=path,
        ttft_ms=None if metrics.ttft is None else metrics.ttft * 1000,
        chunks=metrics.chunk_count,
        itl_ms=tuple(gap * 1000 for gap in metrics.itl),
        output_tokens=metrics.output_tokens,
        started_at=sent_at,
        first_text_at=arrivals[0].at if arrivals else None,
        **extra,
    )


async def stream_direct(engine: Engine, request: ChatRequest) -> Measured:
    on_wire: list[float] = []
    sent_at = time.perf_counter()
    events = [event async for event in engine.stream_chat(request, on_wire.append)]
    errors = [event for event in events if event.kind == "error"]
    if errors:
        raise RuntimeError(f"{engine.label} failed: {errors[0].message}")  # type: ignore[union-attr]
    tokens = next(
        (e.completion_tokens for e in events if e.kind == "usage"),  # type: ignore[union-attr]
        None,
    )
    pre_wire_ms = (on_wire[0] - sent_at) * 1000 if on_wire else None
    return measure(
        "direct",
        sent_at,
        arrivals_from_events(events),
        output_tokens=tokens,
        pre_wire_ms=pre_wire_ms,
    )


async def report_body_sent(session: Any, context: Any, params: Any) -> None:
    callback = (context.trace_request_ctx or {}).get("on_sent")
    if callback is not None:
        callback(time.perf_counter())


@dataclass(frozen=True, slots=True)
class DuetUnderTest:
    """A `duet serve` the benchmark streams through: the path it is, where it listens, and the
    headers every request to it carries (in accounts mode, the signed-in session's cookie)."""

    path: PathName
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    # What its certificate is trusted by, over https (nginx in front of Duet); True: the
    # default verification (and nothing to verify over http).
    tls: ssl.SSLContext | bool = True


def message_form(
    engine: EngineName,
    max_tokens: int,
    content: str = PROMPT,
    thinking: bool = False,
    conversation_id: int | None = None,
) -> dict[str, str]:
    """The composer's form for one message, greedy, as the page sends it (with
    `conversation_id`, a next turn in that conversation; without, a new conversation)."""
    form = {
        "content": content,
        "engine": engine,
        "temperature": "0",
        "top_p": "1",
        "top_k": "0",
        "max_tokens": str(max_tokens),
        "system_prompt": "",
    }
    if thinking:
        form["thinking"] = "on"
    if conversation_id is not None:
        form["conversation_id"] = str(conversation_id)
    return form


class DuetRefused(RuntimeError):
    """Duet answered the message's POST with an error status (`status`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message Duet took: when this client started the request, its own time to put it on
    the wire (ms), the answer's event stream URL, and the conversation it went to (None when
    the answer page does not say: a next turn in a conversation the client already knows)."""

    sent_at: float
    pre_wire_ms: float | None
    stream_url: str
    conversation_id: int | None


async def post_message(
    client: aiohttp.ClientSession, duet: DuetUnderTest, form: Mapping[str, str]
) -> SentMessage:
    """POST a composer form to Duet as the page does. DuetRefused if Duet refuses it."""
    # Encoded as the page's form is, into bytes like an engine's JSON body.
    body = urlencode(form).encode()
    on_wire: list[float] = []
    sent_at = time.perf_counter()
    async with client.post(
        duet.url + "/chat/send",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **duet.headers},
        trace_request_ctx={"on_sent": on_wire.append},
        ssl=duet.tls,
    ) as response:
        page = await response.text()
    if response.status != 200:
        raise DuetRefused(f"Duet refused the request ({response.status}): {page}", response.status)
    found = re.search(r'data-stream="(/messages/\d+/stream)"', page)
    if found is None:
        raise RuntimeError("Duet's answer to /chat/send held no stream URL")
    pushed = re.fullmatch(r"/c/(\d+)", response.headers.get("HX-Push-Url", ""))
    pre_wire_ms = (on_wire[0] - sent_at) * 1000 if on_wire else None
    return SentMessage(
        sent_at, pre_wire_ms, found.group(1), int(pushed.group(1)) if pushed else None
    )


async def send_message(
    client: aiohttp.ClientSession, duet: DuetUnderTest, engine: EngineName, max_tokens: int
) -> tuple[float, float | None, str]:
    """POST the prompt to Duet as the page does: (when this client started the request, its
    own time to put it on the wire in ms, the answer's event stream URL)."""
    sent = await post_message(client, duet, message_form(engine, max_tokens))
    return sent.sent_at, sent.pre_wire_ms, sent.stream_url


@dataclass
class DuetStream:
    """What this client learns from one answer's event stream, event by event."""

    arrivals: list[ChunkArrival] = field(default_factory=list)
    # Each text event's `t`: when Duet's server read it, in ms after its engine request left.
    server_ts: list[float] = field(default_factory=list)
    # Each text event when Duet wrote it (`s`, in seconds after its engine request left).
    written: list[ChunkArrival] = field(default_factory=list)
    before_engine_ms: float | None = None  # the `sent` event's after_receipt_ms
    received_at: float | None = None  # the `sent` event's: when Duet received the POST
    first_chunk_held_ms: float | None = None
    first_chunk_out_ms: float | None = None
    status: str = ""  # the `end` event's; empty until it came
    # The engine's own counts (the `usage` event), and its error (`engine_error`), if any.
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    engine_error: str | None = None
    engine_error_status: int | None = None
    # The text of each kind, as it arrived (a next turn's history needs the answer).
    texts: dict[str, list[str]] = field(default_factory=lambda: {"reasoning": [], "answer": []})

    def read(self, arrived: float, event: ServerSentEvent) -> None:
        data = event.json()
        if event.event == "sent":
            self.before_engine_ms = data["after_receipt_ms"]
            self.received_at = data.get("received_at")
        elif event.event in ("reasoning", "answer") and data.get("text"):
            if not self.arrivals:
                self.read_first_text(arrived, data)
            self.arrivals.append(ChunkArrival(at=arrived, kind=event.event, chunk=data["chunk"]))
            self.server_ts.append(data["t"])
            self.written.append(ChunkArrival(data["s"] / 1000, event.event, data["chunk"]))
            self.texts[event.event].append(data["text"])
        elif event.event == "usage":
            self.prompt_tokens = data.get("prompt_tokens")
            self.output_tokens = data.get("completion_tokens")
        elif event.event == "engine_error":
            self.engine_error = data.get("message") or "the engine failed"
            self.engine_error_status = data.get("status")
        elif event.event == "end":
            self.status = data.get("status") or "without a status"

    def read_first_text(self, arrived: float, data: dict[str, Any]) -> None:
        self.first_chunk_held_ms = data["s"] - data["t"]
        if self.received_at is not None and self.before_engine_ms is not None:
            # Duet wrote it at: receipt + receipt-to-wire + s (ms after the wire).
            written_at = self.received_at + (self.before_engine_ms + data["s"]) / 1000
            self.first_chunk_out_ms = (arrived - written_at) * 1000


async def read_answer(
    client: aiohttp.ClientSession, duet: DuetUnderTest, stream_url: str
) -> DuetStream:
    """Read an answer's event stream to its end, event by event."""
    stream = DuetStream()
    async with client.get(duet.url + stream_url, headers=duet.headers, ssl=duet.tls) as response:
        # Read as the adapters read the engines (`read_lines`), so every path's client does the
        # same work per chunk, and to the end, which follows the `end` event: a response left
        # unread closes its connection instead of handing it to the next request.
        async for arrived, event in stamped_events(read_lines(response)):
            stream.read(arrived, event)
    return stream


async def stream_through_duet(
    client: aiohttp.ClientSession, duet: DuetUnderTest, engine: EngineName, max_tokens: int
) -> Measured:
    sent_at, pre_wire_ms, stream_url = await send_message(client, duet, engine, max_tokens)
    stream = await read_answer(client, duet, stream_url)
    if stream.status != "complete":
        ended = stream.status or "without an end"
        raise RuntimeError(f"the answer through Duet ({duet.path}) ended {ended}")
    # Only gaps are compared across the hop, so each side's own origin will do.
    hop = compare_hops(0.0, stream.written, sent_at, stream.arrivals)
    return measure(
        duet.path,
        sent_at,
        stream.arrivals,
        server_ttft_ms=stream.server_ts[0] if stream.server_ts else None,
        before_engine_ms=stream.before_engine_ms,
        first_chunk_held_ms=stream.first_chunk_held_ms,
        server_itl_ms=tuple(b - a for a, b in pairwise(stream.server_ts)),
        written_itl_ms=tuple(
            (later.at - earlier.at) * 1000 for earlier, later in pairwise(stream.written)
        ),
        collapsed_share=hop.browser_collapsed_fraction,
        written_collapsed_share=hop.server_collapsed_fraction,
        merged=hop.bursty,
        request_in_ms=(
            None if stream.received_at is None else (stream.received_at - sent_at) * 1000
        ),
        first_chunk_out_ms=stream.first_chunk_out_ms,
        pre_wire_ms=pre_wire_ms,
    )


def api_body(engine: Engine, request: ChatRequest) -> dict[str, Any]:
    """The benchmark's request as an OpenAI client sends it to Duet's /v1 for this engine."""
    sampling = request.sampling
    return {
        "model": f"{engine.name}/{engine.model}",
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "seed": sampling.seed,
        "chat_template_kwargs": {"enable_thinking": request.thinking},
    }


def server_timing_ms(header: str) -> dict[str, float]:
    """The `dur` of each metric of a Server-Timing header, by name."""
    spans = {}
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            if param.startswith("dur="):
                spans[name] = float(param.removeprefix("dur="))
    return spans


@dataclass(frozen=True, slots=True)
class OpenAIStream:
    """An OpenAI-style chat completion streamed to this client: when it started the request and
    its own time to put it on the wire (ms), the response's headers, each text chunk's arrival
    and the completion tokens the stream's usage gave (if it did)."""

    sent_at: float
    pre_wire_ms: float | None
    headers: Mapping[str, str]
    arrivals: list[ChunkArrival]
    output_tokens: int | None


async def stream_openai_chat(
    client: aiohttp.ClientSession, relay: DuetUnderTest, path: str, body: Mapping[str, Any]
) -> OpenAIStream:
    """POST a streamed chat completion to the relay at `path` and read it to its end, as the
    engines' own OpenAI streams are read. RuntimeError if it is refused."""
    on_wire: list[float] = []
    arrivals: list[ChunkArrival] = []
    tokens = None
    sent_at = time.perf_counter()
    async with client.post(
        relay.url + path,
        json=body,
        headers=relay.headers,
        trace_request_ctx={"on_sent": on_wire.append},
        ssl=relay.tls,
    ) as response:
        if response.status != 200:
            refusal = (await response.text())[:500]
            raise RuntimeError(
                f"{relay.url}{path} refused the request ({response.status}): {refusal}"
            )
        async for arrived, event in stamped_events(read_lines(response)):
            if event.data == "[DONE]":
                continue
            chunk = event.json()
            if chunk.get("usage"):
                tokens = chunk["usage"].get("completion_tokens")
            for choice in chunk.get("choices", ()):
                delta = choice.get("delta", {})
                kind = "answer" if delta.get("content") else "reasoning"
                # vLLM and Duet's /v1 name reasoning `reasoning`; Open WebUI `reasoning_content`.
                if delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content"):
                    arrivals.append(ChunkArrival(at=arrived, kind=kind, chunk=len(arrivals)))
    pre_wire_ms = (on_wire[0] - sent_at) * 1000 if on_wire else None
    return OpenAIStream(sent_at, pre_wire_ms, response.headers, arrivals, tokens)


async def stream_through_api(
    client: aiohttp.ClientSession, duet: DuetUnderTest, engine: Engine, request: ChatRequest
) -> Measured:
    """Through Duet's /v1, streamed. Duet's Server-Timing header gives its own spans for the
    request: receipt to engine request (`duet`) and engine request to first token (`engine`)."""
    stream = await stream_openai_chat(
        client, duet, "/v1/chat/completions", api_body(engine, request)
    )
    spans = server_timing_ms(stream.headers.get("Server-Timing", ""))
    return measure(
        "api",
        stream.sent_at,
        stream.arrivals,
        output_tokens=stream.output_tokens,
        server_ttft_ms=spans.get("engine"),
        before_engine_ms=spans.get("duet"),
        pre_wire_ms=stream.pre_wire_ms,
    )


async def stream_through_open_webui(
    client: aiohttp.ClientSession, relay: DuetUnderTest, engine: Engine, request: ChatRequest
) -> Measured:
    """Through Open WebUI's own chat completions, streamed: it gives no stamps of its own, so
    what it adds is read against the direct requests of the same rounds. It is asked what
    Duet's Ollama adapter (`engine`) asks Ollama."""
    if not isinstance(engine, OllamaEngine):
        raise RuntimeError(f"Open WebUI is measured in front of Ollama, not {engine.label}")
    body = open_webui.chat_body(engine.payload(request))
    stream = await stream_openai_chat(client, relay, open_webui.CHAT_COMPLETIONS, body)
    return measure(
        OPEN_WEBUI,
        stream.sent_at,
        stream.arrivals,
        output_tokens=stream.output_tokens,
        pre_wire_ms=stream.pre_wire_ms,
    )


async def stream_through_reference(
    engine: Engine, request: ChatRequest, client: aiohttp.ClientSession, reference_url: str
) -> Measured:
    """Through the reference relay: the same adapter as `stream_direct`, pointed at the relay,
    and the relay's own stamps of the request (on this machine's clock) for its engine time."""
    measured = await stream_direct(engine, request)
    async with client.get(reference_url + "/stamps") as stamps:
        relayed = await stamps.json(content_type=None)
    engine_ms = first_out_ms = None
    if "first_text" in relayed:
        engine_ms = (relayed["first_text"] - relayed["wire"]) * 1000
        if measured.first_text_at is not None:
            # It writes what it read at once: read-to-write is a send() call.
            first_out_ms = (measured.first_text_at - relayed["first_text"]) * 1000
    request_in_ms = None
    if measured.started_at is not None:
        request_in_ms = (relayed["received"] - measured.started_at) * 1000
    return replace(
        measured,
        path="reference",
        server_ttft_ms=engine_ms,
        before_engine_ms=(relayed["wire"] - relayed["received"]) * 1000,
        request_in_ms=request_in_ms,
        first_chunk_out_ms=first_out_ms,
    )


def reference_relay_command(settings: Settings, port: int) -> list[str]:
    return [
        sys.executable, "-m", "duet.bench.reference_relay", "--port", str(port),
        *(arg for name, url in servers(settings).items()
          for arg in ("--upstream", f"{name}={url}")),
        *(arg for name, seconds in connection_idle(settings).items()
          for arg in ("--idle", f"{name}={seconds}")),
        "--keep-alive", str(RELAY_KEEP_ALIVE_SECONDS),
    ]  # fmt: skip


def start_reference_relay(settings: Settings, port: int, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            reference_relay_command(settings, port), stdout=log, stderr=subprocess.STDOUT
        )


def duet_environment(settings: Settings, database: Path, mode: str = "local") -> dict[str, str]:
    """The environment of a `duet serve` under test: this one's, with the engines and models
    the benchmark uses, its own database, its mode, and the relays' keep-alive (docstring)."""
    return {
        **os.environ,
        **route_environment(settings),
        "DUET_DATABASE": str(database),
        "DUET_KEEP_ALIVE_TIMEOUT": str(RELAY_KEEP_ALIVE_SECONDS),
        "DUET_MODE": mode,
    }


def start_duet(
    settings: Settings,
    port: int,
    log_path: Path,
    database: Path,
    mode: str,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "duet.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**duet_environment(settings, database, mode), **(extra_env or {})}
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[2]} exited:\n{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {START_SECONDS:.0f} s")


@dataclass(frozen=True, slots=True)
class EngineAdapters:
    """One engine's adapters: straight to it, and through the reference relay (the paths
    through Duet are `DuetUnderTest`s)."""

    name: EngineName
    direct: Engine
    via_reference: Engine


def bench_client() -> aiohttp.ClientSession:
    """The benchmark's own client, to Duet and to the reference relay's stamps: the same HTTP
    client as the adapters on the direct path, with the same on-the-wire hook, so this client's
    own cost of sending each request is measured and paired out (docstring)."""
    tracing = aiohttp.TraceConfig()
    tracing.on_request_chunk_sent.append(report_body_sent)
    # No cookie jar: the session cookie goes where `DuetUnderTest.headers` says, and nowhere
    # else (a jar would send it to both Duets, which share the host and differ by port).
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEP_ALIVE_SECONDS),
        timeout=aiohttp.ClientTimeout(total=300.0, connect=10.0),
        trace_configs=[tracing],
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@dataclass(frozen=True, slots=True)
class Rounds:
    """How many rounds a run streams, each over every path: warm-up ones first, then measured."""

    requests: int
    warmup: int = WARMUP_REQUESTS
    # The pause before each request (the module's docstring: on a settled machine).
    settle_seconds: float = SETTLE_SECONDS


async def run_relay(
    adapters: Sequence[EngineAdapters],
    relays: Sequence[DuetUnderTest],
    reference_url: str | None,
    rounds: Rounds,
    max_tokens: int,
) -> list[EngineResult]:
    """Every engine's rounds over the run's paths (`run_paths`); `reference_url` None leaves
    the reference relay out."""
    request = bench_request(max_tokens)
    paths = run_paths(relays, reference=reference_url is not None)
    results = []
    async with bench_client() as client:
        try:
            for engine in adapters:
                results.append(
                    await relay_one_engine(
                        engine,
                        client,
                        relays,
                        reference_url or "",
                        request,
                        rounds,
                        paths_of_engine(engine.name, paths),
                    )
                )
        finally:
            # The adapters' clients belong to this event loop: close them in it.
            for engine in adapters:
                await engine.direct.aclose()
                await engine.via_reference.aclose()
    return results


def run_paths(relays: Sequence[DuetUnderTest], reference: bool = True) -> tuple[PathName, ...]:
    """The run's paths, in the order of each round before it is rotated: straight to the
    engine, through the reference relay (unless left out) and through each relay under test."""
    through = {relay.path for relay in relays} | {"direct"}
    if reference:
        through.add("reference")
    return tuple(path for path in ALL_PATHS if path in through)


def paths_of_engine(engine: EngineName, paths: Sequence[PathName]) -> tuple[PathName, ...]:
    """The run's paths that go to this engine."""
    return tuple(path for path in paths if engine in ENGINES_OF.get(path, (engine,)))


async def relay_one_engine(
    engine: EngineAdapters,
    client: aiohttp.ClientSession,
    relays: Sequence[DuetUnderTest],
    reference_url: str,
    request: ChatRequest,
    rounds: Rounds,
    paths: tuple[PathName, ...],
) -> EngineResult:
    result = EngineResult(engine.name, paths=paths)
    max_tokens = request.sampling.max_tokens
    duet_of = {relay.path: relay for relay in relays}

    async def one(path: PathName) -> Measured:
        if path == "direct":
            return await stream_direct(engine.direct, request)
        if path == "reference":
            return await stream_through_reference(
                engine.via_reference, request, client, reference_url
            )
        if path == "api":
            return await stream_through_api(client, duet_of[path], engine.direct, request)
        if path == OPEN_WEBUI:
            return await stream_through_open_webui(client, duet_of[path], engine.direct, request)
        return await stream_through_duet(client, duet_of[path], engine.name, max_tokens)

    async for path, measured in run_rounds(one, paths, rounds, engine.name):
        result.requests_on(path).append(measured)
    return result


async def run_rounds(
    one: Callable[[PathName], Awaitable[Measured]],
    paths: tuple[PathName, ...],
    rounds: Rounds,
    label: str,
) -> AsyncIterator[tuple[PathName, Measured]]:
    """Stream `one(path)` over every path, round by round, each request after the rounds'
    settling pause; the warm-up rounds' requests are not given. Progress goes to stderr under
    `label`."""
    for _ in range(rounds.warmup):
        for path in paths:
            await asyncio.sleep(rounds.settle_seconds)
            await one(path)
    for index in range(rounds.requests):
        # Rotate which path goes first, so a drift in the engine's speed hits all of them.
        turn = index % len(paths)
        for path in paths[turn:] + paths[:turn]:
            await asyncio.sleep(rounds.settle_seconds)
            yield path, await one(path)
        print(f"  {label}: {index + 1}/{rounds.requests}", file=sys.stderr, end="\r")
    print(file=sys.stderr)


def create_account(database: Path, name: str, password: str) -> None:
    """An approved account in a new database, made before `duet serve` opens it."""
    db = open_database(database)
    try:
        users.create_user(db, name, HASHER.hash(password), "user")
    finally:
        db.close()


def create_api_key(database: Path) -> str:
    """An API key of the local user in a new database, made before `duet serve` opens it."""
    db = open_database(database)
    try:
        return api_keys.create_key(
            db, users.LOCAL_USER_ID, "duet bench relay", None, None, datetime.now(UTC)
        ).token
    finally:
        db.close()


def sign_in(url: str, name: str, password: str) -> str:
    """Sign in as the sign-in form does; the session cookie's value. (With neither Origin nor
    Sec-Fetch-Site sent, the cross-site check lets a plain client through, as for every POST
    the benchmark makes.)"""
    response = httpx.post(f"{url}/signin", data={"name": name, "password": password}, timeout=60)
    token = response.cookies.get(COOKIE)
    if response.status_code != 303 or not token:
        raise RuntimeError(f"signing in to {url} failed ({response.status_code})")
    return token


def start_relays(
    settings: Settings, workdir: Path, reference_port: int, paths: Sequence[PathName]
) -> tuple[list[subprocess.Popen], list[DuetUnderTest]]:
    """The reference relay (if `paths` has it) and a `duet serve` for each path through Duet,
    each in its own process with a database of its own, up and answering (and signed in, in
    accounts mode)."""
    password = secrets.token_urlsafe(18)
    processes: list[subprocess.Popen] = []
    waits = []
    duets = []
    if "reference" in paths:
        reference_log = workdir / "reference-relay.log"
        processes.append(start_reference_relay(settings, reference_port, reference_log))
        waits.append((f"http://127.0.0.1:{reference_port}/stamps", processes[0], reference_log))
    try:
        for path in paths:
            mode = DUET_MODES.get(path)
            if mode is None:
                continue
            database, log = workdir / f"{path}.sqlite3", workdir / f"duet-serve-{path}.log"
            if mode == "accounts":
                create_account(database, BENCH_ACCOUNT, password)
            api_key = create_api_key(database) if path == "duet" and "api" in paths else None
            port = free_port()
            process = start_duet(settings, port, log, database, mode)
            processes.append(process)
            duets.append(DuetUnderTest(path, f"http://127.0.0.1:{port}"))
            waits.append((duets[-1].url + UP_PAGES[mode], process, log))
            print(
                f"Duet under test: duet serve ({mode}) on {duets[-1].url} (pid {process.pid})",
                file=sys.stderr,
            )
            if api_key is not None:
                # The /v1 path goes through the same server as the web UI's.
                headers = {"Authorization": f"Bearer {api_key}"}
                duets.append(DuetUnderTest("api", duets[-1].url, headers))
        for url, process, log in waits:
            wait_until_up(url, process, log)
        for index, duet in enumerate(duets):
            if DUET_MODES.get(duet.path) == "accounts":
                token = sign_in(duet.url, BENCH_ACCOUNT, password)
                duets[index] = replace(duet, headers={"Cookie": f"{COOKIE}={token}"})
    except BaseException:
        stop_processes(processes)
        raise
    return processes, duets


def stop_processes(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def start_proxies(
    stack: ExitStack, duets: Sequence[DuetUnderTest], paths: Sequence[PathName], workdir: Path
) -> list[DuetUnderTest]:
    """nginx in front of the local `duet serve` for each nginx path of the run, each in its
    variant of the shipped site, until `stack` closes."""
    proxied = []
    local = next((duet for duet in duets if duet.path == "duet"), None)
    for path in paths:
        variant = NGINX_VARIANTS.get(path)
        if variant is None:
            continue
        if local is None:
            raise RuntimeError(f"the path {path!r} goes through nginx to the path 'duet'")
        proxy = stack.enter_context(nginx_proxy(local.url, variant, workdir / path))
        print(f"nginx ({variant}) in front of {local.url} on {proxy.url}", file=sys.stderr)
        proxied.append(DuetUnderTest(path, proxy.url, tls=proxy.ssl_context()))
    return proxied


def run_setting(accounts: bool, nginx: bool, open_webui: bool) -> tuple[PathName, ...]:
    """A run's paths: every run's, with accounts on the path through Duet signed in, with
    nginx the two through nginx, with an Open WebUI the one through it."""
    wanted = {*PATHS}
    wanted |= {"signed_in"} if accounts else set()
    wanted |= set(NGINX_PATHS) if nginx else set()
    wanted |= {OPEN_WEBUI} if open_webui else set()
    return tuple(path for path in ALL_PATHS if path in wanted)


def measure_run(
    settings: Settings,
    direct: Mapping[EngineName, Engine],
    engine_names: Sequence[EngineName],
    rounds: Rounds,
    max_tokens: int,
    paths: Sequence[PathName] = PATHS,
    open_webui: DuetUnderTest | None = None,
) -> Run:
    """Start what `paths` go through (the reference relay, a `duet serve` for each path
    through Duet, nginx in front of the local one), stream every engine's requests on each
    path (and through `open_webui`, a running Open WebUI, for the engines it serves) with the
    stall watcher beside them, and stop them again. RuntimeError if that fails."""
    workdir = Path(tempfile.mkdtemp(prefix="duet-bench-"))
    reference_port = free_port()
    reference_url = f"http://127.0.0.1:{reference_port}"
    via_reference = build_engines(reached_through(settings, reference_url))
    adapters = [EngineAdapters(name, direct[name], via_reference[name]) for name in engine_names]
    load_before = os.getloadavg()
    processes, duets = start_relays(settings, workdir, reference_port, paths)
    stall_watch = StallWatch()
    try:
        with ExitStack() as proxies:
            relays = [*duets, *start_proxies(proxies, duets, paths, workdir)]
            if open_webui is not None:
                relays.append(open_webui)
            stall_watch.start()
            reference = reference_url if "reference" in paths else None
            results = asyncio.run(run_relay(adapters, relays, reference, rounds, max_tokens))
            stalls = stall_watch.stop()
    finally:
        stall_watch.close()
        stop_processes(processes)
    for result in results:
        for path in result.paths:
            measured = result.requests_on(path)
            measured[:] = [mark_stalls(m, stalls) for m in measured]
    return Run(
        command="duet bench relay " + " ".join(sys.argv[3:]),
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine=machine_description(),
        load_before=load_before,
        load_after=os.getloadavg(),
        prompt=PROMPT,
        max_tokens=max_tokens,
        requests=rounds.requests,
        warmup_rounds=rounds.warmup,
        stalls=tuple(stalls),
        results=tuple(results),
        workdir=workdir,
        paths=run_paths(relays, reference=reference is not None),
    )


def open_webui_relay(url: str) -> DuetUnderTest:
    """The running Open WebUI at `url` as a relay under test, with the token it gives a client
    that signs in with authentication off (`duet.bench.open_webui`). RuntimeError if it
    does not."""
    base = url.rstrip("/")
    token = open_webui.sign_in(base)
    return DuetUnderTest(OPEN_WEBUI, base, {"Authorization": f"Bearer {token}"})


def run_bench_relay(
    engine_names: Sequence[str],
    requests: int,
    max_tokens: int,
    json_path: str | None = None,
    raw_path: str | None = None,
    accounts: bool = False,
    nginx: bool = True,
    open_webui_url: str | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> int:
    """`duet bench relay`: measure (with `accounts`, through Duet signed in too; with `nginx`,
    through nginx in front of Duet; with `open_webui_url`, through that Open WebUI in front of
    Ollama), print the report, write every request's numbers (to `raw_path`, else into the
    run's temporary folder) and, with `json_path`, the summary."""
    settings = Settings.from_env()
    engines = build_engines(settings)
    unknown = [name for name in engine_names if name not in engines]
    if unknown:
        print(f"duet bench relay: unknown engine {unknown[0]!r}", file=sys.stderr)
        return 2
    if requests < 1:
        print("duet bench relay: --requests must be at least 1", file=sys.stderr)
        return 2
    if settle_seconds < 0:
        print("duet bench relay: --settle-ms must not be negative", file=sys.stderr)
        return 2
    names = [engines[name].name for name in engine_names]
    if open_webui_url and not set(ENGINES_OF[OPEN_WEBUI]) & set(names):
        print("duet bench relay: --open-webui goes with the engine ollama", file=sys.stderr)
        return 2
    paths = run_setting(accounts, nginx, open_webui=bool(open_webui_url))
    try:
        relay = open_webui_relay(open_webui_url) if open_webui_url else None
        run = measure_run(
            settings,
            engines,
            names,
            Rounds(requests, settle_seconds=settle_seconds),
            max_tokens,
            paths,
            relay,
        )
    except RuntimeError as error:
        print(f"duet bench relay: {error}", file=sys.stderr)
        return 1
    summaries = [summarize(result) for result in run.results]
    print("\n".join(report_lines(run, summaries)))
    raw = Path(raw_path) if raw_path else run.workdir / "requests.json"
    write_json(raw, raw_document(run))
    print(f"every request's numbers: {raw}", file=sys.stderr)
    if json_path:
        write_json(Path(json_path), summary_document(run, summaries))
        print(f"summary written to {json_path}", file=sys.stderr)
    return 0
