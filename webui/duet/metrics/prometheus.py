"""Prometheus metrics for the UI's own view of the engines, served at `/metrics`.

Every engine the app uses is wrapped in `InstrumentedEngine`, which watches the typed events go
by (the adapter's arrival stamps, so this is the server hop of docs/metrics.md) and records, per
engine: requests by outcome, time to first token, and the gap between consecutive chunks. The
chat and the compare view both go through it. Each app has its own registry, so several apps in
one process (tests) never share or double-register metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
)

from duet.engines.base import ChatRequest, Engine, EngineHealth, OnSent
from duet.engines.events import AnswerDelta, Done, EngineName, ReasoningDelta, StreamError

# TTFT from a loopback vLLM on a GPU (~20 ms) to a CPU engine thinking through a long prompt.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Chunk gaps: sub-ms (a burst from a buffering hop) up to multi-second stalls.
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5.0)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "duet_engine_requests",
            "Streamed chat requests Duet sent to an engine, by how they ended "
            "(complete, failed, stopped).",
            ("engine", "outcome"),
            registry=self.registry,
        )
        self.api_requests = Counter(
            "duet_api_requests",
            "Chat completions asked of Duet's /v1, by engine and how they ended (completed, "
            "failed, stopped: the client left, refused: over a limit).",
            ("engine", "outcome"),
            registry=self.registry,
        )
        self.ttft = Histogram(
            "duet_time_to_first_token_seconds",
            "Request sent to the engine -> first chunk with text, as read by Duet's server.",
            ("engine",),
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.itl = Histogram(
            "duet_inter_token_latency_seconds",
            "Gap between consecutive text chunks from the engine, as read by Duet's server "
            "(per chunk, as vllm bench serve counts it).",
            ("engine",),
            buckets=ITL_BUCKETS,
            registry=self.registry,
        )


class InstrumentedEngine:
    """An engine whose streams are measured on the way through; everything else is delegated."""

    def __init__(self, engine: Engine, telemetry: Telemetry) -> None:
        self.inner = engine
        self.telemetry = telemetry
        self.name: EngineName = engine.name
        self.label = engine.label
        self.model = engine.model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[Any]:
        telemetry, engine = self.telemetry, self.name
        # TTFT counts from the request on the wire, as each answer's own TTFT does; an adapter
        # that does not report that moment is timed from being asked.
        sent_at = time.perf_counter()

        def request_sent(at: float) -> None:
            nonlocal sent_at
            sent_at = at
            if on_sent is not None:
                on_sent(at)

        last_chunk: tuple[int, float] | None = None
        outcome = "failed"
        stream = self.inner.stream_chat(request, request_sent)
        try:
            async for event in stream:
                if isinstance(event, Done):
                    outcome = "complete"
                elif isinstance(event, StreamError):
                    outcome = "failed"
                # Passed on first, timed after: the user's text does not wait for the books.
                yield event
                if isinstance(event, ReasoningDelta | AnswerDelta) and event.text:
                    if last_chunk is None:
                        telemetry.ttft.labels(engine).observe(event.at - sent_at)
                    elif event.chunk != last_chunk[0]:
                        telemetry.itl.labels(engine).observe(event.at - last_chunk[1])
                    if last_chunk is None or event.chunk != last_chunk[0]:
                        last_chunk = (event.chunk, event.at)
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer closed the stream or was cancelled: the Stop button, or shutdown.
            if outcome != "complete":
                outcome = "stopped"
            raise
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
            telemetry.requests.labels(engine, outcome).inc()

    async def health(self) -> EngineHealth:
        return await self.inner.health()

    async def aclose(self) -> None:
        await self.inner.aclose()


def instrument(
    engines: Mapping[EngineName, Engine], telemetry: Telemetry
) -> dict[EngineName, Engine]:
    return {name: InstrumentedEngine(engine, telemetry) for name, engine in engines.items()}
