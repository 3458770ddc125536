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


class VllmMetrics:
    def __init__(self, vllm_url: str) -> None:
        self.client = httpx.Client(base_url=vllm_url, timeout=10)

    def value(self, name: str, **labels: str) -> float:
        return metric_value(self.client.get("/metrics").text, name, **labels)

    def running(self) -> float:
        return self.value("vllm:num_requests_running")

    def generated(self) -> float:
        return self.value("vllm:generation_tokens_total")

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

    def close(self) -> None:
        self.client.close()
