"""What `duet bench load` keeps of each request, and a run's numbers as `vllm bench serve`
defines them (vllm/benchmarks/serve.py, `calculate_metrics`; docs/benchmarks/load.md).

Pure functions over `RequestRecord`s: no clocks, no I/O. Times in a record are seconds (a
`perf_counter()` reading where the name ends in `_time`); the metrics are in ms where their
name ends in `_ms`, under vLLM's field names (`mean_ttft_ms`, `p99_itl_ms`, ...), so a run's
JSON reads like `vllm bench serve --save-result`'s.

The definitions, per successful request:
- TTFT: from this client starting the request to the first chunk that carries text
  (reasoning or answer). vLLM's client stops its clock at the first chunk with a `choices`
  entry, which on vLLM is the role chunk sent with the first token; on every route here the
  first text is what a person waits for.
- ITL: the gaps between consecutive text chunks, pooled over all requests (a chunk is not
  always one token: vLLM #27485; the gaps are per chunk, as vLLM's are).
- E2EL: from the start to the last text chunk.
- TPOT: (E2EL - TTFT) / (output tokens - 1), for requests with more than one output token;
  the token count is the engine's own (vLLM's `usage`, Ollama's `eval_count`), and when an
  engine gave none, the number of text chunks.
- Throughputs: completed requests, output tokens (and input + output tokens) divided by the
  run's duration. Goodput: the requests that met every SLO given, per second; a request with
  one output token has TPOT 0 for this, as in vLLM.
- `max_output_tokens_per_s` and `max_concurrent_requests`: vLLM's one-second buckets from the
  first successful start (a chunk counts as a token there, as in vLLM); `peak_concurrency` is
  the exact largest number of requests in flight at once, failed ones included.
Where vLLM reports 0 for a metric with no values, this reports None: no data is not zero.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from duet.metrics.stream import percentile

# Why a request failed. Every request sent ends as completed or as one of these, so that
# completed + failed == sent at every point, whatever stopped it.
FailureCause = Literal[
    "timeout",
    "queue full (503)",
    "refused",  # another HTTP error status
    "connection",
    "engine error",  # the engine broke the stream, or it ended with no text
    "cancelled: time limit",
    "cancelled: saturated",
]
FAILURE_CAUSES: tuple[FailureCause, ...] = FailureCause.__args__  # type: ignore[attr-defined]

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
# The metrics an SLO can be given for (`--goodput ttft:500 tpot:50`), as in vLLM.
SLO_METRICS = ("ttft", "tpot", "e2el")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request of a run, as it ended."""

    series: str  # the engine route and path, e.g. "vllm direct"
    index: int  # its place in the run's order of sending
    start_time: float  # when this client started it
    end_time: float  # when it ended: its last chunk, or its failure
    success: bool
    ttft: float | None = None
    itl: tuple[float, ...] = ()
    latency: float | None = None  # E2EL
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    chunks: int = 0  # text chunks read
    cause: FailureCause | None = None
    error: str | None = None
    status: int | None = None  # the HTTP status of a refusal
    turn: int = 0  # in the chat workload, which turn of its conversation


def output_length(record: RequestRecord) -> int:
    """The engine's count of output tokens, or the text chunks when it gave none."""
    return record.output_tokens if record.output_tokens is not None else record.chunks


def tpot(record: RequestRecord) -> float | None:
    """(E2EL - TTFT) / (output tokens - 1); None for a single token or a failure."""
    length = output_length(record)
    if not record.success or record.latency is None or record.ttft is None or length <= 1:
        return None
    return (record.latency - record.ttft) / (length - 1)


def describe(prefix: str, values_s: Sequence[float], percentiles: Sequence[float]) -> dict:
    """mean, median, std and each percentile of values in seconds, in ms, under vLLM's keys."""
    keys = [f"mean_{prefix}_ms", f"median_{prefix}_ms", f"std_{prefix}_ms"]
    keys += [f"p{percentile_word(p)}_{prefix}_ms" for p in percentiles]
    if not values_s:
        return dict.fromkeys(keys)
    ms = [value * 1000 for value in values_s]
    numbers = [statistics.fmean(ms), statistics.median(ms), statistics.pstdev(ms)]
    numbers += [percentile(ms, p) for p in percentiles]
    return dict(zip(keys, numbers, strict=True))


def percentile_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def meets_slos(record: RequestRecord, slos_ms: Mapping[str, float]) -> bool:
    values = {"ttft": record.ttft, "tpot": tpot(record) or 0.0, "e2el": record.latency}
    return all(
        values[name] is not None and values[name] * 1000 <= limit  # type: ignore[operator]
        for name, limit in slos_ms.items()
    )


