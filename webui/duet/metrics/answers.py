"""The numbers of one compare answer, from its stored arrival times, at both hops.

Stored arrivals are [ms, chunk, "r" | "a", chars] lists (see store/migrations.py), each hop in ms
since its own start of the answer; this module turns them into `metrics.ChunkArrival`s and hands
them to `metrics.stream_metrics` and `metrics.compare_hops`, so the compare view, the runs page,
the exports and the benchmark all use the one set of definitions in docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duet.metrics.stream import (
    ChunkArrival,
    HopComparison,
    StreamMetrics,
    compare_hops,
    stream_metrics,
)
from duet.store.messages import Arrival
from duet.store.runs import CompareAnswer

KIND_BY_LETTER = {"r": "reasoning", "a": "answer"}
# A browser can post at most this many arrivals for one answer: far above any real answer's chunk
# count (one chunk per token, and max_tokens is at most 32,768), low enough to bound the work.
MAX_BROWSER_ARRIVALS = 40_000
# Bounds on each posted value, far beyond any real answer: a day of streaming, as many chunks as
# tokens can be asked for, a message's worth of text in one event.
MAX_BROWSER_MS = 86_400_000
MAX_CHUNK = 1_000_000
MAX_CHARS = 10_000_000


class ArrivalsError(ValueError):
    """Arrival times that cannot be measured; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class AnswerMetrics:
    server: StreamMetrics
    browser: StreamMetrics | None
    hops: HopComparison | None

    def as_dict(self) -> dict[str, Any]:
        """Milliseconds and counts, flat, for exports and JSON: `server_*`, `browser_*`, hops."""
        row: dict[str, Any] = {}
        for prefix, measured in (("server", self.server), ("browser", self.browser)):
            row.update({f"{prefix}_{name}": value for name, value in summary(measured).items()})
        hops = self.hops
        row["added_ttft_ms"] = added(self.server.ttft, self.browser.ttft if self.browser else None)
        row["added_delay_p50_ms"] = ms(hops.added_delay_p50) if hops else None
        row["added_delay_p95_ms"] = ms(hops.added_delay_p95) if hops else None
        row["added_delay_max_ms"] = ms(hops.added_delay_max) if hops else None
        row["chunks_preserved"] = hops.chunks_preserved if hops else None
        row["bursty"] = hops.bursty if hops else None
        return row


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def added(server: float | None, browser: float | None) -> float | None:
    """Browser minus server, in ms: what the hop from the engine's reader to the page added."""
    if server is None or browser is None:
        return None
    return round((browser - server) * 1000, 3)


def summary(measured: StreamMetrics | None) -> dict[str, Any]:
    """The figures the compare view shows for one hop, in ms (None where there is no data)."""
    names = ("ttft", "ttfa", "e2e", "itl_p50", "itl_p95", "itl_max", "tpot")
    values: dict[str, Any] = {f"{name}_ms": None for name in names}
    values.update(chunks=None, output_tokens_per_s=None, burst_gap_fraction=None, itl_cv=None)
    if measured is None:
        return values
    for name in names:
        values[f"{name}_ms"] = ms(getattr(measured, name))
    values["chunks"] = measured.chunk_count
    values["output_tokens_per_s"] = _round(measured.output_tokens_per_s, 2)
    values["burst_gap_fraction"] = _round(measured.burst_gap_fraction, 3)
    values["itl_cv"] = _round(measured.itl_cv, 3)
    return values


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def chunk_arrivals(stored: Sequence[Arrival]) -> list[ChunkArrival]:
    """The text-carrying entries of a stored arrival list, in seconds."""
    return [
        ChunkArrival(at=entry.ms / 1000, kind=KIND_BY_LETTER[entry.kind], chunk=entry.chunk)  # type: ignore[arg-type]
        for entry in stored
        if entry.chars > 0
    ]


def answer_metrics(answer: CompareAnswer) -> AnswerMetrics:
    server_arrivals = chunk_arrivals(answer.server_arrivals)
    server = stream_metrics(0.0, server_arrivals, answer.output_tokens)
    if answer.browser_arrivals is None:
        return AnswerMetrics(server=server, browser=None, hops=None)
    browser_arrivals = chunk_arrivals(answer.browser_arrivals)
    browser = stream_metrics(0.0, browser_arrivals, answer.output_tokens)
    hops = compare_hops(0.0, server_arrivals, 0.0, browser_arrivals)
    return AnswerMetrics(server=server, browser=browser, hops=hops)


def parse_browser_arrivals(raw: Any) -> list[Arrival]:
    """Check the arrivals a page posted: a list of [ms, chunk, "r" | "a", chars] entries, ms
    since the page's start of the answer, in arrival order. Raises ArrivalsError."""
    if not isinstance(raw, list):
        raise ArrivalsError("arrivals must be a list of [ms, chunk, kind, chars] entries")
    if len(raw) > MAX_BROWSER_ARRIVALS:
        raise ArrivalsError(f"too many arrivals ({len(raw):,}; at most {MAX_BROWSER_ARRIVALS:,})")
    parsed: list[Arrival] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, list) or len(entry) != 4:
            raise ArrivalsError(f"arrival {index} must be [ms, chunk, kind, chars], got {entry!r}")
        at, chunk, kind, chars = entry
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ArrivalsError(f"arrival {index}: time must be a finite number, got {at!r}")
        if at < 0:
            raise ArrivalsError(f"arrival {index}: time {at} is before the answer started")
        for name, value in (("chunk", chunk), ("chars", chars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ArrivalsError(f"arrival {index}: {name} must be a count >= 0, got {value!r}")
        if kind not in KIND_BY_LETTER:
            raise ArrivalsError(f"arrival {index}: kind must be 'r' or 'a', got {kind!r}")
        if at > MAX_BROWSER_MS:
            raise ArrivalsError(f"arrival {index}: time {at} ms is later than any answer lasts")
        for name, value, limit in (("chunk", chunk, MAX_CHUNK), ("chars", chars, MAX_CHARS)):
            if value > limit:
                raise ArrivalsError(f"arrival {index}: {name} {value} is above {limit:,}")
        parsed.append(Arrival(float(at), chunk, kind, chars))
    try:
        # The same checks the metrics apply (order, clocks), reported before anything is stored.
        stream_metrics(0.0, chunk_arrivals(parsed))
    except ValueError as error:
        raise ArrivalsError(str(error)) from error
    return parsed
