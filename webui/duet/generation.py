"""Generations: one server-side task per assistant answer.

The task reads the engine's stream, keeps the answer in memory, saves it to SQLite at short
intervals and at the end, and publishes every event to whoever is watching. A browser stream is
only a subscriber: closing the tab or reloading the page does not stop the answer, and a new
subscriber is first sent every event so far. Only `stop()` (the Stop button) or shutdown cancels
the task, which closes the engine's stream and so the upstream request: the engine stops.

Two clocks per answer, both `perf_counter()`: `received`, when Duet received the user's request
that asked for this answer, and `started`, when the engine request was on the wire. Every `t`
stamp counts from `started`, so it is the engine's time as the server sees it; `started -
received` is Duet's own work before the engine could begin (published as the `sent` event).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from duet.engines.base import ChatRequest, Engine
from duet.engines.events import AnswerDelta, Done, ReasoningDelta, StreamError, StreamEvent, Usage
from duet.engines.http import on_request_sent
from duet.store.messages import AssistantOutcome, save_assistant
from duet.tasks import describe_exception, start_task

log = logging.getLogger(__name__)

# How often a streaming answer is written to SQLite. Each write is one small UPDATE in WAL mode;
# this bounds what a crash can lose without costing a write per token.
SAVE_INTERVAL_SECONDS = 0.25
# How long `stop()` waits for the engine's stream to close before answering.
STOP_WAIT_SECONDS = 10.0
# How long an ended answer's events stay in memory. A page (or any client) whose event stream
# opens just after a short answer ended still gets every event with its stamps, so it sees the
# answer arrive and can measure it, instead of an empty stream and a stored message.
REPLAY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """One event as sent to browsers: `seq` numbers it (the SSE id), `name` is its SSE event type.

    `data["t"]` is when the server read it, in ms since the engine request was on the wire.
    """

    seq: int
    name: str
    data: dict[str, Any]


# Called with published events, in order (see `Generation.watch`).
Subscriber = Callable[[Sequence[PublishedEvent]], None]


@dataclass(eq=False)
class Generation:
    engine: Engine
    request: ChatRequest
    # The conversation it answers (None for a new conversation until the turn is stored) and
    # its assistant row (None until stored): the engine request leaves before either is
    # written, see `turns.answering`.
    conversation_id: int | None = None
    message_id: int | None = None
    # When Duet received the request asking for this answer (see the module docstring).
    received: float = field(default_factory=time.perf_counter)
    # When the engine request was on the wire: its last byte written, as the HTTP reader reports
    # it; for an adapter that does not report it, when the task began the request.
    started: float = field(default_factory=time.perf_counter)
    # Set once the engine request has left (or the answer ended without one).
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the answer's row exists (`Generations.attach`): nothing is saved before.
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: AssistantOutcome = field(default_factory=lambda: AssistantOutcome("streaming"))
    events: list[PublishedEvent] = field(default_factory=list)
    # Who is watching: each is called with the backlog when it starts watching, then with every
    # event as it is published, in this generation's task (see `watch`).
    subscribers: list[Subscriber] = field(default_factory=list)
    stop_requested: bool = False
    task: asyncio.Task[None] | None = None

    def ms_since_start(self, at: float) -> float:
        return round((at - self.started) * 1000, 3)

    def request_on_wire(self, at: float) -> None:
        """The engine request's last byte was written at `at`: from here the engine's time runs."""
        if self.sent.is_set():
            return
        self.started = at
        self.sent.set()
        after_receipt_ms = round((at - self.received) * 1000, 3)
        # `received_at` is the raw perf_counter() reading: on Linux that clock is CLOCK_MONOTONIC,
        # shared by every process on the machine, so a benchmark there can line its own stamps
        # up with Duet's (how long its request took to reach Duet, and the first chunk to come
        # back).
        self.publish(
            "sent", {"t": 0.0, "after_receipt_ms": after_receipt_ms, "received_at": self.received}
        )

    async def wait_sent(self, timeout: float) -> bool:
        """Wait until the engine request has left, at most `timeout` s. False if it had not."""
        # A timeout scope, not wait_for: wait_for would start a task of its own for the wait,
        # on the way to the engine request.
        try:
            async with asyncio.timeout(timeout):
                await self.sent.wait()
        except TimeoutError:
            return False
        return True

    def publish(self, name: str, data: dict[str, Any]) -> None:
        event = PublishedEvent(seq=len(self.events), name=name, data=data)
        self.events.append(event)
        for subscriber in self.subscribers:
            try:
                subscriber((event,))
            except Exception:
                # A page that cannot be written to must not end the answer for everyone.
                log.exception("a subscriber of generation %s failed", self.message_id)

    def watch(self, after_seq: int, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event after `after_seq` (all of them by default) at once,
        then with each new event the moment it is published; returns the function that stops it.
        The last event of every generation is `end`.

        The calls come from the code that publishes, mostly the answer's task between reading a
        chunk from the engine and reading the next: a subscriber must not block (the event
        stream writes without waiting, `sse.EventStream`). Handing events over through a queue
        to the subscriber's own task instead cost a turn of the event loop per event, and on
        Duet's 2-core machine the first chunk reached the reader 0.3-0.4 ms later
        (docs/benchmarks/relay.md)."""
        backlog = self.events[after_seq + 1 :]
        if backlog:
            subscriber(backlog)
        if self.ended:
            return lambda: None
        self.subscribers.append(subscriber)

        def stop() -> None:
            if subscriber in self.subscribers:
                self.subscribers.remove(subscriber)

        return stop

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1].name == "end"

    def apply(self, event: StreamEvent) -> None:
        """Fold one engine event into the answer and pass it on to subscribers."""
        outcome = self.outcome
        # An adapter that does not report the send still has sent it by its first event.
        self.sent.set()
        t = self.ms_since_start(event.at)
        if isinstance(event, ReasoningDelta | AnswerDelta):
            if isinstance(event, ReasoningDelta):
                outcome.reasoning += event.text
            else:
                outcome.content += event.text
                if event.text and outcome.ttfa_ms is None:
                    outcome.ttfa_ms = t
            if event.text and outcome.ttft_ms is None:
                outcome.ttft_ms = t
            outcome.arrivals.append((t, event.chunk, event.kind[0], len(event.text)))
            self.publish(event.kind, {"text": event.text, "t": t, "chunk": event.chunk})
        elif isinstance(event, Usage):
            outcome.prompt_tokens = event.prompt_tokens
            outcome.completion_tokens = event.completion_tokens
            outcome.engine_timings = dict(event.engine_timings)
            self.publish(
                "usage",
                {
                    "t": t,
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.completion_tokens,
                },
            )
        elif isinstance(event, Done):
            outcome.status = "complete"
            outcome.finish_reason = event.finish_reason
            outcome.total_ms = t
            self.publish("done", {"t": t, "finish_reason": event.finish_reason})
        elif isinstance(event, StreamError):
            outcome.status = "failed"
            outcome.error = event.message
            outcome.total_ms = t
            # Not "error": that name is taken by EventSource for its own connection errors.
            self.publish("engine_error", {"t": t, "message": event.message, "status": event.status})