def per_second_peaks(successes: Sequence[RequestRecord]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s and max_concurrent_requests: one-second buckets from
    the first successful start; each chunk's time counts one token in its bucket, and each
    request counts in every bucket from its start's to its end's."""
    if not successes:
        return 0.0, 0
    first = min(r.start_time for r in successes)
    last = max(r.start_time + (r.latency or 0.0) for r in successes)
    buckets = math.ceil(last - first) + 1
    tokens = [0] * buckets
    concurrent = [0] * buckets
    for record in successes:
        at = record.start_time + (record.ttft or 0.0)
        for gap in (0.0, *record.itl):
            at += gap
            bucket = int(at - first)
            if 0 <= bucket < buckets:
                tokens[bucket] += 1
        start = int(record.start_time - first)
        end = int(record.start_time + (record.latency or 0.0) - first)
        for second in range(start, min(end, buckets - 1) + 1):
            concurrent[second] += 1
    return float(max(tokens)), max(concurrent)


def peak_concurrency(records: Iterable[RequestRecord]) -> int:
    """The largest number of requests in flight at once (a request ending at the instant
    another starts is not counted with it)."""
    changes = sorted(
        [(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records],
        key=lambda change: (change[0], change[1]),
    )
    peak = current = 0
    for _, step in changes:
        current += step
        peak = max(peak, current)
    return peak


def failures_by_cause(records: Iterable[RequestRecord]) -> dict[str, int]:
    counts = dict.fromkeys(FAILURE_CAUSES, 0)
    for record in records:
        if not record.success:
            counts[record.cause or "engine error"] += 1
    return {cause: count for cause, count in counts.items() if count}


def run_metrics(
    records: Sequence[RequestRecord],
    duration_s: float,
    slos_ms: Mapping[str, float] | None = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """One run's numbers under vLLM's field names (see the module docstring)."""
    successes = [r for r in records if r.success]
    lengths = [output_length(r) for r in successes]
    prompt_total = sum(r.prompt_tokens or 0 for r in successes)
    ttfts = [r.ttft for r in successes if r.ttft is not None]
    tpots = [value for value in map(tpot, successes) if value is not None]
    itls = [gap for r in successes for gap in r.itl]
    e2els = [r.latency for r in successes if r.latency is not None]
    max_tokens_per_s, max_concurrent = per_second_peaks(successes)
    result: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(successes),
        "failed": len(records) - len(successes),
        "failed_by_cause": failures_by_cause(records),
        "total_input_tokens": prompt_total,
        "total_output_tokens": sum(lengths),
        "request_throughput": len(successes) / duration_s if duration_s > 0 else None,
        "request_goodput": None,
        "output_throughput": sum(lengths) / duration_s if duration_s > 0 else None,
        "total_token_throughput": (
            (prompt_total + sum(lengths)) / duration_s if duration_s > 0 else None
        ),
        "max_output_tokens_per_s": max_tokens_per_s,
        "max_concurrent_requests": max_concurrent,
        "peak_concurrency": peak_concurrency(records),
    }
    if slos_ms and duration_s > 0:
        good = sum(1 for r in successes if meets_slos(r, slos_ms))
        result["request_goodput"] = good / duration_s
    for name, values in zip(LATENCY_METRICS, (ttfts, tpots, itls, e2els), strict=True):
        result.update(describe(name, values, percentiles))
    median_tpot = result["median_tpot_ms"]
    # What one user sees of the decode speed: one over the median TPOT.
    result["output_throughput_per_user"] = 1000 / median_tpot if median_tpot else None
    return result


def spread(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """For each number the repeats of a point share: the median of the repeats, their lowest
    and highest."""
    out = {}
    for key in dict.fromkeys(key for run in runs for key in run):
        values = [run[key] for run in runs if is_number(run.get(key))]
        if values:
            out[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_slos(text: Sequence[str]) -> dict[str, float]:
    """`ttft:500 tpot:50` (ms) as a mapping; ValueError for an unknown metric or a bad value."""
    slos = {}
    for item in text:
        name, _, value = item.partition(":")
        if name not in SLO_METRICS:
            raise ValueError(f"an SLO is one of {', '.join(SLO_METRICS)}, not {name!r}")
        number = float(value)
        if not number > 0:
            raise ValueError(f"the {name} SLO must be a positive number of ms, not {value!r}")
        slos[name] = number
    return slos
