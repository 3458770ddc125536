"""Generations: one server-side task per assistant answer.

An answer's rows are stored first (`duet.turns`); then `Generations.start` runs its task, which
reads the engine's stream, keeps the answer in memory (`AnswerState`), saves it to SQLite at
short intervals and at the end, and publishes every event to whoever is watching
(`duet.published`). A browser stream is only a subscriber: closing the tab or reloading the page
does not stop the answer, and a new subscriber is first sent every event so far. Only `stop()`
(the Stop button) or shutdown cancels the task, which closes the engine's stream and so the
upstream request: the engine stops.

Two clocks per answer, both `perf_counter()`: `received`, when Duet received the user's request
that asked for this answer, and `started`, when the engine request was on the wire (the adapter
reports it through `on_sent`). Every `t` stamp counts from `started`, so it is the engine's time
as the server sees it; `started - received` is Duet's own work before the engine could begin
(published as `RequestSent`).

A save that fails (the disk is full, the database became read-only) does not end the answer: it
streams on from memory, the end event says it could not be saved and why, and the answer is
saved as soon as the database takes writes again, for as long as the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from duet.engines.base import ChatRequest, Engine
from duet.engines.events import (
    AnswerDelta,
    Done,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    ToolCallDelta,
    Usage,
)
from duet.published import AnswerEnded, AnswerEvent, Published, RequestSent
from duet.store import api_usage, describe_storage_error
from duet.store.messages import AnswerRecord, Arrival, Status, save_assistant
from duet.tasks import describe_exception, start_task

log = logging.getLogger(__name__)

# How often a streaming answer is written to SQLite. Each write is one small UPDATE in WAL mode;
# this bounds what a crash can lose without costing a write per token.
SAVE_INTERVAL_SECONDS = 0.25
# How often an answer that could not be saved is tried again.
SAVE_RETRY_SECONDS = 5.0
# How long `stop()` waits for the engine's stream to close before answering.
STOP_WAIT_SECONDS = 10.0
# How long an ended answer's events stay in memory. A page (or any client) whose event stream
# opens just after a short answer ended still gets every event with its stamps, so it sees the
# answer arrive and can measure it, instead of an empty stream and a stored message.
REPLAY_SECONDS = 60.0


@dataclass(slots=True)
class AnswerState:
    """An answer as it streams, in memory; `record()` is what a save writes."""

    status: Status = "streaming"
    content: str = ""
    reasoning: str = ""
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    ttfa_ms: float | None = None
    total_ms: float | None = None
    engine_timings: dict[str, float] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)

    def record(self) -> AnswerRecord:
        """A frozen copy of the answer as it stands (the same fields, by name)."""
        values = {f.name: getattr(self, f.name) for f in fields(AnswerRecord)}
        values["engine_timings"] = dict(self.engine_timings)
        values["arrivals"] = tuple(self.arrivals)
        return AnswerRecord(**values)


# Called with published events, in order (see `Generation.watch`).
Subscriber = Callable[[Sequence[Published]], None]


@dataclass(eq=False)
class Generation:
    """One answer being generated into its stored row."""

    message_id: int
    conversation_id: int
    engine: Engine
    request: ChatRequest
    # When Duet received the request asking for this answer (see the module docstring).
    received: float
    # When the engine request was on the wire: its last byte written, as the adapter reports
    # it; for an adapter that does not report it, when the task began the request.
    started: float = field(default_factory=time.perf_counter)
    # Set once the engine request has left (or the answer ended without one).
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    state: AnswerState = field(default_factory=AnswerState)
    events: list[Published] = field(default_factory=list)
    # Who is watching: each is called with the backlog when it starts watching, then with every
    # event as it is published, in this generation's task (see `watch`).
    subscribers: list[Subscriber] = field(default_factory=list)
    stop_requested: bool = False
    # Why the last save failed, while the answer exists only in memory; None once saved.
    unsaved: str | None = None
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
        self.publish(RequestSent(after_receipt_ms, self.received), 0.0)

    async def wait_sent(self, timeout: float) -> bool:
        """Wait until the engine request has left, at most `timeout` s. False if it had not."""
        try:
            async with asyncio.timeout(timeout):
                await self.sent.wait()
        except TimeoutError:
            return False
        return True

    def publish(self, event: AnswerEvent, t: float) -> None:
        published = Published(len(self.events), t, event)
        self.events.append(published)
        for subscriber in self.subscribers:
            try:
                subscriber((published,))
            except Exception:
                # A page that cannot be written to must not end the answer for everyone.
                log.exception("a subscriber of answer %s failed", self.message_id)

    def watch(self, after_seq: int, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event after `after_seq` (all of them by default) at once,
        then with each new event the moment it is published; returns the function that stops it.
        The last event of every generation is `AnswerEnded`.

        The calls come from the code that publishes, mostly the answer's task between reading a
        chunk from the engine and reading the next: a subscriber must not block (the event
        stream writes without waiting, `sse.EventStream`). So an event reaches the page without
        a hand-over to another task, which would wait for a turn of the event loop."""
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
        return bool(self.events) and self.events[-1].is_end

    def apply(self, event: StreamEvent) -> None:
        """Fold one engine event into the answer and pass it on to subscribers."""
        if isinstance(event, ToolCallDelta):
            return  # the web UI offers the model no tools, so it has no call to show
        state = self.state
        # An adapter that does not report the send still has sent it by its first event.
        self.sent.set()
        t = self.ms_since_start(event.at)
        if isinstance(event, ReasoningDelta | AnswerDelta):
            if isinstance(event, ReasoningDelta):
                state.reasoning += event.text
                kind = "r"
            else:
                state.content += event.text
                kind = "a"
                if event.text and state.ttfa_ms is None:
                    state.ttfa_ms = t
            if event.text and state.ttft_ms is None:
                state.ttft_ms = t
            state.arrivals.append(Arrival(t, event.chunk, kind, len(event.text)))
        elif isinstance(event, Usage):
            state.prompt_tokens = event.prompt_tokens
            state.completion_tokens = event.completion_tokens
            state.engine_timings = dict(event.engine_timings)
        elif isinstance(event, Done):
            state.status = "complete"
            state.finish_reason = event.finish_reason
            state.total_ms = t
        elif isinstance(event, StreamError):
            state.status = "failed"
            state.error = event.message
            state.total_ms = t
        self.publish(event, t)


