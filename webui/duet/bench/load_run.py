"""Driving one run of `duet bench load`: one series (an engine route on a path) at one load
point, once.

A point is a concurrency (at most that many requests in flight, a new one as soon as one
ends: `vllm bench serve --max-concurrency`) or a request rate, with arrival gaps drawn from a
gamma distribution of shape `burstiness` and mean 1/rate (1 is a Poisson process; lower is
burstier, higher is more even: `vllm bench serve --request-rate --burstiness`), optionally
capped by a concurrency too. A run sends `requests` requests (a chat's turns each count) and
ends when they have all ended, or early:

- the time limit: nothing more is sent, and what is still in flight is cancelled;
- saturation: a quarter of the requests failed (at least `SATURATION_MIN_FAILURES`), or the
  time to first token keeps growing: the median of the last `SATURATION_WINDOW` requests is
  more than `growth` times that of the first window and over a second more. The first window
  starts after the first `concurrency` requests, which in a closed loop queue up by design
  and then hold steady; an engine that is overrun keeps growing. Then the run stops
  sending and cancels what is in flight.

Either way the run says why it stopped, and the cancelled requests are failures with their
cause, so completed + failed == sent always holds.

One extra request goes out once half the run's requests have been sent: the probe, a short
interactive question on the same route and path, outside the counts. Its time to first token
is how long a teammate waits for a first word while everyone else's requests run.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from duet.bench.load_metrics import FailureCause, RequestRecord, failures_by_cause
from duet.bench.load_send import ChatState, Sender, Series, failed
from duet.bench.load_workload import Job

SATURATION_MIN_FAILURES = 3
SATURATION_FAILED_SHARE = 0.25
SATURATION_WINDOW = 5
SATURATION_MIN_GROWTH_S = 1.0
PROBE_PROMPT = "Quick question: what is the capital of Portugal?"
PROBE_MAX_TOKENS = 16
CANCEL_CAUSES: tuple[FailureCause, ...] = ("cancelled: time limit", "cancelled: saturated")


@dataclass(frozen=True, slots=True)
class LoadPoint:
    concurrency: int | None  # at most this many requests in flight; None: no limit
    rate: float | None = None  # requests per second; None: as fast as concurrency allows
    burstiness: float = 1.0

    @property
    def label(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"{self.rate:g} req/s")
            if self.burstiness != 1.0:
                parts.append(f"burstiness {self.burstiness:g}")
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        return ", ".join(parts)

    @property
    def x(self) -> float:
        """Where the point sits on a plot's x axis: its rate, else its concurrency."""
        return self.rate if self.rate is not None else float(self.concurrency or 0)


@dataclass(frozen=True, slots=True)
class Limits:
    point_seconds: float = 300.0
    request_timeout: float = 300.0
    saturation_growth: float = 4.0


def arrival_offsets(count: int, rate: float, burstiness: float, rng: random.Random) -> list[float]:
    """When each request is due, in seconds from the run's start: the first at once, then
    gaps from a gamma distribution with shape `burstiness` and mean 1/rate."""
    offsets, at = [], 0.0
    for _ in range(count):
        offsets.append(at)
        at += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
    return offsets


@dataclass
class RunOutcome:
    series: Series
    point: LoadPoint
    repeat: int
    records: list[RequestRecord]
    duration: float
    stopped_early: str | None
    probe: RequestRecord | None
    chunks_relayed: int  # text chunks this client read, the probe's included


@dataclass
class RunState:
    """What a run has sent and seen so far, and whether it must stop."""

    requests: int
    concurrency: int | None
    growth: float
    sent: int = 0
    records: list[RequestRecord] = field(default_factory=list)
    # Requests in flight: their index, when they started, which turn of their job.
    in_flight: dict[int, tuple[float, int]] = field(default_factory=dict)
    stop_reason: str | None = None
    stop_cause: FailureCause = "cancelled: saturated"
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    on_record: Callable[[RequestRecord], None] | None = None  # e.g. a progress bar
    send_probe: bool = True
    probe_task: asyncio.Task | None = None
    probe: RequestRecord | None = None

    def stop(self, reason: str, cause: FailureCause) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_cause = reason, cause
            self.stopped.set()

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)
        reason = saturation(self.records, self.concurrency or 0, self.growth)
        if reason is not None:
            self.stop(reason, "cancelled: saturated")


