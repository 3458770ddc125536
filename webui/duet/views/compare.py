"""The compare page: one prompt to several engines, a column and an event stream per answer.

Each column's stream is its own request on its own generation: the page opens one EventSource
per column, and nothing on the server advances two answers in one loop. When a column's stream
ends, the page posts the `performance.now()` arrival times it recorded, and gets the column back
rendered with both hops' numbers and the timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from duet.compare import AnswerSlot, CompareRuns
from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.metrics.answers import ArrivalsError, answer_metrics, parse_browser_arrivals
from duet.metrics.timeline import build_timeline, scale_for
from duet.sampling import sampling_values
from duet.sse import (
    HEARTBEAT_SECONDS,
    EventStream,
    EventStreamResponse,
    format_comment,
    format_event,
)
from duet.store import runs
from duet.store.conversations import title_from_text
from duet.store.runs import MODES, CompareAnswer, CompareRun, Mode
from duet.turns import TurnOptions
from duet.views.deps import (
    MEMBERS_ONLY,
    AnswerContextDep,
    Db,
    Engines,
    UserId,
    engine_labels,
    render,
)
from duet.views.errors import UserError, not_found
from duet.views.forms import (
    parse_checkbox,
    parse_content,
    parse_sampling,
    read_form,
    text_field,
)
from duet.views.params import AnswerId, parse_last_event_id

router = APIRouter(dependencies=MEMBERS_ONLY)


# The engines a new compare starts with ticked: the two this project is about.
DEFAULT_ENGINES: tuple[EngineName, ...] = ("vllm", "ollama")
# How long a posted browser measurement waits for the answer's server side to be recorded.
RECORD_WAIT_SECONDS = 5.0


async def get_compare_runs(request: Request) -> CompareRuns:
    return request.app.state.compare_runs  # type: ignore[no-any-return]


Compares = Annotated[CompareRuns, Depends(get_compare_runs)]


def answer_view(
    answer: CompareAnswer, labels: Mapping[str, str], scale_ms: float | None
) -> dict[str, Any]:
    """What one column's template needs: the answer, its numbers and its timeline."""
    view: dict[str, Any] = {
        "answer": answer,
        "label": labels.get(answer.engine, answer.engine),
        "metrics": None,
        "numbers": None,
        "timeline": None,
    }
    if answer.finished:
        measured = answer_metrics(answer)
        view["metrics"] = measured
        view["numbers"] = measured.as_dict()
        burst_gap_s = measured.hops.collapsed_gap_s if measured.hops else None
        view["timeline"] = build_timeline(answer, scale_ms, burst_gap_s)
    return view


def run_view(run: CompareRun, labels: Mapping[str, str]) -> dict[str, Any]:
    scale = scale_for(run.answers)
    return {
        "run": run,
        "columns": [answer_view(answer, labels, scale) for answer in run.answers],
    }


def owned_answer(db: sqlite3.Connection, user_id: int, answer_id: int) -> CompareAnswer:
    answer = runs.get_answer(db, user_id, answer_id)
    if answer is None:
        raise not_found("That compare answer")
    return answer


def parse_engines(form: Any, engines: Mapping[EngineName, Engine]) -> list[Engine]:
    chosen = [value for value in form.getlist("engines") if isinstance(value, str)]
    unknown = [name for name in chosen if name not in engines]
    if unknown:
        choices = ", ".join(engines) or "none are configured"
        raise UserError(422, f"Unknown engine {unknown[0]!r}; choose from: {choices}.")
    picked = [engine for name, engine in engines.items() if name in chosen]
    if not picked:
        raise UserError(422, "Tick at least one engine to compare.")
    return picked


def parse_mode(form: Any) -> Mode:
    raw = text_field(form, "mode")
    for mode in MODES:
        if raw == mode:
            return mode
    raise UserError(422, f"Mode must be one of {', '.join(MODES)} (got {raw!r}).")


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, engines: Engines) -> HTMLResponse:
    thinking = False
    return render(
        request,
        "compare.html",
        {
            "engines": engines,
            "default_engines": DEFAULT_ENGINES,
            "composer": {"thinking": thinking, "system_prompt": "", **sampling_values(thinking)},
        },
    )


@router.post("/compare", response_class=HTMLResponse)
async def start_compare(
    request: Request, context: AnswerContextDep, compares: Compares
) -> HTMLResponse:
    user_id, settings, engines = context.user_id, context.settings, context.engines
    form = await read_form(request)
    prompt = parse_content(form, settings)
    chosen = parse_engines(form, engines)
    mode = parse_mode(form)
    system_prompt = text_field(form, "system_prompt")
    if len(system_prompt) > settings.max_message_chars:
        raise UserError(422, "The system prompt is longer than DUET_MAX_MESSAGE_CHARS allows.")
    options = TurnOptions(
        engine=chosen[0].name,
        thinking=parse_checkbox(form, "thinking"),
        sampling=parse_sampling(form),
        system_prompt=system_prompt,
    )
    run = compares.start(user_id, prompt, mode, chosen, options, context.received)
    await compares.wait_sent(run.id)
    return render(
        request,
        "_compare_run.html",
        run_view(run, engine_labels(engines)),
        headers={"HX-Push-Url": f"/runs/{run.id}"},
    )


