"""`duet bench relay`: what Duet's own relaying adds to a stream, measured, not assumed.

In one run, for each engine, the same request (fixed prompt, greedy, no thinking) is streamed N
times on each of three paths, in rotating order, with Duet running as a separate process
(`duet serve`) on a loopback port, exactly as in production:

- direct: Duet's engine adapter, in this process; TTFT and gaps from the adapter's arrival stamps.
- through Duet: POST /chat/send, then GET the answer's event stream, as the page does; TTFT from
  the POST to the first text event read here.
- through the reference relay (`duet.bench.reference_relay`): the same adapter pointed at the least a
  Python relay on Duet's server stack and HTTP client can do; the floor for Duet's number here.

What a relay adds to TTFT is taken per request, so the engine's own variation cancels out
(`added_ttft_ms`):

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
being on the wire to Duet's app receiving it) and "first chunk out" (from
Duet writing the first text event to this client reading it). The reference relay's stamps give
the same parts for it. Chunk counts are compared request by request and ITL distributions by
their p50/p95, with Duet's server-side gaps beside them. No assertion here: it prints numbers.

Now and then this whole machine stands still for a few hundred ms (docs/benchmarks/relay.md),
and a request caught in it reports the stall as its own time, whatever its path. A watcher
process (`duet.bench.stall_watch`) runs beside the requests and notes every moment it was not run for
100 ms or more; each request carries how much of its time to first token such a stall covered.
The added TTFT is given over all requests, and beside it over the requests no stall touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx

from duet.engines import build_engines
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import EngineName
from duet.engines.http import on_request_sent, read_lines
from duet.metrics.stream import ChunkArrival, arrivals_from_events, percentile, stream_metrics
from duet.settings import Settings
from duet.bench.stall_watch import STALL_MS, Stall, StallWatch, overlap_ms

PROMPT = "Tell me a story that never ends."
WARMUP_REQUESTS = 2
START_SECONDS = 30.0

TARGETS = {
    "added TTFT p50 (ms)": 2.0,
    "added TTFT p95 (ms)": 10.0,
    "ITL p50 ratio off by at most": 0.05,
}


@dataclass(frozen=True, slots=True)
class Measured:
    """One streamed request: TTFT and chunk gaps in ms, and the chunk count."""

    path: str  # "direct" | "duet"
    ttft_ms: float | None
    chunks: int
    itl_ms: tuple[float, ...]
    server_ttft_ms: float | None = None  # through Duet: Duet's own TTFT for this request
    # Through Duet: from Duet receiving the POST to the engine request on the wire.
    before_engine_ms: float | None = None
    # Through Duet: the gaps between chunks as Duet's server read them from the engine.
    server_itl_ms: tuple[float, ...] = ()
    # Through Duet: how long Duet held the first text chunk (written minus read, `s - t`).
    first_chunk_held_ms: float | None = None
    # Direct: this client's own time to put its request on the wire (building it with aiohttp
    # and writing it), the part of a direct TTFT that is not the engine's.
    pre_wire_ms: float | None = None
    output_tokens: int | None = None
    # Through a relay, on this machine's shared clock (perf_counter, CLOCK_MONOTONIC on Linux):
    # from this client starting its request to the relay receiving it (this client's pre-wire
    # time included), and from the relay writing the first text chunk to this client reading it.
    request_in_ms: float | None = None
    first_chunk_out_ms: float | None = None
    # perf_counter() when this client started the request and when it read the first text.
    started_at: float | None = None
    first_text_at: float | None = None
    # How much of that time the stall watcher saw the whole machine stand still (ms).
    stalled_ms: float = 0.0

    @property
    def beyond_engine_ms(self) -> float | None:
        """Through Duet: the TTFT seen here minus the TTFT Duet's server saw (from its engine
        request on the wire), i.e. everything but the engine's own time."""
        if self.ttft_ms is None or self.server_ttft_ms is None:
            return None
        return self.ttft_ms - self.server_ttft_ms


def added_ttft_ms(relayed: Measured) -> float | None:
    """What a relay added to one request's TTFT.

    A direct TTFT is this client's pre-wire time plus the engine's time; through a relay, the
    TTFT is this client's pre-wire time (to the relay) plus the relay receiving the request,
    its own work until its engine request is on the wire, the engine's time and the relay back.
    The engine's time comes from the relay's own stamp for this very request, and this client's
    pre-wire time from the on-the-wire hook on this very request."""
    beyond = relayed.beyond_engine_ms
    if beyond is None or relayed.pre_wire_ms is None:
        return None
    return beyond - relayed.pre_wire_ms


