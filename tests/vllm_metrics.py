"""vLLM's own books, read from its Prometheus endpoint: how many requests it is running and how
many tokens it has generated. Tests use them to prove that a closed stream made vLLM abort.

One kept-open client reads them. Building an HTTP client is not free: httpx sets up a TLS
context for every new client, which took 0.15-0.9 s of CPU on the 2-core development machine
while vLLM was generating (and longer in CI), long enough for vLLM to write hundreds of tokens
between two readings. With one client a reading takes tens of milliseconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus series over all its label sets that carry `labels`."""
    total, found = 0.0, False
    for line in exposition.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        carried = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(carried.get(key) == value for key, value in labels.items()):
            total, found = total + float(match.group(2)), True
    assert found, f"vLLM's /metrics has no {name}{labels or ''} (is it running with stats on?)"
    return total


@dataclass(frozen=True)
class Books:
    """The counts a test compares before and after its request."""

    generated: float
    ended: float


class VllmMetrics:
    def __init__(self, vllm_url: str) -> None:
        self.client = httpx.Client(base_url=vllm_url, timeout=10)

    def value(self, name: str, **labels: str) -> float:
        return metric_value(self.client.get("/metrics").text, name, **labels)

    def running(self) -> float:
        return self.value("vllm:num_requests_running")

    def generated(self) -> float:
        return self.value("vllm:generation_tokens_total")

    def ended(self) -> float:
        """Requests that ended on their own: a stop, the token budget, an error or repetition.

        vLLM counts every finished request under its reason in `vllm:request_success_total`, but
        a request aborted because its client went away never reaches that count (the API
        server's abort path records no finishing stats), so an unchanged count after a closed
        stream, with nothing running, says the request was aborted rather than finished."""
        every = self.value("vllm:request_success_total")
        return every - self.value("vllm:request_success_total", finished_reason="abort")

    def settle(self, seconds: float = 30, quiet: float = 0.3) -> float:
        """Wait, for at most `seconds`, until vLLM runs nothing and its token count has stopped
        moving for `quiet` seconds; return how many requests it still runs.

        Both matter before a reading is taken as a baseline: vLLM's API server counts the tokens
        of the engine's outputs as it handles them, and on a busy machine it can fall behind and
        count a stream's backlog later, in one go. A CI run once saw 1,593 tokens counted within
        0.1 s of a new request's start: the tail of an earlier test's story."""
        deadline = time.monotonic() + seconds
        last = self.generated()
        while True:
            time.sleep(quiet)
            running, now = self.running(), self.generated()
            if (running == 0 and now == last) or time.monotonic() > deadline:
                return running
            last = now

    def quiet_books(self) -> Books:
        """The books once vLLM runs nothing and its count has stopped moving: a test's baseline."""
        assert self.settle() == 0, "vLLM is busy with another request"
        return Books(self.generated(), self.ended())

    def assert_aborted_since(self, before: Books, budget: int) -> None:
        """The one request sent since `before`, whose client has gone, was aborted: within ten
        seconds vLLM runs nothing, the request never ended on its own, and it generated fewer
        than half of its `budget` of tokens.

        Nothing is read between the client's first text and its leaving: vLLM keeps generating
        while a test reads its books, and on a busy machine a reading can take long enough for a
        tiny model to write its whole budget (a CI run once saw all 3,000 tokens counted so).
        An async test calls this in a thread (`asyncio.to_thread`): it waits by sleeping, and an
        event loop blocked here could not close the stream's socket, so vLLM would never learn
        that its client left."""
        left = time.monotonic()
        running = self.settle(seconds=10)
        generated, ended = self.generated() - before.generated, self.ended() - before.ended
        timeline = (
            f"{running:.0f} request(s) running and {generated:.0f} tokens generated "
            f"{time.monotonic() - left:.2f} s after the client left"
        )
        assert running == 0, timeline
        assert ended == 0, f"the request ended on its own rather than being aborted; {timeline}"
        assert 0 < generated < budget / 2, timeline

    def close(self) -> None:
        self.client.close()
