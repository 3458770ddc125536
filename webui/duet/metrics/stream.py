"""Latency metrics over chunk arrival times: TTFT, TTFA, TPOT, ITL, percentiles, bursts.

Pure functions over numbers, no I/O and no clocks: the same code measures a stream at the
server (arrival stamps from `time.perf_counter()`) and in the browser (stamps from
`performance.now()`, converted to seconds), and compares the two hops. Every definition, its
source and its edge cases are written out in docs/metrics.md; the names follow `vllm bench
serve` (vllm/benchmarks/serve.py), not GuideLLM, whose "ITL" is vLLM's TPOT.

Two traps this module is built to avoid:
- A chunk is not a token. Reasoning parsers, detokenizers and relays merge or split tokens into
  chunks (vLLM #27485), so the inter-token latency here is honestly per *chunk*, and every
  per-token figure (TPOT, tokens/s) uses the engine's own token count or is left out.
- One upstream chunk can yield several events (reasoning and answer text in one chunk); they
  are folded back into one arrival, so gaps are counted per chunk, never per event.

Aggregation across requests (Prometheus histograms) lives elsewhere; this module describes one
stream, or one stream seen at two hops.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from duet.engines.events import AnswerDelta, ReasoningDelta, StreamEvent, Usage

ChunkKind = Literal["reasoning", "answer"]

BURST_GAP_S = 0.001
"""A gap shorter than this (1 ms) counts as 'collapsed': two chunks that arrived together."""

BURST_GAP_RELATIVE = 0.1
"""When comparing hops, a gap also counts as collapsed below this share of the server's ITL p50,
so that a browser spending a few ms rendering each chunk of a burst still shows as a burst."""

BURSTY_FRACTION_RISE = 0.25
"""Verdict threshold: the share of collapsed gaps at the browser exceeds the server's by this."""

MIN_GAPS_FOR_VERDICT = 4
"""Fewer matched gaps than this (a 1-4 chunk answer) cannot show a burst pattern: never bursty."""


@dataclass(frozen=True, slots=True)
class ChunkArrival:
    """One upstream chunk that carried text, as seen at one hop.

    `at` is in seconds on that hop's monotonic clock; `chunk` is the upstream chunk number
    (`StreamEvent.chunk`), the key that matches the same chunk across hops.
    """

    at: float
    kind: ChunkKind
    chunk: int


@dataclass(frozen=True, slots=True)
class StreamMetrics:
    """The latency of one streamed answer at one hop. Times are seconds; None means 'no data'."""

    chunk_count: int
    ttft: float | None  # request sent -> first chunk with any text (reasoning or answer)
    ttfa: float | None  # request sent -> first chunk with answer text (reasoning excluded)
    e2e: float | None  # request sent -> last chunk with text
    output_tokens: int | None  # from the engine (vLLM usage, Ollama eval_count), never guessed
    tpot: float | None  # (e2e - ttft) / (output_tokens - 1)
    itl: tuple[float, ...]  # gaps between consecutive chunks, in arrival order
    itl_p50: float | None
    itl_p95: float | None
    itl_max: float | None
    itl_cv: float | None  # coefficient of variation of the gaps (population stdev / mean)
    burst_gap_fraction: float | None  # share of gaps shorter than BURST_GAP_S
    output_tokens_per_s: float | None  # output_tokens / e2e

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens per second after the first token (1 / TPOT): comparable to Ollama's eval rate."""
        if self.tpot is None or self.tpot <= 0:
            return None
        return 1.0 / self.tpot


@dataclass(frozen=True, slots=True)
class DecodeSpeed:
    """How fast an answer's tokens came once they had started: (n - 1) / (e2e - TTFT), the
    inverse of TPOT. When the tokens after the first came closer together than BURST_GAP_S
    apiece, they arrived together (a stall released them at once, or a hop held them): a rate
    over that span measures the burst, not the engine, so `tokens_per_s` is None and
    `arrived_together` is set."""

    tokens_per_s: float | None
    arrived_together: bool


def decode_speed(
    output_tokens: int | None, ttft: float | None, e2e: float | None
) -> DecodeSpeed | None:
    """The decode speed of one answer (seconds in, tokens per second out); None without the
    engine's token count (n >= 2) or both times."""
    if output_tokens is None or output_tokens < 2 or ttft is None or e2e is None:
        return None
    per_token = (e2e - ttft) / (output_tokens - 1)
    if per_token < BURST_GAP_S:
        return DecodeSpeed(tokens_per_s=None, arrived_together=True)
    return DecodeSpeed(tokens_per_s=1.0 / per_token, arrived_together=False)


@dataclass(frozen=True, slots=True)
class TtftSplit:
    """Where an answer's time to first token went, in seconds, as far as the engine says.

    Ollama's last chunk reports, by its own clock, how long it spent loading the model
    (`load_duration`) and reading the prompt (`prompt_eval_duration`); the rest of the TTFT
    Duet measured is `waiting`: queued behind other requests (Ollama answers
    OLLAMA_NUM_PARALLEL at a time), the way to Ollama and back, and generating the first token.
    vLLM's stream (and Ollama's /v1) reports none of this."""

    waiting: float
    loading: float
    prompt: float