def mark_stalls(measured: Measured, stalls: Sequence[Stall]) -> Measured:
    """The request, with how much of its time to first token the machine stood still."""
    if measured.started_at is None or measured.first_text_at is None:
        return measured
    stalled = overlap_ms(stalls, measured.started_at, measured.first_text_at)
    return replace(measured, stalled_ms=round(stalled, 3))


@dataclass
class EngineResult:
    engine: str
    direct: list[Measured] = field(default_factory=list)
    duet: list[Measured] = field(default_factory=list)
    # Through the reference relay (duet/bench/reference_relay.py): the floor for any Python relay.
    reference: list[Measured] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def p(values: Sequence[float], q: float) -> float | None:
            return round(percentile(values, q), 3) if values else None

        direct_ttft = [m.ttft_ms for m in self.direct if m.ttft_ms is not None]
        duet_ttft = [m.ttft_ms for m in self.duet if m.ttft_ms is not None]
        pairs = list(zip(self.direct, self.duet, strict=False))
        pre_wire = [m.pre_wire_ms for m in self.direct if m.pre_wire_ms is not None]

        def pre_wire_of(path: list[Measured]) -> list[float]:
            return [m.pre_wire_ms for m in path if m.pre_wire_ms is not None]

        def added_by(relayed: list[Measured]) -> list[float]:
            added = (added_ttft_ms(m) for m in relayed)
            return [a for a in added if a is not None]

        added, floor = added_by(self.duet), added_by(self.reference)
        # The same, over the requests during which the stall watcher saw the machine run.
        added_clear = added_by([m for m in self.duet if not m.stalled_ms])
        floor_clear = added_by([m for m in self.reference if not m.stalled_ms])
        added_p50, floor_p50 = p(added, 50), p(floor, 50)
        before = [m.before_engine_ms for m in self.duet if m.before_engine_ms is not None]
        reference_before = [
            m.before_engine_ms for m in self.reference if m.before_engine_ms is not None
        ]

        def request_in(relayed: list[Measured]) -> list[float]:
            # Less this client's own pre-wire time, as for the added TTFT.
            return [
                m.request_in_ms - m.pre_wire_ms
                for m in relayed
                if m.request_in_ms is not None and m.pre_wire_ms is not None
            ]

        def first_out(relayed: list[Measured]) -> list[float]:
            return [m.first_chunk_out_ms for m in relayed if m.first_chunk_out_ms is not None]

        held = [m.first_chunk_held_ms for m in self.duet if m.first_chunk_held_ms is not None]
        direct_itl = [gap for m in self.direct for gap in m.itl_ms]
        duet_itl = [gap for m in self.duet for gap in m.itl_ms]
        server_itl = [gap for m in self.duet for gap in m.server_itl_ms]
        reference_itl = [gap for m in self.reference for gap in m.itl_ms]
        direct_itl_p50, duet_itl_p50 = p(direct_itl, 50), p(duet_itl, 50)
        server_itl_p50 = p(server_itl, 50)
        ttft_p50s = p(direct_ttft, 50), p(duet_ttft, 50)
        return {
            "engine": self.engine,
            "requests": len(pairs),
            "direct_ttft_p50_ms": p(direct_ttft, 50),
            "direct_ttft_p95_ms": p(direct_ttft, 95),
            "duet_ttft_p50_ms": p(duet_ttft, 50),
            "duet_ttft_p95_ms": p(duet_ttft, 95),
            "unpaired_difference_p50_ms": (
                round(ttft_p50s[1] - ttft_p50s[0], 3) if None not in ttft_p50s else None
            ),
            "added_ttft_p50_ms": added_p50,
            "added_ttft_p95_ms": p(added, 95),
            "added_ttft_max_ms": round(max(added), 3) if added else None,
            "stalled_requests": [
                sum(1 for m in path if m.stalled_ms)
                for path in (self.direct, self.duet, self.reference)
            ],
            "added_ttft_p50_clear_ms": p(added_clear, 50),
            "added_ttft_p95_clear_ms": p(added_clear, 95),
            "reference_added_ttft_p95_clear_ms": p(floor_clear, 95),
            "before_engine_p50_ms": p(before, 50),
            "before_engine_p95_ms": p(before, 95),
            "first_chunk_held_p50_ms": p(held, 50),
            "first_chunk_held_p95_ms": p(held, 95),
            "request_in_p50_ms": p(request_in(self.duet), 50),
            "first_chunk_out_p50_ms": p(first_out(self.duet), 50),
            "reference_request_in_p50_ms": p(request_in(self.reference), 50),
            "reference_before_engine_p50_ms": p(reference_before, 50),
            "reference_first_chunk_out_p50_ms": p(first_out(self.reference), 50),
            "client_pre_wire_p50_ms": p(pre_wire, 50),
            "duet_client_pre_wire_p50_ms": p(pre_wire_of(self.duet), 50),
            "reference_client_pre_wire_p50_ms": p(pre_wire_of(self.reference), 50),
            "reference_added_ttft_p50_ms": floor_p50,
            "reference_added_ttft_p95_ms": p(floor, 95),
            "duet_beyond_reference_p50_ms": (
                round(added_p50 - floor_p50, 3) if added_p50 is not None and floor_p50 else None
            ),
            "reference_chunks": sorted({m.chunks for m in self.reference}),
            "direct_chunks": sorted({m.chunks for m in self.direct}),
            "duet_chunks": sorted({m.chunks for m in self.duet}),
            "chunk_counts_identical": bool(pairs) and all(a.chunks == b.chunks for a, b in pairs),
            "direct_itl_p50_ms": direct_itl_p50,
            "duet_itl_p50_ms": duet_itl_p50,
            "direct_itl_p95_ms": p(direct_itl, 95),
            "duet_itl_p95_ms": p(duet_itl, 95),
            "duet_server_itl_p50_ms": server_itl_p50,
            "reference_itl_p50_ms": p(reference_itl, 50),
            "itl_p50_ratio": (
                round(duet_itl_p50 / direct_itl_p50, 4)
                if duet_itl_p50 is not None and direct_itl_p50
                else None
            ),
            # The same requests on both sides of Duet: what the relay itself does to the gaps,
            # apart from the engine running at another speed while Duet shares its cores.
            "itl_p50_ratio_across_duet": (
                round(duet_itl_p50 / server_itl_p50, 4)
                if duet_itl_p50 is not None and server_itl_p50
                else None
            ),
        }


