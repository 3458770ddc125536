"""Compare runs: one prompt to several engines, each answer its own server-side generation.

Every answer runs as an ordinary `Generation` (its own task, its own subscribers, its own event
stream), so no answer is ever paced by another: in concurrent mode the generations simply run at
the same time; in sequential mode a small orchestrator task starts the next one when the
previous one has ended. The orchestrator never touches the streams themselves.

Each answer is also an assistant message in a conversation of its own, so a compare answer can
be continued in the chat, and is found by the chat's search.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from duet.engines.base import Engine
from duet.generation import REPLAY_SECONDS, Generation, Generations
from duet.limits import OverLimit
from duet.store import conversations, messages, runs
from duet.store.db import transaction
from duet.store.runs import CompareRun, Mode
from duet.tasks import describe_exception, start_task
from duet.turns import (
    REQUEST_SENT_WAIT_SECONDS,
    TurnOptions,
    chat_messages,
    start_answer,
    store_answer_row,
)

log = logging.getLogger(__name__)

# How long shutdown waits for the orchestrators to record their answers.
SHUTDOWN_WAIT_SECONDS = 10.0


@dataclass(eq=False)
class AnswerSlot:
    """One column of a running compare: its engine, and its generation once started."""

    answer_id: int
    engine: Engine
    conversation_id: int
    # Set when the generation has started, or when the answer ended without one.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    generation: Generation | None = None
    started_ms: float | None = None  # engine request sent, in ms after the run was received
    cancelled: bool = False
    # Set once the answer's outcome has been copied into the run (status, server arrivals).
    recorded: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class RunningCompare:
    run_id: int
    mode: Mode
    options: TurnOptions
    received_at: float  # perf_counter() when the run's request reached the server
    slots: list[AnswerSlot]
    task: asyncio.Task[None] | None = None


class CompareRuns:
    """The compare runs of one app that still have an answer queued or streaming."""

    def __init__(self, db: sqlite3.Connection, generations: Generations) -> None:
        self.db = db
        self.generations = generations
        self.running: dict[int, RunningCompare] = {}
        self.slots: dict[int, AnswerSlot] = {}
        self.closing = False

    def start(
        self,
        user_id: int,
        prompt: str,
        mode: Mode,
        engines: Sequence[Engine],
        options: TurnOptions,
        received_at: float,
    ) -> CompareRun:
        """Store the run, a conversation per answer, and start answering."""
        with transaction(self.db):
            run = runs.create_run(
                self.db,
                user_id,
                prompt=prompt,
                system_prompt=options.system_prompt,
                mode=mode,
                thinking=options.thinking,
                parameters=options.parameters(),
                engines=[(engine.name, engine.model) for engine in engines],
            )
            slots = []
            for answer, engine in zip(run.answers, engines, strict=True):
                title = f"{conversations.title_from_text(prompt)} · {engine.label} (compare)"
                conversation = conversations.create_conversation(
                    self.db, user_id, title, options.system_prompt
                )
                messages.add_user_message(self.db, conversation.id, prompt)
                runs.set_conversation(self.db, answer.id, conversation.id)
                slots.append(AnswerSlot(answer.id, engine, conversation.id))
        running = RunningCompare(run.id, mode, options, received_at, slots)
        self.running[run.id] = running
        self.slots.update((slot.answer_id, slot) for slot in slots)
        running.task = start_task(self.run(running), name=f"compare {run.id}")
        stored = runs.get_run(self.db, user_id, run.id)
        assert stored is not None
        return stored

    async def wait_sent(self, run_id: int) -> None:
        """Wait (briefly) until the run's first engine requests are on the wire: every answer's
        in concurrent mode, the first one's in sequential mode. The view calls this before
        rendering, for the reason `turns.start_answer` gives: otherwise the orchestrator could
        not even start until the page was rendered, and the rendering would count as the
        engines' time."""
        running = self.running.get(run_id)
        if running is None:
            return
        starting = running.slots if running.mode == "concurrent" else running.slots[:1]
        waits = [asyncio.ensure_future(slot.ready.wait()) for slot in starting]
        # start_answer bounds each wait for a request; this only guards against the unforeseen.
        _, pending = await asyncio.wait(waits, timeout=2 * REQUEST_SENT_WAIT_SECONDS)
        for wait in pending:
            wait.cancel()

    def slot(self, answer_id: int) -> AnswerSlot | None:
        return self.slots.get(answer_id)

    async def run(self, running: RunningCompare) -> None:
        try:
            if running.mode == "concurrent":
                await asyncio.gather(*(self.answer(running, slot) for slot in running.slots))
            else:
                for slot in running.slots:
                    await self.answer(running, slot)
        finally:
            self.running.pop(running.run_id, None)
            for slot in running.slots:
                slot.ready.set()
                slot.recorded.set()
            # A page that connects just after an answer ended still gets its events replayed
            # (and can still post its own arrival times) for a while; then the slots go.
            loop = asyncio.get_running_loop()
            loop.call_later(REPLAY_SECONDS, self.forget, [s.answer_id for s in running.slots])

    def forget(self, answer_ids: list[int]) -> None:
        for answer_id in answer_ids:
            self.slots.pop(answer_id, None)

    async def answer(self, running: RunningCompare, slot: AnswerSlot) -> None:
        """Run one answer to its end and copy its outcome into the run."""
        if slot.cancelled or self.closing:
            status = "stopped" if slot.cancelled else "interrupted"
            reason = "Stopped before it started." if slot.cancelled else "The server shut down."
            runs.finish_without_message(self.db, slot.answer_id, status, reason)
            slot.ready.set()
            slot.recorded.set()
            return
        try:
            options = replace(running.options, engine=slot.engine.name)
            history = messages.list_messages(self.db, slot.conversation_id)
            with transaction(self.db):
                answer = store_answer_row(self.db, slot.conversation_id, slot.engine, options)
            # Returns once the engine request is on the wire: `generation.started` is then the
            # moment it went out, which the browser needs as this answer's start.
            generation = await start_answer(
                self.generations,
                answer,
                slot.engine,
                options,
                chat_messages(history, options.system_prompt),
                running.received_at,
            )
        except Exception as error:
            if isinstance(error, OverLimit):  # the user's limit, not a failure: said as it is
                reason = f"Did not start: {error.message}"
            else:
                log.exception("compare answer %s did not start", slot.answer_id)
                reason = f"Did not start: {describe_exception(error)}"
            runs.finish_without_message(self.db, slot.answer_id, "failed", reason)
            slot.ready.set()
            slot.recorded.set()
            return
        slot.generation = generation
        slot.started_ms = round((generation.started - running.received_at) * 1000, 3)
        runs.mark_streaming(self.db, slot.answer_id, generation.message_id, slot.started_ms)
        slot.ready.set()
        assert generation.task is not None
        await asyncio.wait({generation.task})
        try:
            message = messages.get_message(self.db, generation.message_id)
            if message is None:  # its conversation was deleted while it streamed
                runs.finish_without_message(
                    self.db, slot.answer_id, "interrupted", "Its conversation was deleted."
                )
            else:
                # What the answer's task knows, even if its own save failed.
                message = messages.with_record(message, generation.state.record())
                runs.finish_from_message(self.db, slot.answer_id, message)
        except sqlite3.Error as error:
            log.error("compare answer %s could not be recorded: %s", slot.answer_id, error)
        finally:
            slot.recorded.set()

    async def stop(self, answer_id: int) -> bool:
        """Stop a streaming answer, or keep a queued one from starting. False if not running."""
        slot = self.slots.get(answer_id)
        if slot is None:
            return False
        slot.cancelled = True
        if slot.generation is not None:
            await self.generations.stop(slot.generation.message_id)
        return True

    async def shutdown(self) -> None:
        """Stop starting answers, let the generations save themselves as interrupted, and wait
        for every run to record its answers."""
        self.closing = True
        await self.generations.shutdown()
        tasks = [running.task for running in self.running.values() if running.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_SECONDS)
        runs.mark_interrupted(self.db)