def ttft_split(ttft: float | None, engine_timings: Mapping[str, float]) -> TtftSplit | None:
    """The TTFT split by the engine's own timings, or None when the engine gave none."""
    loading = engine_timings.get("load_duration")
    prompt = engine_timings.get("prompt_eval_duration")
    if ttft is None or loading is None or prompt is None:
        return None
    return TtftSplit(waiting=max(0.0, ttft - loading - prompt), loading=loading, prompt=prompt)


@dataclass(frozen=True, slots=True)
class HopComparison:
    """The same chunks seen at the server (from the engine) and in the browser (on screen)."""

    server_chunks: int
    browser_chunks: int
    missing_at_browser: tuple[int, ...]  # chunk numbers the server saw and the browser did not
    unexpected_at_browser: tuple[int, ...]  # chunk numbers only the browser saw
    added_delay: tuple[float, ...]  # per matched chunk, in chunk order (see docs/metrics.md)
    added_delay_p50: float | None
    added_delay_p95: float | None
    added_delay_max: float | None
    collapsed_gap_s: float | None  # the gap below which a gap counts as collapsed, both hops
    server_collapsed_fraction: float | None
    browser_collapsed_fraction: float | None
    server_itl_cv: float | None
    browser_itl_cv: float | None
    bursty: bool

    @property
    def chunks_preserved(self) -> bool:
        """Every chunk the server relayed reached the browser, and nothing else did."""
        return not self.missing_at_browser and not self.unexpected_at_browser


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks.

    This is numpy's default (`method="linear"`, Hyndman & Fan type 7), which `vllm bench serve`
    uses: sort the values, take rank h = (n - 1) * p / 100, and interpolate between the values at
    floor(h) and ceil(h). Raises ValueError for no values or p outside [0, 100].
    """
    if not 0 <= p <= 100 or math.isnan(p):
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values is undefined")
    rank = (len(ordered) - 1) * p / 100
    lower = math.floor(rank)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (rank - lower) * (ordered[upper] - ordered[lower])


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Population standard deviation divided by the mean; None when undefined (n < 2, mean 0).

    A steady stream's gaps have a CV well below 1; a stream that arrives in bursts (runs of
    near-zero gaps, then long waits) has a CV well above 1.
    """
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean <= 0:
        return None
    return statistics.pstdev(values, mu=mean) / mean


def collapsed_fraction(gaps: Sequence[float], threshold_s: float = BURST_GAP_S) -> float | None:
    """Share of gaps shorter than `threshold_s`: chunks that arrived together. None for no gaps."""
    if not gaps:
        return None
    return sum(1 for gap in gaps if gap < threshold_s) / len(gaps)


def arrivals_from_events(events: Iterable[StreamEvent]) -> list[ChunkArrival]:
    """The text-carrying events of a stream as arrivals (usage, done and error carry no text)."""
    return [
        ChunkArrival(at=event.at, kind=event.kind, chunk=event.chunk)
        for event in events
        if isinstance(event, ReasoningDelta | AnswerDelta) and event.text
    ]


def output_tokens_from_events(events: Iterable[StreamEvent]) -> int | None:
    """The engine's count of generated tokens, from the last `Usage` event that has one."""
    count: int | None = None
    for event in events:
        if isinstance(event, Usage) and event.completion_tokens is not None:
            count = event.completion_tokens
    return count


def stream_metrics(
    sent_at: float,
    arrivals: Iterable[ChunkArrival],
    output_tokens: int | None = None,
) -> StreamMetrics:
    """Measure one stream at one hop.

    `sent_at` is when the request left this hop, on the same clock as the arrivals.
    `output_tokens` is the engine's own count, or None when it did not report one.
    """
    _check_time("sent_at", sent_at)
    if output_tokens is not None and (
        isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 0
    ):
        raise ValueError(f"output_tokens must be a count >= 0 or None, got {output_tokens!r}")
    chunks = _fold_chunks(arrivals, sent_at)
    gaps = _gaps([chunk.at for chunk in chunks])
    ttft = chunks[0].at - sent_at if chunks else None
    e2e = chunks[-1].at - sent_at if chunks else None
    first_answer = next((chunk for chunk in chunks if chunk.kind == "answer"), None)
    tpot = None
    if ttft is not None and e2e is not None and output_tokens is not None and output_tokens >= 2:
        tpot = (e2e - ttft) / (output_tokens - 1)
    tokens_per_s = None
    if output_tokens is not None and e2e is not None and e2e > 0:
        tokens_per_s = output_tokens / e2e
    return StreamMetrics(
        chunk_count=len(chunks),
        ttft=ttft,
        ttfa=first_answer.at - sent_at if first_answer else None,
        e2e=e2e,
        output_tokens=output_tokens,
        tpot=tpot,
        itl=gaps,
        itl_p50=percentile(gaps, 50) if gaps else None,
        itl_p95=percentile(gaps, 95) if gaps else None,
        itl_max=max(gaps) if gaps else None,
        itl_cv=coefficient_of_variation(gaps),
        burst_gap_fraction=collapsed_fraction(gaps),
        output_tokens_per_s=tokens_per_s,
    )