def bench_request(max_tokens: int) -> ChatRequest:
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=max_tokens, seed=0)
    return ChatRequest(
        messages=(ChatMessage(role="user", content=PROMPT),), thinking=False, sampling=sampling
    )


def measure(path: str, sent_at: float, arrivals: list[ChunkArrival], **extra: Any) -> Measured:
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
    reset = on_request_sent.set(on_wire.append)
    try:
        sent_at = time.perf_counter()
        events = [event async for event in engine.stream_chat(request)]
    finally:
        on_request_sent.reset(reset)
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


async def stream_through_duet(
    client: aiohttp.ClientSession, duet_url: str, engine: EngineName, max_tokens: int
) -> Measured:
    form = {
        "content": PROMPT,
        "engine": engine,
        "temperature": "0",
        "top_p": "1",
        "top_k": "0",
        "max_tokens": str(max_tokens),
        "system_prompt": "",
    }
    # Encoded as the page's form is, into bytes like an engine's JSON body.
    body = urlencode(form).encode()
    on_wire: list[float] = []
    sent_at = time.perf_counter()
    async with client.post(
        duet_url + "/chat/send",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        trace_request_ctx={"on_sent": on_wire.append},
    ) as response:
        page = await response.text()
    if response.status != 200:
        raise RuntimeError(f"Duet refused the request ({response.status}): {page}")
    found = re.search(r'data-stream="(/messages/\d+/stream)"', page)
    if found is None:
        raise RuntimeError("Duet's answer to /chat/send held no stream URL")
    arrivals: list[ChunkArrival] = []
    server_ttft_ms: float | None = None
    before_engine_ms: float | None = None
    first_chunk_held_ms: float | None = None
    server_ts: list[float] = []
    received_at: float | None = None
    first_chunk_out_ms: float | None = None
    status = ""
    name = ""
    async with client.get(duet_url + found.group(1)) as stream:
        # Read as the adapters read the engines (`read_lines`), so every path's client does the
        # same work per chunk.
        async for arrived, line in read_lines(stream):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if name == "sent":
                    before_engine_ms = data["after_receipt_ms"]
                    received_at = data.get("received_at")
                elif name in ("reasoning", "answer") and data.get("text"):
                    arrivals.append(ChunkArrival(at=arrived, kind=name, chunk=data["chunk"]))
                    server_ts.append(data["t"])
                    if server_ttft_ms is None:
                        server_ttft_ms = data["t"]
                        first_chunk_held_ms = data["s"] - data["t"]
                        if received_at is not None and before_engine_ms is not None:
                            # Duet wrote it at: receipt + receipt-to-wire + s (ms after the wire).
                            written_at = received_at + (before_engine_ms + data["s"]) / 1000
                            first_chunk_out_ms = (arrived - written_at) * 1000
                elif name == "end":
                    status = data.get("status", "")
                    break
    if status != "complete":
        raise RuntimeError(f"the answer through Duet ended {status or 'without an end event'}")
    return measure(
        "duet",
        sent_at,
        arrivals,
        server_ttft_ms=server_ttft_ms,
        before_engine_ms=before_engine_ms,
        first_chunk_held_ms=first_chunk_held_ms,
        server_itl_ms=tuple(b - a for a, b in pairwise(server_ts)),
        request_in_ms=None if received_at is None else (received_at - sent_at) * 1000,
        first_chunk_out_ms=first_chunk_out_ms,
        pre_wire_ms=(on_wire[0] - sent_at) * 1000 if on_wire else None,
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


def start_reference_relay(settings: Settings, port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "duet.bench.reference_relay", "--port", str(port),
        "--upstream", f"vllm={settings.vllm_url}", "--upstream", f"ollama={settings.ollama_url}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def start_duet(settings: Settings, port: int, log_path: Path, database: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DUET_VLLM_URL": settings.vllm_url,
        "DUET_OLLAMA_URL": settings.ollama_url,
        "DUET_VLLM_MODEL": settings.vllm_model,
        "DUET_OLLAMA_MODEL": settings.ollama_model,
        "DUET_VLLM_API_KEY": settings.vllm_api_key,
        "DUET_DATABASE": str(database),
    }
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


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Paths:
    """The three ways to one engine: its adapter straight to it, Duet, and the same adapter
    through the reference relay."""

    name: EngineName
    direct: Engine
    via_reference: Engine


async def run_relay(
    paths: Sequence[Paths], duet_url: str, reference_url: str, requests: int, max_tokens: int
) -> list[EngineResult]:
    request = bench_request(max_tokens)
    results = []
    # The same HTTP client as the adapters on the direct path, with the same on-the-wire hook:
    # this client's own cost of sending each request is measured and paired out (docstring).
    timeout = aiohttp.ClientTimeout(total=300.0, connect=10.0)
    tracing = aiohttp.TraceConfig()
    tracing.on_request_chunk_sent.append(report_body_sent)
    async with aiohttp.ClientSession(timeout=timeout, trace_configs=[tracing]) as client:
        urls = (duet_url, reference_url)
        try:
            for engine in paths:
                results.append(await relay_one_engine(engine, client, urls, request, requests))
        finally:
            # The adapters' clients belong to this event loop: close them in it.
            for engine in paths:
                await engine.direct.aclose()
                await engine.via_reference.aclose()
    return results


async def relay_one_engine(
    engine: Paths,
    client: aiohttp.ClientSession,
    urls: tuple[str, str],
    request: ChatRequest,
    requests: int,
) -> EngineResult:
    result = EngineResult(engine.name)
    max_tokens = request.sampling.max_tokens

    async def one(path: str) -> Measured:
        if path == "direct":
            return await stream_direct(engine.direct, request)
        if path == "duet":
            return await stream_through_duet(client, urls[0], engine.name, max_tokens)
        return await stream_through_reference(engine.via_reference, request, client, urls[1])

    order = ("direct", "duet", "reference")
    for _ in range(WARMUP_REQUESTS):
        for path in order:
            await one(path)
    for index in range(requests):
        # Rotate which path goes first, so a drift in the engine's speed hits all three.
        for path in order[index % 3 :] + order[: index % 3]:
            measured = await one(path)
            getattr(result, path).append(measured)
        print(f"  {engine.name}: {index + 1}/{requests}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return result


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, float):
            return f"{value:.2f}"
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    rows = [
        ("requests per path", "requests"),
        ("TTFT p50 direct (ms)", "direct_ttft_p50_ms"),
        ("TTFT p50 through Duet (ms)", "duet_ttft_p50_ms"),
        ("TTFT p95 direct (ms)", "direct_ttft_p95_ms"),
        ("TTFT p95 through Duet (ms)", "duet_ttft_p95_ms"),
        ("TTFT p50 through Duet - direct (ms)", "unpaired_difference_p50_ms"),
        ("added TTFT p50 (ms) [<= 2]", "added_ttft_p50_ms"),
        ("added TTFT p95 (ms) [<= 10]", "added_ttft_p95_ms"),
        ("added TTFT max (ms)", "added_ttft_max_ms"),
        ("requests in a machine stall (direct,Duet,ref)", "stalled_requests"),
        ("  added TTFT p50, requests clear of stalls", "added_ttft_p50_clear_ms"),
        ("  added TTFT p95, requests clear of stalls", "added_ttft_p95_clear_ms"),
        ("  client -> Duet, request in p50", "request_in_p50_ms"),
        ("  Duet receipt to engine wire p50", "before_engine_p50_ms"),
        ("  Duet receipt to engine wire p95", "before_engine_p95_ms"),
        ("  first chunk held in Duet p50", "first_chunk_held_p50_ms"),
        ("  first chunk held in Duet p95", "first_chunk_held_p95_ms"),
        ("  Duet -> client, first chunk out p50", "first_chunk_out_p50_ms"),
        ("client's own pre-wire p50, direct", "client_pre_wire_p50_ms"),
        ("client's own pre-wire p50, to Duet", "duet_client_pre_wire_p50_ms"),
        ("client's own pre-wire p50, to the reference", "reference_client_pre_wire_p50_ms"),
        ("reference relay added TTFT p50", "reference_added_ttft_p50_ms"),
        ("reference relay added TTFT p95", "reference_added_ttft_p95_ms"),
        ("  reference p95, requests clear of stalls", "reference_added_ttft_p95_clear_ms"),
        ("  client -> reference, request in p50", "reference_request_in_p50_ms"),
        ("  reference receipt to engine wire p50", "reference_before_engine_p50_ms"),
        ("  reference -> client, first chunk out p50", "reference_first_chunk_out_p50_ms"),
        ("Duet added beyond the reference p50", "duet_beyond_reference_p50_ms"),
        ("chunks through the reference relay", "reference_chunks"),
        ("chunks direct", "direct_chunks"),
        ("chunks through Duet", "duet_chunks"),
        ("chunk counts identical", "chunk_counts_identical"),
        ("ITL p50 direct (ms)", "direct_itl_p50_ms"),
        ("ITL p50 through Duet (ms)", "duet_itl_p50_ms"),
        ("ITL p95 direct (ms)", "direct_itl_p95_ms"),
        ("ITL p95 through Duet (ms)", "duet_itl_p95_ms"),
        ("ITL p50 ratio [0.95-1.05]", "itl_p50_ratio"),
        ("  ITL p50 engine -> Duet's server (ms)", "duet_server_itl_p50_ms"),
        ("  ITL p50 ratio, client side / server side of Duet", "itl_p50_ratio_across_duet"),
        ("  ITL p50 through the reference relay (ms)", "reference_itl_p50_ms"),
    ]
    label_width = max(len(label) for label, _ in rows)
    header = "".ljust(label_width) + "".join(f"{s['engine']:>16}" for s in summaries)
    lines = [header, "-" * len(header)]
    for label, key in rows:
        lines.append(label.ljust(label_width) + "".join(f"{cell(s[key]):>16}" for s in summaries))
    return "\n".join(lines)


def verdicts(summary: dict[str, Any], clear_of_stalls: bool = False) -> list[str]:
    """The targets this engine's numbers missed (an empty list: all met): over all requests,
    or with `clear_of_stalls` the added TTFT over the requests no machine stall touched."""
    missed = []
    added_p50, added_p95 = summary["added_ttft_p50_ms"], summary["added_ttft_p95_ms"]
    if clear_of_stalls:
        added_p50, added_p95 = (
            summary["added_ttft_p50_clear_ms"],
            summary["added_ttft_p95_clear_ms"],
        )
    if added_p50 is None or added_p50 > TARGETS["added TTFT p50 (ms)"]:
        missed.append(f"added TTFT p50 {added_p50} ms > 2 ms")
    if added_p95 is None or added_p95 > TARGETS["added TTFT p95 (ms)"]:
        missed.append(f"added TTFT p95 {added_p95} ms > 10 ms")
    if not summary["chunk_counts_identical"]:
        missed.append("chunk counts differ")
    ratio = summary["itl_p50_ratio"]
    if ratio is None or abs(ratio - 1) > TARGETS["ITL p50 ratio off by at most"]:
        missed.append(f"ITL p50 ratio {ratio} outside 0.95-1.05")
    return missed


def describe_verdict(missed: Sequence[str]) -> str:
    return "all targets met" if not missed else "MISSED: " + "; ".join(missed)


def describe_stalls(stalls: Sequence[Stall]) -> str:
    if not stalls:
        return "none"
    lengths = [f"{ms:.0f}" for ms in sorted(stall.ms for stall in stalls)]
    if len(stalls) == 1:
        return f"1, of {lengths[0]} ms"
    return f"{len(stalls)}, of {lengths[0]}-{lengths[-1]} ms"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def run_bench_relay(
    engine_names: Sequence[str], requests: int, max_tokens: int, json_path: str | None
) -> int:
    settings = Settings.from_env()
    all_engines = build_engines(settings)
    unknown = [name for name in engine_names if name not in all_engines]
    if unknown:
        print(f"duet bench relay: unknown engine {unknown[0]!r}", file=sys.stderr)
        return 2
    if requests < 1:
        print("duet bench relay: --requests must be at least 1", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="duet-bench-"))
    port, reference_port = free_port(), free_port()
    url, reference_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{reference_port}"
    via_reference = build_engines(
        replace(settings, vllm_url=f"{reference_url}/vllm", ollama_url=f"{reference_url}/ollama")
    )
    paths = [Paths(name, all_engines[name], via_reference[name]) for name in engine_names]
    log_path = workdir / "duet-serve.log"
    processes = [
        start_duet(settings, port, log_path, workdir / "bench.sqlite3"),
        start_reference_relay(settings, reference_port, workdir / "reference-relay.log"),
    ]
    load_before = os.getloadavg()
    stall_watch = StallWatch()
    try:
        wait_until_up(url + "/compare", processes[0], log_path)
        wait_until_up(reference_url + "/stamps", processes[1], workdir / "reference-relay.log")
        print(f"Duet under test: duet serve on {url} (pid {processes[0].pid})", file=sys.stderr)
        stall_watch.start()
        results = asyncio.run(run_relay(paths, url, reference_url, requests, max_tokens))
        stalls = stall_watch.stop()
    except RuntimeError as error:
        print(f"duet bench relay: {error}", file=sys.stderr)
        return 1
    finally:
        stall_watch.stop()
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    for result in results:
        for path in (result.direct, result.duet, result.reference):
            path[:] = [mark_stalls(measured, stalls) for measured in path]
    summaries = [result.summary() for result in results]
    print(f"duet bench relay · {time.strftime('%Y-%m-%d %H:%M %Z')} · {machine_description()}")
    print(f"prompt {PROMPT!r}, greedy, no thinking, max_tokens {max_tokens}, {requests} requests")
    load = {"before": load_before, "after": os.getloadavg()}
    print("load average (1, 5, 15 min) before {} after {}".format(*load.values()))
    print(f"machine stalls (the watcher woke {STALL_MS:.0f}+ ms late): {describe_stalls(stalls)}")
    print(format_table(summaries))
    for summary in summaries:
        print(f"{summary['engine']}: {describe_verdict(verdicts(summary))}")
        stalled = summary["stalled_requests"][1]
        if stalled:
            clear = summary["requests"] - stalled
            print(
                f"{summary['engine']}, the {clear} requests through Duet clear of machine stalls: "
                + describe_verdict(verdicts(summary, clear_of_stalls=True))
            )
    if json_path:
        document = {
            "command": "duet bench relay " + " ".join(sys.argv[3:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine_description(),
            "load_average": load,
            "prompt": PROMPT,
            "max_tokens": max_tokens,
            "summaries": summaries,
            "machine_stalls": [[stall.start, stall.end] for stall in stalls],
            "requests": {
                r.engine: [asdict(m) for m in r.direct + r.duet + r.reference] for r in results
            },
        }
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"raw numbers written to {json_path}", file=sys.stderr)
    return 0
