"""What a running answer publishes to the pages watching it: typed values, in order.

An answer's stream to a page is the engine's own events (`duet.engines.events`), in the order
they were read, between two of the answer's own: `RequestSent` first (the engine request is on
the wire, so the engine's time starts) and `AnswerEnded` last. Each is wrapped in a `Published`
with its sequence number (the event stream's `id`, so a page that reconnects resumes after the
last one it saw) and `t`, when the server read it. `duet.sse` turns them into the wire format,
in one place; docs/metrics.md defines every field the page reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from duet.engines.events import StreamEvent
from duet.store.messages import Status


@dataclass(frozen=True, slots=True)
class RequestSent:
    """The engine request is on the wire (its `t` is 0).

    `after_receipt_ms` is Duet's own time from receiving the user's request to here;
    `received_at` is the raw perf_counter() of that receipt, which a benchmark on the same
    machine can line up with its own clock (on Linux every process reads CLOCK_MONOTONIC)."""

    after_receipt_ms: float
    received_at: float
    kind: Literal["sent"] = "sent"


@dataclass(frozen=True, slots=True)
class AnswerEnded:
    """The answer is over, however it ended; nothing is published after it."""

    status: Status
    error: str | None
    # Set when the answer could not be saved: why, and what Duet does about it.
    unsaved: str | None = None
    kind: Literal["end"] = "end"


AnswerEvent = StreamEvent | RequestSent | AnswerEnded


@dataclass(frozen=True, slots=True)
class Published:
    """One event as the watching pages get it."""

    seq: int  # its place in the answer's stream, from 0: the event stream's `id`
    t: float  # when the server read it: ms since the engine request was on the wire
    event: AnswerEvent

    @property
    def is_end(self) -> bool:
        return isinstance(self.event, AnswerEnded)
