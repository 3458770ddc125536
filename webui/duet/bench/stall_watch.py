"""A witness for benchmarks: a process that notices when this machine stops running it.

On the shared 2-core VM the benchmarks run on, everything sometimes stands still for 0.3-0.7 s
at once: the engine, Duet, the reference relay and the benchmark's client
(docs/benchmarks/relay.md). A request caught in such a moment reports the stall as its own
time, on whichever path it ran. This process only sleeps a few milliseconds at a time and
notes each wake-up that came much too late; a separate process, so that no benchmark code
(and no event loop or GIL of its) can delay it. A stall it saw was not Duet's doing: the
scheduler shares a core between processes of equal priority within milliseconds, so no busy
process of ours keeps it waiting 100 ms. What it sees is the host taking a virtual CPU away (CPU
steal) or a core held by something the scheduler does not share; that may be one core, not both
(docs/benchmarks/relay.md).

Run as `python -m duet.bench.stall_watch`: it prints `READY` once it is watching, watches until
SIGTERM or SIGINT, then prints the stalls as JSON, `[[start, end], ...]` in `perf_counter()`
seconds (CLOCK_MONOTONIC on Linux, the clock every process on the machine shares, so the
benchmark can line them up with its own stamps). `StallWatch` runs it from a benchmark.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

# How long the watcher sleeps between looks at the clock.
INTERVAL_SECONDS = 0.005
# A wake-up this much later than asked for is a stall. The scheduler alone delays a sleeper by
# up to a few tens of ms here when both cores are busy (20-40 ms was seen while Ollama computed,
# with no effect on the requests); the machine-wide stalls last hundreds.
STALL_MS = 100.0
# What the watcher prints once it is watching and will answer SIGTERM with its stalls.
READY = "READY"


@dataclass(frozen=True, slots=True)
class Stall:
    """From when the watcher should have woken to when it did, in perf_counter() seconds."""

    start: float
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


def watch(
    stopped: Callable[[], bool],
    interval: float = INTERVAL_SECONDS,
    stall_ms: float = STALL_MS,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    watching: Callable[[], None] = lambda: None,
) -> list[Stall]:
    """Sleep `interval` at a time until `stopped()`; return every wake-up late by `stall_ms`.
    `watching` is called once the first wake-up is due: from then on, a stall is seen."""
    stalls = []
    due = clock() + interval

    def look() -> float:
        woke = clock()
        if (woke - due) * 1000 >= stall_ms:
            stalls.append(Stall(due, woke))
        return woke + interval

    watching()
    while not stopped():
        sleep(interval)
        due = look()
    # The stop can come the moment a stall ends, before the wake-up after it was looked at
    # (a process thawed with the stop request waiting): one last look, so it is not lost.
    look()
    return stalls


def overlap_ms(stalls: Sequence[Stall], start: float, end: float) -> float:
    """How much of [start, end] (perf_counter() seconds) the stalls cover, in ms."""
    return sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in stalls) * 1000


class StallWatch:
    """The watcher process, from `start()` to `stop()`, which returns the stalls it saw."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the watcher and return once it watches (its interpreter takes a moment to
        start; a stop before it can take SIGTERM would kill it instead of ending its watch)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "duet.bench.stall_watch"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != READY:
            self.close()
            raise RuntimeError("the stall watcher did not start")

    def stop(self) -> list[Stall]:
        if self.process is None:
            return []
        process, self.process = self.process, None
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError("the stall watcher did not stop") from None
        if process.returncode != 0:
            raise RuntimeError(f"the stall watcher failed (exit {process.returncode})")
        return [Stall(start, end) for start, end in json.loads(out)]

    def close(self) -> None:
        """End a watcher that was not stopped (the benchmark failed): its stalls are moot."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.kill()
        process.communicate()


def main() -> int:
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stalls = watch(lambda: stop_requested, watching=lambda: print(READY, flush=True))
    print(json.dumps([[s.start, s.end] for s in stalls]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