async def write_answer_events(
    stream: EventStream,
    db: sqlite3.Connection,
    user_id: int,
    slot: AnswerSlot | None,
    answer: CompareAnswer,
    after_seq: int,
) -> None:
    if slot is not None:
        # A queued answer of a sequential run waits here for its turn.
        while not slot.ready.is_set():
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await slot.ready.wait()
            except TimeoutError:
                stream.write(format_comment("queued"))
    generation = slot.generation if slot is not None else None
    if generation is None:
        # Ended before this page connected, or a while ago: the stored outcome is all there is.
        fresh = runs.get_answer(db, user_id, answer.id) or answer
        stream.write(format_event("end", {"status": fresh.status, "error": fresh.error}))
        return
    stream.write(format_event("start", {"started_ms": slot.started_ms}))
    await stream.follow(generation, after_seq)


@router.get("/compare/answers/{answer_id}/stream")
async def answer_stream(
    answer_id: AnswerId, request: Request, db: Db, user_id: UserId, compares: Compares
) -> EventStreamResponse:
    """One column's events. First `start` (`started_ms`: when this answer's engine request went
    out, in ms after the run reached the server), then the generation's events as in the chat."""
    answer = owned_answer(db, user_id, answer_id)
    after_seq = parse_last_event_id(request.headers.get("Last-Event-ID"))
    slot = compares.slot(answer_id)

    async def produce(stream: EventStream) -> None:
        await write_answer_events(stream, db, user_id, slot, answer, after_seq)

    return EventStreamResponse(produce)


def column(
    request: Request, db: sqlite3.Connection, user_id: int, answer: CompareAnswer, labels: Any
) -> HTMLResponse:
    run = runs.get_run(db, user_id, answer.run_id)
    assert run is not None
    view = answer_view(answer, labels, scale_for(run.answers))
    return render(request, "_compare_answer.html", {"run": run, "view": view})


@router.get("/compare/answers/{answer_id}", response_class=HTMLResponse)
async def answer_fragment(
    answer_id: AnswerId, request: Request, db: Db, user_id: UserId, engines: Engines
) -> HTMLResponse:
    answer = owned_answer(db, user_id, answer_id)
    return column(request, db, user_id, answer, engine_labels(engines))


@router.post("/compare/answers/{answer_id}/browser", response_class=HTMLResponse)
async def post_browser_arrivals(
    answer_id: AnswerId,
    request: Request,
    db: Db,
    user_id: UserId,
    engines: Engines,
    compares: Compares,
) -> HTMLResponse:
    """The page's arrival times for one answer: a JSON body `{"arrivals": [[ms, chunk, kind,
    chars], ...]}`, ms since the page's start of this answer. The first measurement is kept."""
    answer = owned_answer(db, user_id, answer_id)
    try:
        body = json.loads(await request.body())
    except ValueError as error:
        raise UserError(422, f"The body must be JSON: {error}") from None
    except RecursionError:
        raise UserError(422, "The body is JSON nested too deeply to read.") from None
    if not isinstance(body, dict):
        raise UserError(422, 'The body must be a JSON object: {"arrivals": [...]}.')
    try:
        arrivals = parse_browser_arrivals(body.get("arrivals"))
    except ArrivalsError as error:
        raise UserError(422, f"Bad arrival times: {error}") from None
    slot = compares.slot(answer_id)
    if not answer.finished and slot is not None:
        # The page saw the stream end; the run copies the server's side a moment later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.recorded.wait(), RECORD_WAIT_SECONDS)
        answer = owned_answer(db, user_id, answer_id)
    if not answer.finished:
        raise UserError(409, "This answer is still streaming: post its times when it has ended.")
    if answer.browser_arrivals is None:
        runs.save_browser_arrivals(db, answer_id, arrivals)
        answer = owned_answer(db, user_id, answer_id)
    return column(request, db, user_id, answer, engine_labels(engines))


@router.post("/compare/answers/{answer_id}/stop")
async def stop_answer(answer_id: AnswerId, db: Db, user_id: UserId, compares: Compares) -> Response:
    """Stop one column (the others go on). Its stream then ends as any answer's does."""
    owned_answer(db, user_id, answer_id)
    await compares.stop(answer_id)
    return Response(status_code=204)


@router.post("/compare/answers/{answer_id}/continue")
async def continue_in_chat(
    answer_id: AnswerId, request: Request, db: Db, user_id: UserId, engines: Engines
) -> Response:
    """Open the answer in the chat: a conversation of the run's prompt and this answer, made
    now (or the one made by an earlier click, if it still exists), to go on from there."""
    answer = owned_answer(db, user_id, answer_id)
    if not answer.finished:
        raise UserError(409, "This answer is still streaming: continue it once it has ended.")
    run = runs.get_run(db, user_id, answer.run_id)
    assert run is not None
    label = engine_labels(engines).get(answer.engine, answer.engine)
    title = f"{title_from_text(run.prompt)} · {label}"
    conversation_id = runs.continue_in_chat(db, user_id, answer_id, title)
    target = f"/c/{conversation_id}"
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
