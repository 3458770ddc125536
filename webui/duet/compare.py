"""Compare runs: one prompt to several engines, each answer its own server-side generation.

Every answer runs as an ordinary `Generation` (its own task, its own subscribers, its own event
stream), so no answer is ever paced by another: in concurrent mode the generations simply run at
the same time; in sequential mode a small orchestrator task starts the next one when the
previous one has ended. The orchestrator never touches the streams themselves.

An answer belongs to its run: its generation saves into the answer's own row (store/runs.py),
not into a conversation, so a run adds nothing to the chat. A conversation is made only when
the user continues an answer there (`runs.continue_in_chat`). Each answer is admitted under its
user's limits as a request of its own (`limits.admit`), and its request row gets the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from duet.engines.base import ChatRequest, Engine
from duet.generation import REPLAY_SECONDS, Generation, Generations
from duet.limits import OverLimit, admit, utc_now
from duet.store import api_usage, runs
from duet.store.api_usage import FROM_ANSWER, Outcome
from duet.store.messages import AnswerRecord
from duet.store.runs import CompareRun, Mode
from duet.tasks import describe_exception, start_task
from duet.turns import REQUEST_SENT_WAIT_SECONDS, TurnOptions, chat_messages

log = logging.getLogger(__name__)

# How long shutdown, and deleting a run, wait for the orchestrators to record their answers.
SHUTDOWN_WAIT_SECONDS = 10.0
# A compare answer's generation has no conversation (`Generations.streaming_in` is the chat's).
NO_CONVERSATION = 0


class AnswerGenerations(Generations):
    """The generations of compare answers, each keyed by its compare answer's id (not a message
    id: these are a separate set from the chat's). A save writes the answer's own row, and once
    the answer has ended, the outcome of the request it was admitted as."""

    def __init__(self, db: sqlite3.Connection) -> None:
        super().__init__(db)
        # answer id -> its request's row in api_requests, `streaming` until the answer ends
        self.requests: dict[int, int] = {}

    def write(self, answer_id: int, record: AnswerRecord) -> None:
        runs.save_answer(self.db, answer_id, record)
        status = FROM_ANSWER.get(record.status)
        request_id = self.requests.get(answer_id)
        if status is not None and request_id is not None:
            outcome = Outcome(
                status,
                record.prompt_tokens,
                record.completion_tokens,
                record.ttft_ms,
                record.total_ms,
            )
            api_usage.finish_request(self.db, request_id, outcome)
            del self.requests[answer_id]


@dataclass(eq=False)
class AnswerSlot:
    """One column of a running compare: its engine, and its generation once started."""

    answer_id: int
    engine: Engine
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
    user_id: int
    prompt: str
    mode: Mode
    options: TurnOptions
    received_at: float  # perf_counter() when the run's request reached the server
    slots: list[AnswerSlot]
    task: asyncio.Task[None] | None = None


class CompareRuns:
    """The compare runs of one app that still have an answer queued or streaming."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.generations = AnswerGenerations(db)
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
        """Store the run and start answering."""
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
        pairs = zip(run.answers, engines, strict=True)
        slots = [AnswerSlot(answer.id, engine) for answer, engine in pairs]
        running = RunningCompare(run.id, user_id, prompt, mode, options, received_at, slots)
        self.running[run.id] = running
        self.slots.update((slot.answer_id, slot) for slot in slots)
        running.task = start_task(self.run(running), name=f"compare {run.id}")
        return run

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
        """Run one answer to its end, saved into its row as it goes."""
        if slot.cancelled or self.closing:
            status = "stopped" if slot.cancelled else "interrupted"
            reason = "Stopped before it started." if slot.cancelled else "The server shut down."
            runs.finish_unstarted(self.db, slot.answer_id, status, reason)
            slot.ready.set()
            slot.recorded.set()
            return
        try:
            generation = await self.start_generation(running, slot)
        except Exception as error:
            if isinstance(error, OverLimit):  # the user's limit, not a failure: said as it is
                reason = f"Did not start: {error.message}"
            else:
                log.exception("compare answer %s did not start", slot.answer_id)
                reason = f"Did not start: {describe_exception(error)}"
            admitted = self.generations.requests.pop(slot.answer_id, None)
            if admitted is not None:
                api_usage.finish_request(self.db, admitted, Outcome("failed"))
            runs.finish_unstarted(self.db, slot.answer_id, "failed", reason)
            slot.ready.set()
            slot.recorded.set()
            return
        slot.generation = generation
        slot.started_ms = round((generation.started - running.received_at) * 1000, 3)
        runs.mark_streaming(self.db, slot.answer_id, slot.started_ms)
        slot.ready.set()
        assert generation.task is not None
        await asyncio.wait({generation.task})
        # The generation saved the answer as it ended (or keeps it for a later save).
        slot.recorded.set()

    async def start_generation(self, running: RunningCompare, slot: AnswerSlot) -> Generation:
        """Admit the answer under its user's limits (`OverLimit` if over one) and start it;
        returns once its engine request is on the wire, as `turns.start_answer` does."""
        engine = slot.engine
        request_id = admit(
            self.db, running.user_id, key_id=None, engine=engine.name, model=engine.model,
            now=utc_now(),
        )  # fmt: skip
        self.generations.requests[slot.answer_id] = request_id
        options = running.options
        request = ChatRequest(
            messages=chat_messages([], options.system_prompt, running.prompt),
            thinking=options.thinking,
            sampling=options.sampling,
        )
        generation = self.generations.start(
            slot.answer_id, NO_CONVERSATION, engine, request, running.received_at
        )
        await generation.wait_sent(REQUEST_SENT_WAIT_SECONDS)
        return generation

    async def stop(self, answer_id: int) -> bool:
        """Stop a streaming answer, or keep a queued one from starting. False if not running."""
        slot = self.slots.get(answer_id)
        if slot is None:
            return False
        slot.cancelled = True
        if slot.generation is not None:
            await self.generations.stop(slot.answer_id)
        return True

    async def stop_run(self, run_id: int) -> None:
        """Stop every answer of a run still queued or streaming, and wait until the run has
        recorded them (as `stopped`). Nothing happens for a run that has ended."""
        running = self.running.get(run_id)
        if running is None:
            return
        # Every answer first, so a sequential run does not start its next one in the meantime.
        for slot in running.slots:
            slot.cancelled = True
        for slot in running.slots:
            await self.stop(slot.answer_id)
        if running.task is not None:
            await asyncio.wait({running.task}, timeout=SHUTDOWN_WAIT_SECONDS)

    async def shutdown(self) -> None:
        """Stop starting answers, let the generations save themselves as interrupted, and wait
        for every run to record its answers."""
        self.closing = True
        await self.generations.shutdown()
        tasks = [running.task for running in self.running.values() if running.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_SECONDS)
        runs.mark_interrupted(self.db)
