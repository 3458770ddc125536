"""Duet's own cost under load, from its server process's counters (psutil).

While a run goes through Duet, the `duet serve` under test is watched:
- CPU time: user + system time of the process (and any children) at the run's start and end;
  divided by the text chunks relayed in the run (the probe's included), it is Duet's CPU per
  relayed chunk. All of Duet's work for those requests is in it: receiving the POST, storing
  the turn, the engine request, relaying every event, storing the answer.
- Memory: the resident set size, sampled every `SAMPLE_SECONDS` beside the number of streams
  open at that moment (this client's requests in flight). Memory per open stream is, at the
  sample with the most streams open, the growth over the run's starting size divided by those
  streams. A Python process seldom gives memory back, so the starting size of a later run
  already holds what earlier runs left: this is what one more stream costs at that load, not
  what a first stream costs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

SAMPLE_SECONDS = 0.1
MIB = 1024 * 1024


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(process: psutil.Process) -> int:
    total = 0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += each.memory_info().rss
    return total


@dataclass
class CostWatch:
    """Duet's process counters over one run; `open_streams` says how many are open now."""

    pid: int
    open_streams: Callable[[], int]
    _process: psutil.Process | None = None
    _cpu_start: float = 0.0
    _rss_start: int = 0
    _samples: list[tuple[int, int]] = field(default_factory=list)  # (open streams, rss)
    _task: asyncio.Task | None = None

    async def __aenter__(self) -> CostWatch:
        self._process = psutil.Process(self.pid)
        self._cpu_start = cpu_seconds(self._process)
        self._rss_start = rss_bytes(self._process)
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._cpu_end = cpu_seconds(self._process)  # type: ignore[arg-type]
        self._rss_end = rss_bytes(self._process)  # type: ignore[arg-type]

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            self._samples.append((self.open_streams(), rss_bytes(self._process)))  # type: ignore[arg-type]

    def result(self, chunks_relayed: int) -> dict[str, Any]:
        return cost_numbers(
            self._cpu_end - self._cpu_start,
            chunks_relayed,
            self._rss_start,
            self._rss_end,
            self._samples,
        )


def cost_numbers(
    cpu_s: float,
    chunks: int,
    rss_start: int,
    rss_end: int,
    samples: list[tuple[int, int]],
) -> dict[str, Any]:
    """Duet's cost for one run (the module docstring defines each number)."""
    busiest = max(samples, default=(0, rss_start), key=lambda sample: (sample[0], sample[1]))
    streams, rss = busiest
    per_stream = (rss - rss_start) / streams / MIB if streams else None
    return {
        "duet_cpu_s": cpu_s,
        "duet_chunks_relayed": chunks,
        "duet_cpu_ms_per_chunk": cpu_s * 1000 / chunks if chunks else None,
        "duet_rss_start_mib": rss_start / MIB,
        "duet_rss_peak_mib": max([rss_start, rss_end, *(r for _, r in samples)]) / MIB,
        "duet_streams_at_busiest": streams,
        "duet_mib_per_open_stream": per_stream,
    }