def saturation(records: Sequence[RequestRecord], ramp: int, growth: float) -> str | None:
    """Why the engine counts as saturated by these records (in the order they ended), or None."""
    failures = [r for r in records if not r.success and r.cause not in CANCEL_CAUSES]
    if len(failures) >= SATURATION_MIN_FAILURES and len(failures) >= SATURATION_FAILED_SHARE * len(
        records
    ):
        causes = ", ".join(f"{n} {cause}" for cause, n in failures_by_cause(failures).items())
        return f"saturated: {len(failures)} of {len(records)} requests failed ({causes})"
    ttfts = [r.ttft for r in records if r.success and r.ttft is not None][ramp:]
    if len(ttfts) < 2 * SATURATION_WINDOW:
        return None
    first = statistics.median(ttfts[:SATURATION_WINDOW])
    last = statistics.median(ttfts[-SATURATION_WINDOW:])
    if last > growth * first and last - first > SATURATION_MIN_GROWTH_S:
        return (
            f"saturated: TTFT keeps growing (median of the last {SATURATION_WINDOW} requests"
            f" {last * 1000:.0f} ms, of the first {SATURATION_WINDOW} {first * 1000:.0f} ms)"
        )
    return None


def new_state(
    point: LoadPoint,
    requests: int,
    limits: Limits,
    on_record: Callable[[RequestRecord], None] | None = None,
    probe: bool = True,
) -> RunState:
    return RunState(
        requests,
        point.concurrency,
        limits.saturation_growth,
        on_record=on_record,
        send_probe=probe,
    )


async def send_probe(sender: Sender, state: RunState) -> None:
    state.probe = await sender.send(PROBE_PROMPT, ChatState(), -1, 0, PROBE_MAX_TOKENS)


async def run_job(job: Job, sender: Sender, state: RunState) -> None:
    """A conversation's turns, one after another, while the run still sends."""
    chat = ChatState()
    for turn, content in enumerate(job.turns):
        if state.stop_reason is not None or state.sent >= state.requests:
            return
        index = state.sent
        state.sent += 1
        state.in_flight[index] = (time.perf_counter(), turn)
        half_sent = state.sent >= (state.requests + 1) // 2
        if state.send_probe and state.probe_task is None and half_sent:
            state.probe_task = asyncio.create_task(send_probe(sender, state))
        record = await sender.send(content, chat, index, turn)
        del state.in_flight[index]
        state.add(record)
        if not record.success:
            return


async def run_once(
    sender: Sender,
    point: LoadPoint,
    jobs: Sequence[Job],
    limits: Limits,
    rng: random.Random,
    state: RunState,
    repeat: int = 0,
) -> RunOutcome:
    """Send the run's requests at the point's load (`state`, from `new_state`, is what it has
    sent and seen so far); every sent request ends in the outcome."""
    requests = state.requests
    slots = asyncio.Semaphore(point.concurrency) if point.concurrency else None
    offsets = arrival_offsets(len(jobs), point.rate, point.burstiness, rng) if point.rate else []
    tasks: set[asyncio.Task] = set()
    start = time.perf_counter()

    async def feed() -> None:
        for number, job in enumerate(jobs):
            if offsets:
                delay = start + offsets[number] - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if slots is not None:
                await slots.acquire()
            if state.stop_reason is not None or state.sent >= requests:
                break
            task = asyncio.create_task(run_job(job, sender, state))
            if slots is not None:
                task.add_done_callback(lambda _: slots.release())
            tasks.add(task)
            await asyncio.sleep(0)  # let it send its first request before the next is due
        await asyncio.gather(*tasks)
        if state.probe_task is not None:
            await state.probe_task

    feeder = asyncio.create_task(feed())
    stopped = asyncio.create_task(state.stopped.wait())
    try:
        done, _ = await asyncio.wait(
            {feeder, stopped}, timeout=limits.point_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        # Stopped from outside (the Load page's stop button, a server shutting down): nothing
        # of this run goes on sending once the caller has gone.
        others = [feeder, stopped, *tasks, *([state.probe_task] if state.probe_task else [])]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        raise
    if not done:
        state.stop(f"time limit: {limits.point_seconds:g} s", "cancelled: time limit")
    stopped.cancel()
    if not feeder.done():
        feeder.cancel()
        others = [*tasks, *([state.probe_task] if state.probe_task else [])]
        for task in others:
            task.cancel()
        await asyncio.gather(feeder, *others, return_exceptions=True)
    elif feeder.exception() is not None:
        raise feeder.exception()  # type: ignore[misc]
    for index, (started, turn) in sorted(state.in_flight.items()):
        cancelled = failed(sender.series, index, turn, started, state.stop_cause, state.stop_reason)
        state.records.append(cancelled)
    ended = max((r.end_time for r in state.records), default=time.perf_counter())
    stopped_early = None
    if state.stop_reason is not None:
        stopped_early = f"{state.stop_reason}, after {state.sent} of {requests} requests"
    probe = state.probe
    chunks = sum(r.chunks for r in state.records) + (probe.chunks if probe else 0)
    return RunOutcome(
        series=sender.series,
        point=point,
        repeat=repeat,
        records=sorted(state.records, key=lambda r: r.index),
        duration=ended - start,
        stopped_early=stopped_early,
        probe=probe,
        chunks_relayed=chunks,
    )
