"""An answer's versions on the chat page: show another version (the 2/3 switcher), go on from one
answer of a side-by-side pair, and answer the last question again with another engine.

Each route answers with the turn's fragment (_answers.html), swapped in place of the one on
the page. Only the last turn changes: an earlier turn's later turns were answered from the
answer it shows, so switching it would show one history and have answered from another
(docs/ui.md, "Versions of an answer").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.generation import Generations
from duet.sampling import SAMPLING_FIELDS, recommended_sampling
from duet.store import answer_versions
from duet.store.answer_versions import Arranged, Turn
from duet.store.conversations import Conversation
from duet.store.db import transaction
from duet.store.messages import Message
from duet.turns import TurnOptions, chat_messages, start_answer, store_answer_row
from duet.views.chat import conversation_context, refuse_while_streaming
from duet.views.deps import (
    MEMBERS_ONLY,
    AnswerContextDep,
    Db,
    Engines,
    Running,
    UserId,
    owned_conversation,
    owned_message,
    render,
)
from duet.views.errors import UserError
from duet.views.forms import parse_engine, read_form
from duet.views.params import MessageId

router = APIRouter(dependencies=MEMBERS_ONLY)


def last_turn_holding(
    db: sqlite3.Connection, generations: Generations, message: Message, doing: str
) -> tuple[Arranged, Turn]:
    """The conversation arranged, and its last turn, which must hold `message` (an answer);
    else a 409 that says what cannot be done (`doing`) and why."""
    if message.role != "assistant":
        raise UserError(409, f"Only an answer can be {doing}; that is your own message.")
    refuse_while_streaming(generations, message.conversation_id)
    arranged = answer_versions.load(db, message.conversation_id)
    turn = arranged.last_turn
    if turn is None or turn.version_of(message.id) is None:
        raise UserError(
            409,
            f"Only the last answer can be {doing}: the turns after this one were answered "
            "from the answer it shows.",
        )
    return arranged, turn


def turn_fragment(
    request: Request,
    db: sqlite3.Connection,
    generations: Generations,
    engines: Mapping[EngineName, Engine],
    conversation: Conversation,
) -> HTMLResponse:
    """The conversation's last turn as the page shows it, for #answers-{question id}."""
    context = conversation_context(db, generations, engines, conversation)
    last = {"message": context["messages"][-1], "swapped_alone": True}
    return render(request, "_answers.html", {**context, **last})


@router.post("/messages/{message_id}/choose", response_class=HTMLResponse)
async def choose(
    message_id: MessageId,
    request: Request,
    db: Db,
    user_id: UserId,
    generations: Running,
    engines: Engines,
) -> HTMLResponse:
    """Go on from this answer of the last turn: the page shows its version (a reload too), and
    the next turn is answered from it."""
    message = owned_message(db, user_id, message_id)
    conversation = owned_conversation(db, user_id, message.conversation_id)
    _, turn = last_turn_holding(db, generations, message, "switched to")
    with transaction(db):
        answer_versions.choose(db, turn.question.id, message.id)
    fragment = turn_fragment(request, db, generations, engines, conversation)
    # The page's figures of the conversation so far (the context line) follow the answer shown.
    fragment.headers["HX-Trigger"] = "duet:answer-chosen"
    return fragment


def options_of(answer: Message, engine: EngineName, system_prompt: str) -> TurnOptions:
    """The settings `answer` was asked with, for `engine`: the same question with the same
    mode and sampling, so the two answers differ by their engine only. A setting the answer
    has no record of is Qwen3's recommended value for its mode."""
    thinking = answer.thinking if answer.thinking is not None else True
    stored = {k: v for k, v in answer.parameters.items() if k in SAMPLING_FIELDS}
    sampling = replace(recommended_sampling(thinking), **stored)
    return TurnOptions(
        engine=engine, thinking=thinking, sampling=sampling, system_prompt=system_prompt
    )


@router.post("/messages/{message_id}/again", response_class=HTMLResponse)
async def answer_again(
    message_id: MessageId, request: Request, context: AnswerContextDep
) -> HTMLResponse:
    """Ask the last question again of another engine (the form's `engine`), with this answer's
    settings; the new answer is kept beside this one, and the conversation still goes on from
    the answer it went on from."""
    db, user_id = context.db, context.user_id
    engines, generations = context.engines, context.generations
    message = owned_message(db, user_id, message_id)
    conversation = owned_conversation(db, user_id, message.conversation_id)
    arranged, turn = last_turn_holding(db, generations, message, "answered again")
    name = parse_engine(await read_form(request), engines)
    version = turn.version_of(message.id)
    if version is None or turn.shown is None or version.ids != turn.shown.ids:
        raise UserError(409, "Only the version shown can be answered again: show it first.")
    if name in version.engines:
        label = engines[name].label
        raise UserError(409, f"{label} has answered this already; pick another engine.")
    engine = engines[name]
    options = options_of(version.first, name, conversation.system_prompt)
    with transaction(db):
        answer = store_answer_row(db, conversation.id, engine, options)
        answer_versions.add_beside(db, answer.id, version.first.id)
    to_engine = chat_messages(arranged.asked_from(turn), options.system_prompt)
    await start_answer(generations, answer, engine, options, to_engine, context.received)
    return turn_fragment(request, db, generations, engines, conversation)