class Generations:
    """The generations of one app: starting (request sent, row not yet stored), running (by
    assistant message id) and recently ended (kept for late subscribers)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.starting: set[Generation] = set()
        self.running: dict[int, Generation] = {}
        # Ended answers, kept REPLAY_SECONDS for late subscribers (see REPLAY_SECONDS).
        self.ended: dict[int, Generation] = {}

    def launch(
        self,
        engine: Engine,
        request: ChatRequest,
        received: float,
        conversation_id: int | None = None,
    ) -> Generation:
        """Start the answer's task: its engine request leaves before this returns (Python
        3.12+, `start_task`) or as soon as the caller awaits.

        The caller then stores the answer's row and calls `attach`, or `abandon` if it cannot:
        the task saves nothing before that. `received`: perf_counter() when Duet received the
        user's request."""
        generation = Generation(engine, request, conversation_id, received=received)
        self.starting.add(generation)
        generation.task = start_task(self.run(generation), name="generation")
        return generation

    def attach(self, generation: Generation, conversation_id: int, message_id: int) -> None:
        """The answer's row is stored: from now on the generation saves into it."""
        generation.conversation_id = conversation_id
        generation.message_id = message_id
        self.starting.discard(generation)
        self.running[message_id] = generation
        generation.stored.set()

    def abandon(self, generation: Generation) -> None:
        """The answer's row could not be stored: cancel its request (nothing to save)."""
        self.starting.discard(generation)
        if generation.task is not None:
            generation.task.cancel()

    def start(
        self,
        message_id: int,
        conversation_id: int,
        engine: Engine,
        request: ChatRequest,
        received: float,
    ) -> Generation:
        """Answer into a row that is already stored."""
        generation = self.launch(engine, request, received, conversation_id)
        self.attach(generation, conversation_id, message_id)
        return generation

    def get(self, message_id: int) -> Generation | None:
        """The answer's generation while it runs, and for REPLAY_SECONDS after it ended."""
        return self.running.get(message_id) or self.ended.get(message_id)

    def streaming_in(self, conversation_id: int) -> Generation | None:
        for generation in (*self.starting, *self.running.values()):
            if generation.conversation_id == conversation_id:
                return generation
        return None

    async def stop(self, message_id: int) -> bool:
        """Cancel a generation and wait until its partial answer is saved. False if not running."""
        generation = self.running.get(message_id)
        if generation is None or generation.task is None:
            return False
        generation.stop_requested = True
        generation.task.cancel()
        await asyncio.wait({generation.task}, timeout=STOP_WAIT_SECONDS)
        return True

    async def shutdown(self) -> None:
        live = (*self.starting, *self.running.values())
        tasks = [g.task for g in live if g.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_SECONDS)

    async def run(self, generation: Generation) -> None:
        outcome = generation.outcome
        generation.started = time.perf_counter()
        last_save = generation.started
        # This task's own context (create_task copied it), so only this answer's request reports.
        on_request_sent.set(generation.request_on_wire)
        stream = generation.engine.stream_chat(generation.request)
        try:
            try:
                async for event in stream:
                    # Folded in and written out to every watching page (`watch`) before the
                    # adapter does its own bookkeeping or reads on.
                    generation.apply(event)
                    now = time.perf_counter()
                    if now - last_save >= SAVE_INTERVAL_SECONDS and generation.stored.is_set():
                        self.save(generation)
                        last_save = now
            finally:
                # Closing the iterator is what makes the adapter close the upstream request.
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
            if outcome.status == "streaming":
                outcome.status = "failed"
                outcome.error = f"{generation.engine.label} ended the stream without finishing."
        except asyncio.CancelledError:
            if generation.stop_requested:
                outcome.status = "stopped"
            else:
                outcome.status = "interrupted"
                outcome.error = "The server shut down while this answer was streaming."
            self.finish(generation)
            raise
        except Exception as error:
            # The adapter should report failures as StreamError events; anything that escapes
            # still ends as a failed answer with a readable reason, never a hung stream.
            log.exception("generation %s failed", generation.message_id)
            outcome.status = "failed"
            outcome.error = f"{generation.engine.label} failed: {describe_exception(error)}"
        try:
            # An answer can end (an engine that is down fails at once) before its row is stored.
            await generation.stored.wait()
        finally:
            self.finish(generation)

    def save(self, generation: Generation) -> None:
        assert generation.message_id is not None
        save_assistant(self.db, generation.message_id, generation.outcome)

    def finish(self, generation: Generation) -> None:
        outcome = generation.outcome
        if outcome.total_ms is None or outcome.status in {"stopped", "interrupted"}:
            outcome.total_ms = generation.ms_since_start(time.perf_counter())
        try:
            # Not stored: the caller abandoned it (cancelled before its row existed).
            if generation.stored.is_set():
                self.save(generation)
        finally:
            generation.sent.set()
            generation.publish("end", {"status": outcome.status, "error": outcome.error})
            generation.subscribers.clear()
            self.starting.discard(generation)
            if generation.message_id is not None:
                self.running.pop(generation.message_id, None)
                self.ended[generation.message_id] = generation
                loop = asyncio.get_running_loop()
                loop.call_later(REPLAY_SECONDS, self.ended.pop, generation.message_id, None)