def compare_hops(
    server_sent_at: float,
    server: Iterable[ChunkArrival],
    browser_sent_at: float,
    browser: Iterable[ChunkArrival],
) -> HopComparison:
    """What the hop from the server to the browser added, chunk by chunk.

    The two clocks are never compared with each other: each hop's arrivals are first measured
    from that hop's own request start, and the added delay of a chunk is browser elapsed minus
    server elapsed. For the first chunk this is exactly browser TTFT minus server TTFT.
    """
    _check_time("server_sent_at", server_sent_at)
    _check_time("browser_sent_at", browser_sent_at)
    server_chunks = _fold_chunks(server, server_sent_at)
    browser_chunks = _fold_chunks(browser, browser_sent_at)
    server_elapsed = {chunk.chunk: chunk.at - server_sent_at for chunk in server_chunks}
    browser_elapsed = {chunk.chunk: chunk.at - browser_sent_at for chunk in browser_chunks}
    matched = sorted(server_elapsed.keys() & browser_elapsed.keys())
    added = tuple(browser_elapsed[number] - server_elapsed[number] for number in matched)

    # Gaps over the matched chunks only, so a chunk lost on the way does not show as a long gap.
    server_gaps = _gaps([server_elapsed[number] for number in matched])
    browser_gaps = _gaps([browser_elapsed[number] for number in matched])
    threshold = None
    server_fraction = browser_fraction = None
    if server_gaps:
        threshold = max(BURST_GAP_S, BURST_GAP_RELATIVE * percentile(server_gaps, 50))
        server_fraction = collapsed_fraction(server_gaps, threshold)
        browser_fraction = collapsed_fraction(browser_gaps, threshold)
    bursty = (
        len(server_gaps) >= MIN_GAPS_FOR_VERDICT
        and server_fraction is not None
        and browser_fraction is not None
        and browser_fraction - server_fraction >= BURSTY_FRACTION_RISE
    )
    return HopComparison(
        server_chunks=len(server_chunks),
        browser_chunks=len(browser_chunks),
        missing_at_browser=tuple(sorted(server_elapsed.keys() - browser_elapsed.keys())),
        unexpected_at_browser=tuple(sorted(browser_elapsed.keys() - server_elapsed.keys())),
        added_delay=added,
        added_delay_p50=percentile(added, 50) if added else None,
        added_delay_p95=percentile(added, 95) if added else None,
        added_delay_max=max(added) if added else None,
        collapsed_gap_s=threshold,
        server_collapsed_fraction=server_fraction,
        browser_collapsed_fraction=browser_fraction,
        server_itl_cv=coefficient_of_variation(server_gaps),
        browser_itl_cv=coefficient_of_variation(browser_gaps),
        bursty=bursty,
    )


def _gaps(times: Sequence[float]) -> tuple[float, ...]:
    return tuple(later - earlier for earlier, later in pairwise(times))


def _check_time(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")


def _fold_chunks(arrivals: Iterable[ChunkArrival], sent_at: float) -> list[ChunkArrival]:
    """One arrival per upstream chunk, in chunk order, after checking the stamps make sense.

    Events of one chunk share its number; the chunk counts as arrived at its earliest stamp and
    as an answer chunk if any of its events carried answer text.
    """
    by_number: dict[int, ChunkArrival] = {}
    for arrival in arrivals:
        _check_time(f"arrival time of chunk {arrival.chunk}", arrival.at)
        if isinstance(arrival.chunk, bool) or not isinstance(arrival.chunk, int):
            raise ValueError(f"chunk number must be an integer, got {arrival.chunk!r}")
        if arrival.chunk < 0:
            raise ValueError(f"chunk number must be >= 0, got {arrival.chunk}")
        if arrival.kind not in ("reasoning", "answer"):
            raise ValueError(f"chunk kind must be 'reasoning' or 'answer', got {arrival.kind!r}")
        seen = by_number.get(arrival.chunk)
        if seen is None:
            by_number[arrival.chunk] = arrival
        else:
            kind: ChunkKind = "answer" if "answer" in (seen.kind, arrival.kind) else "reasoning"
            by_number[arrival.chunk] = ChunkArrival(
                at=min(seen.at, arrival.at), kind=kind, chunk=arrival.chunk
            )
    chunks = [by_number[number] for number in sorted(by_number)]
    if chunks and chunks[0].at < sent_at:
        raise ValueError(
            f"chunk {chunks[0].chunk} arrived at {chunks[0].at} before the request was sent "
            f"({sent_at}): the stamps are from different clocks"
        )
    for earlier, later in pairwise(chunks):
        if later.at < earlier.at:
            raise ValueError(
                f"chunk {later.chunk} arrived at {later.at}, before chunk {earlier.chunk} "
                f"at {earlier.at}: stamps must come from one monotonic clock"
            )
    return chunks
