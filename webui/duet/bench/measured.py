"""What `duet bench relay` measures of each request, and what a relay added to it.

These are the values a run keeps per request (its raw data); `duet.bench.summary` sums them up.
Times are in ms unless a name ends in `_at` (a perf_counter() reading in seconds: on Linux that
is CLOCK_MONOTONIC, one clock for every process on the machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from duet.bench.stall_watch import Stall, overlap_ms

PathName = Literal[
    "direct", "duet", "reference", "api", "signed_in", "nginx", "nginx_buffering", "open_webui"
]
# Every run's paths, and with accounts on (`--accounts`) the path through a second Duet in
# accounts mode with a signed-in session, interleaved with the others in the same rounds.
PATHS: tuple[PathName, ...] = ("direct", "duet", "reference", "api")
ACCOUNTS_PATHS: tuple[PathName, ...] = (*PATHS, "signed_in")
# The layers in front of Duet or of an engine that a run measures as well (unless told not
# to): nginx in front of Duet's web UI path, with the shipped site and with buffering on; and,
# with `--open-webui URL`, Open WebUI in front of Ollama (for the Ollama engine only).
NGINX_PATHS: tuple[PathName, ...] = ("nginx", "nginx_buffering")
OPEN_WEBUI: PathName = "open_webui"
# Every path in the order a round runs them, before it is rotated.
ALL_PATHS: tuple[PathName, ...] = (*ACCOUNTS_PATHS, *NGINX_PATHS, OPEN_WEBUI)
# What each path is, as the report and the summary say it.
PATH_DESCRIPTIONS: dict[PathName, str] = {
    "direct": "Duet's engine adapter in the benchmark process, straight to the engine",
    "duet": "duet serve (DUET_MODE=local): POST /chat/send, then the answer's event stream",
    "reference": "the reference relay (duet.bench.reference_relay), the floor for a Python relay",
    "api": "the same duet serve's OpenAI-compatible /v1 (POST /v1/chat/completions, streamed,"
    " with an API key), as a team's tools use it",
    "signed_in": "duet serve (DUET_MODE=accounts), every request with a signed-in session's"
    " cookie: POST /chat/send, then the answer's event stream",
    "nginx": "nginx with the shipped site (services/nginx/duet.conf, proxy_buffering off, TLS)"
    " in front of the local duet serve: its web UI path, as a team's browser uses it",
    "nginx_buffering": "nginx with the shipped site but proxy_buffering on and Duet's"
    " X-Accel-Buffering header ignored, in front of the same duet serve",
    "open_webui": "Open WebUI (pointed at the same Ollama): POST /api/chat/completions,"
    " streamed, as its own page and API clients ask it",
}


@dataclass(frozen=True, slots=True)
class Measured:
    """One streamed request: TTFT and chunk gaps in ms, and the chunk count."""

    path: PathName
    ttft_ms: float | None
    chunks: int
    itl_ms: tuple[float, ...]
    # Through a relay: the relay's own TTFT for this request, from its engine request on the wire.
    server_ttft_ms: float | None = None
    # Through a relay: from the relay receiving the request to its engine request on the wire.
    before_engine_ms: float | None = None
    # Through Duet: the gaps between chunks as Duet's server read them from the engine.
    server_itl_ms: tuple[float, ...] = ()
    # Through Duet: how long Duet held the first text chunk (written minus read, `s - t`).
    first_chunk_held_ms: float | None = None
    # Through Duet's web UI path: the gaps between Duet's writes of the text events (`s`), and
    # Duet's own verdict on the hop from those writes to this client
    # (`duet.metrics.stream.compare_hops`): the share of gaps collapsed (chunks that came
    # together) here and at Duet's writes, and whether the hop counts as bursty (merged).
    written_itl_ms: tuple[float, ...] = ()
    collapsed_share: float | None = None
    written_collapsed_share: float | None = None
    merged: bool | None = None
    # This client's own time to put its request on the wire (building it with aiohttp and
    # writing it): on a direct request, the part of its TTFT that is not the engine's.
    pre_wire_ms: float | None = None
    output_tokens: int | None = None
    # Through a relay, on the machine's shared clock: from this client starting its request to
    # the relay receiving it (this client's pre-wire time included), and from the relay writing
    # the first text chunk to this client reading it.
    request_in_ms: float | None = None
    first_chunk_out_ms: float | None = None
    # When this client started the request and when it read the first text.
    started_at: float | None = None
    first_text_at: float | None = None
    # How much of that time the stall watcher saw the whole machine stand still.
    stalled_ms: float = 0.0

    @property
    def beyond_engine_ms(self) -> float | None:
        """Through a relay: the TTFT seen here minus the TTFT the relay saw (from its engine
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
    """One engine's requests on each path of the run (`paths`), in the order they ran."""

    engine: str
    direct: list[Measured] = field(default_factory=list)
    duet: list[Measured] = field(default_factory=list)
    # Through the reference relay (duet.bench.reference_relay): the floor for a Python relay.
    reference: list[Measured] = field(default_factory=list)
    # Through Duet's /v1, with an API key.
    api: list[Measured] = field(default_factory=list)
    # Through Duet in accounts mode, signed in (only in a run with accounts on).
    signed_in: list[Measured] = field(default_factory=list)
    # Through nginx in front of Duet, as shipped and buffering; through Open WebUI.
    nginx: list[Measured] = field(default_factory=list)
    nginx_buffering: list[Measured] = field(default_factory=list)
    open_webui: list[Measured] = field(default_factory=list)
    paths: tuple[PathName, ...] = PATHS

    def requests_on(self, path: PathName) -> list[Measured]:
        return {
            "direct": self.direct,
            "duet": self.duet,
            "reference": self.reference,
            "api": self.api,
            "signed_in": self.signed_in,
            "nginx": self.nginx,
            "nginx_buffering": self.nginx_buffering,
            "open_webui": self.open_webui,
        }[path]


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the benchmark: what was asked, on what machine, and what was measured."""

    command: str
    date: str  # ISO 8601, local time with its offset
    machine: str
    # The load average (1, 5, 15 min) before and after: how busy the machine was besides.
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    prompt: str
    max_tokens: int
    requests: int  # per engine and path, after the warm-up rounds
    warmup_rounds: int
    stalls: tuple[Stall, ...]
    results: tuple[EngineResult, ...]
    workdir: Path  # the run's temporary folder: the servers' logs and databases
    paths: tuple[PathName, ...] = PATHS