class Generations:
    """The answers of one app being generated (by assistant message id), and those that ended
    recently (kept for late subscribers) or could not be saved yet."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.running: dict[int, Generation] = {}
        # Ended answers, kept REPLAY_SECONDS for late subscribers (see REPLAY_SECONDS).
        self.ended: dict[int, Generation] = {}
        # Ended answers whose last save failed: tried again every SAVE_RETRY_SECONDS.
        self.unsaved: dict[int, Generation] = {}
        self._retrying: asyncio.TimerHandle | None = None

    def start(
        self,
        message_id: int,
        conversation_id: int,
        engine: Engine,
        request: ChatRequest,
        received: float,
    ) -> Generation:
        """Answer into the stored row `message_id`. The answer's task starts at once: on Python
        3.12+ its engine request is on the wire before this returns (`start_task`) when the
        engine's connection is open; `Generation.wait_sent` waits for it otherwise.
        `received`: perf_counter() when Duet received the user's request."""
        generation = Generation(message_id, conversation_id, engine, request, received)
        self.running[message_id] = generation
        generation.task = start_task(self.run(generation), name=f"answer {message_id}")
        return generation

    def get(self, message_id: int) -> Generation | None:
        """The answer's generation while it runs, and for REPLAY_SECONDS after it ended."""
        return self.running.get(message_id) or self.ended.get(message_id)

    def streaming_in(self, conversation_id: int) -> Generation | None:
        for generation in self.running.values():
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
        tasks = [g.task for g in self.running.values() if g.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_SECONDS)
        if self._retrying is not None:
            self._retrying.cancel()
        self.retry_unsaved()
        for generation in self.unsaved.values():
            log.error(
                "answer %s could not be saved before the server stopped (%s); its text is lost",
                generation.message_id,
                generation.unsaved,
            )

    async def run(self, generation: Generation) -> None:
        state = generation.state
        generation.started = time.perf_counter()
        last_save = generation.started
        stream = generation.engine.stream_chat(generation.request, generation.request_on_wire)
        try:
            try:
                async for event in stream:
                    # Folded in and written out to every watching page (`watch`) before the
                    # adapter does its own bookkeeping or reads on.
                    generation.apply(event)
                    now = time.perf_counter()
                    if now - last_save >= SAVE_INTERVAL_SECONDS:
                        self.save(generation)
                        last_save = now
            finally:
                # Closing the iterator is what makes the adapter close the upstream request.
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
            if state.status == "streaming":
                state.status = "failed"
                state.error = f"{generation.engine.label} ended the stream without finishing."
        except asyncio.CancelledError:
            if generation.stop_requested:
                state.status = "stopped"
            else:
                state.status = "interrupted"
                state.error = "The server shut down while this answer was streaming."
            self.finish(generation)
            raise
        except Exception as error:
            # The adapter reports the engine's failures as StreamError events; anything that
            # escapes still ends as a failed answer with a readable reason, never a hung stream.
            log.exception("answer %s failed", generation.message_id)
            state.status = "failed"
            state.error = f"{generation.engine.label} failed: {describe_exception(error)}"
        self.finish(generation)

    def save(self, generation: Generation) -> bool:
        """Write the answer as it stands; False (and the reason in `unsaved`) if it failed.
        Once the answer has ended, its request's usage row is written too."""
        try:
            self.write(generation.message_id, generation.state.record())
        except sqlite3.Error as error:
            if generation.unsaved is None:
                log.error("answer %s could not be saved: %s", generation.message_id, error)
            generation.unsaved = describe_storage_error(error)
            return False
        if generation.unsaved is not None:
            log.info("answer %s is saved after all", generation.message_id)
        generation.unsaved = None
        return True

    def write(self, message_id: int, record: AnswerRecord) -> None:
        """Store the answer as `record` says it is, and its request's usage row once it has
        ended. (Compare answers, which have rows of their own, override this.)"""
        save_assistant(self.db, message_id, record)
        api_usage.record_answer(self.db, message_id, record)

    def finish(self, generation: Generation) -> None:
        state = generation.state
        if state.total_ms is None or state.status in {"stopped", "interrupted"}:
            state.total_ms = generation.ms_since_start(time.perf_counter())
        saved = self.save(generation)
        generation.sent.set()
        unsaved = None
        if not saved:
            unsaved = (
                f"This answer could not be saved: {generation.unsaved}. Duet keeps it in memory "
                "and saves it as soon as the database can be written again (until the server "
                "stops)."
            )
            self.unsaved[generation.message_id] = generation
            self._schedule_retry()
        ended = AnswerEnded(state.status, state.error, unsaved)
        generation.publish(ended, generation.ms_since_start(time.perf_counter()))
        generation.subscribers.clear()
        self.running.pop(generation.message_id, None)
        self.ended[generation.message_id] = generation
        loop = asyncio.get_running_loop()
        loop.call_later(REPLAY_SECONDS, self._forget, generation.message_id)

    def _forget(self, message_id: int) -> None:
        # An answer not saved yet stays readable from memory (`get`) until it is.
        if message_id not in self.unsaved:
            self.ended.pop(message_id, None)

    def _schedule_retry(self) -> None:
        if self._retrying is None:
            loop = asyncio.get_running_loop()
            self._retrying = loop.call_later(SAVE_RETRY_SECONDS, self._retry_and_reschedule)

    def _retry_and_reschedule(self) -> None:
        self._retrying = None
        self.retry_unsaved()
        if self.unsaved:
            self._schedule_retry()

    def retry_unsaved(self) -> None:
        """Try again to save every ended answer whose save failed."""
        for message_id, generation in list(self.unsaved.items()):
            if self.save(generation):
                del self.unsaved[message_id]
                self._forget_later(message_id)

    def _forget_later(self, message_id: int) -> None:
        asyncio.get_running_loop().call_later(REPLAY_SECONDS, self._forget, message_id)
