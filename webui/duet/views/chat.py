"""The chat page: a conversation, sending, the answer's event stream, stop, regenerate, edit."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.generation import Generations
from duet.sampling import SAMPLING_FIELDS, sampling_values
from duet.sse import SSE_HEADERS, EventStream, EventStreamResponse, format_event
from duet.store import answer_versions, conversations, messages
from duet.store.conversations import Conversation
from duet.store.db import transaction
from duet.store.messages import Message
from duet.turns import chat_messages, start_answer, store_answer_row
from duet.views import tabs
from duet.views.deps import (
    MEMBERS_ONLY,
    AnswerContextDep,
    Db,
    Engines,
    Running,
    UserId,
    engine_labels,
    owned_conversation,
    owned_message,
    render,
)
from duet.views.errors import UserError
from duet.views.forms import parse_content, parse_options, read_form
from duet.views.params import ConversationId, MessageId, parse_last_event_id, parse_optional_id

router = APIRouter(dependencies=MEMBERS_ONLY)


def refuse_while_streaming(generations: Generations, conversation_id: int) -> None:
    if generations.streaming_in(conversation_id) is not None:
        raise UserError(409, "An answer is still streaming in this conversation: stop it first.")


def composer_values(
    engines: Mapping[EngineName, Engine], history: list[Message], system_prompt: str
) -> dict[str, Any]:
    """What the composer starts with: the settings of the conversation's last answer if they are
    still usable, else the first engine in thinking mode with Qwen3's recommended sampling."""
    last = next((m for m in reversed(history) if m.role == "assistant"), None)
    engine = last.engine if last is not None and last.engine in engines else next(iter(engines), "")
    thinking = last.thinking if last is not None and last.thinking is not None else True
    values: dict[str, Any] = {
        "engine": engine,
        "thinking": thinking,
        "system_prompt": system_prompt,
        **sampling_values(thinking),
    }
    if last is not None:
        values.update({k: v for k, v in last.parameters.items() if k in SAMPLING_FIELDS})
    return values


def as_known(generations: Generations, message: Message) -> Message:
    """The message, or what Duet holds in memory of it when its last save failed."""
    generation = generations.get(message.id)
    if generation is None or generation.unsaved is None:
        return message
    return messages.with_record(message, generation.state.record())


def unsaved_reasons(generations: Generations, history: list[Message]) -> dict[int, str]:
    """Why each answer held only in memory could not be saved, by message id."""
    reasons = {}
    for message in history:
        generation = generations.get(message.id)
        if generation is not None and generation.unsaved is not None:
            reasons[message.id] = generation.unsaved
    return reasons


def conversation_context(
    db: sqlite3.Connection,
    generations: Generations,
    engines: Mapping[EngineName, Engine],
    conversation: Conversation,
) -> dict[str, Any]:
    every = [as_known(generations, m) for m in messages.list_messages(db, conversation.id)]
    # The page shows the conversation's path (each question and the answer it goes on from),
    # with every version of an answer around it (_message_or_versions.html).
    arranged = answer_versions.load(db, conversation.id, every)
    history = list(arranged.path)
    return {
        "conversation": conversation,
        "messages": history,
        "answers": arranged.by_chosen(),
        "last_message_id": history[-1].id if history else None,
        "last_user_message_id": next((m.id for m in reversed(history) if m.role == "user"), None),
        "streaming": generations.streaming_in(conversation.id) is not None,
        "unsaved": unsaved_reasons(generations, every),
        "engine_labels": engine_labels(engines),
    }


def page(
    request: Request,
    db: sqlite3.Connection,
    user_id: int,
    generations: Generations,
    engines: Mapping[EngineName, Engine],
    conversation: Conversation | None,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "conversations": conversations.list_conversations(db, user_id),
        "engines": engines,
        "engine_labels": engine_labels(engines),
        "conversation": None,
        "messages": [],
    }
    if conversation is not None:
        context.update(conversation_context(db, generations, engines, conversation))
    context["composer"] = composer_values(
        engines, context["messages"], conversation.system_prompt if conversation else ""
    )
    return render(request, "chat.html", context)


@router.get("/", response_class=HTMLResponse)
async def new_chat(
    request: Request, db: Db, user_id: UserId, generations: Running, engines: Engines
) -> HTMLResponse:
    return page(request, db, user_id, generations, engines, None)


@router.get("/c/{conversation_id}", response_class=HTMLResponse)
async def conversation_page(
    conversation_id: ConversationId,
    request: Request,
    db: Db,
    user_id: UserId,
    generations: Running,
    engines: Engines,
) -> HTMLResponse:
    conversation = owned_conversation(db, user_id, conversation_id)
    return page(request, db, user_id, generations, engines, conversation)


@router.post("/chat/send", response_class=HTMLResponse)
async def send(request: Request, context: AnswerContextDep) -> HTMLResponse:
    db, user_id, settings = context.db, context.user_id, context.settings
    engines, generations = context.engines, context.generations
    form = await read_form(request)
    # Everything is checked before anything is written.
    content = parse_content(form, settings)
    options = parse_options(form, settings, engines)
    conversation_id = parse_optional_id(form, "conversation_id", "conversation id")
    existing: Conversation | None = None
    history: list[Message] = []
    if conversation_id is not None:
        existing = owned_conversation(db, user_id, conversation_id)
        history = answer_versions.shown_path(db, existing.id)
        if tabs.is_behind(form, history):
            shown = conversation_context(db, generations, engines, existing)
            return tabs.missed_turns(request, shown)
        refuse_while_streaming(generations, existing.id)
    engine = engines[options.engine]
    with transaction(db):
        conversation = existing or conversations.create_conversation(
            db, user_id, conversations.title_from_text(content), options.system_prompt
        )
        user_message = messages.add_user_message(db, conversation.id, content)
        answer = store_answer_row(db, conversation.id, engine, options)
    to_engine = chat_messages(history, options.system_prompt, new_message=content)
    await start_answer(generations, answer, engine, options, to_engine, context.received)
    headers = {} if existing else {"HX-Push-Url": f"/c/{conversation.id}"}
    return render(
        request,
        "_turn.html",
        {
            "conversation": conversation,
            "new_conversation": existing is None,
            "turn": [user_message, answer],
            "answers": answer_versions.arrange([user_message, answer], {}, {}).by_chosen(),
            "engine_labels": engine_labels(engines),
            "last_message_id": answer.id,
            "last_user_message_id": user_message.id,
            "streaming": True,
        },
        headers=headers,
    )


@router.get("/composer/sampling", response_class=HTMLResponse)
async def composer_sampling(request: Request) -> HTMLResponse:
    """The sampling fields after the thinking box changed: fields still at the old mode's
    recommended value move to the new mode's; values the user typed stay."""
    thinking = request.query_params.get("thinking") in {"on", "true", "1"}
    old, new = sampling_values(not thinking), sampling_values(thinking)
    values: dict[str, Any] = {}
    for name in SAMPLING_FIELDS:
        typed = request.query_params.get(name, "")
        values[name] = new[name] if is_same_number(typed, old[name]) else typed
    return render(request, "_sampling.html", {"composer": values})


def is_same_number(typed: str, value: float) -> bool:
    try:
        return float(typed) == float(value)
    except ValueError:
        return False


@router.get("/messages/{message_id}", response_class=HTMLResponse)
async def message_fragment(
    message_id: MessageId,
    request: Request,
    db: Db,
    user_id: UserId,
    generations: Running,
    engines: Engines,
) -> HTMLResponse:
    message = as_known(generations, owned_message(db, user_id, message_id))
    conversation = owned_conversation(db, user_id, message.conversation_id)
    context = conversation_context(db, generations, engines, conversation)
    return render(request, "_message.html", {**context, "message": message})


@router.get("/messages/{message_id}/stream")
async def message_stream(
    message_id: MessageId, request: Request, db: Db, user_id: UserId, generations: Running
) -> Response:
    """The answer's events as server-sent events, one per engine event, written by the answer's
    task as it reads them (`EventStream.follow`).

    Each event's data carries `t`, when the server read it from the engine, and `s`, when it was
    written to this response, both in ms since the engine request was on the wire. The `sent`
    event (t = 0) carries `after_receipt_ms`: Duet's own time from receiving the user's request
    to that moment (docs/metrics.md, "Where the server's clock starts"), and `received_at`, the
    raw perf_counter() of that receipt, for benchmarks on the same machine.
    """
    message = owned_message(db, user_id, message_id)
    generation = generations.get(message_id)
    after_seq = parse_last_event_id(request.headers.get("Last-Event-ID"))

    if generation is None:
        # Finished before this subscriber came: the page fetches the stored answer.
        ended = format_event("end", {"status": message.status, "error": message.error})
        return Response(ended, media_type="text/event-stream", headers=SSE_HEADERS)

    async def follow(stream: EventStream) -> None:
        await stream.follow(generation, after_seq)

    return EventStreamResponse(follow)


@router.post("/messages/{message_id}/stop", response_class=HTMLResponse)
async def stop(
    message_id: MessageId,
    request: Request,
    db: Db,
    user_id: UserId,
    generations: Running,
    engines: Engines,
) -> HTMLResponse:
    owned_message(db, user_id, message_id)
    await generations.stop(message_id)
    # Whether it was still running or had just finished, answer with the stored message.
    return await message_fragment(message_id, request, db, user_id, generations, engines)


def messages_list(
    request: Request,
    db: sqlite3.Connection,
    generations: Generations,
    engines: Mapping[EngineName, Engine],
    conversation: Conversation,
) -> HTMLResponse:
    context = conversation_context(db, generations, engines, conversation)
    return render(
        request,
        "_messages.html",
        context,
        headers={"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"},
    )


@router.post("/messages/{message_id}/regenerate", response_class=HTMLResponse)
async def regenerate(
    message_id: MessageId, request: Request, context: AnswerContextDep
) -> HTMLResponse:
    """Answer the conversation's last question again, using the composer's settings: the new
    answer is its newest version, shown and gone on from; the earlier ones are kept."""
    db, user_id, settings = context.db, context.user_id, context.settings
    engines, generations = context.engines, context.generations
    message = owned_message(db, user_id, message_id)
    options = parse_options(await read_form(request), settings, engines)
    conversation = owned_conversation(db, user_id, message.conversation_id)
    refuse_while_streaming(generations, conversation.id)
    arranged = answer_versions.load(db, conversation.id)
    turn = arranged.last_turn
    if message.role != "assistant" or turn is None or turn.version_of(message.id) is None:
        raise UserError(409, "Only the last answer of a conversation can be regenerated.")
    engine = engines[options.engine]
    with transaction(db):
        answer = store_answer_row(db, conversation.id, engine, options)
        answer_versions.choose(db, turn.question.id, answer.id)
    to_engine = chat_messages(arranged.asked_from(turn), options.system_prompt)
    await start_answer(generations, answer, engine, options, to_engine, context.received)
    return messages_list(request, db, generations, engines, conversation)


@router.get("/messages/{message_id}/edit", response_class=HTMLResponse)
async def edit_form(
    message_id: MessageId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    message = owned_message(db, user_id, message_id)
    if message.role != "user":
        raise UserError(409, "Only your own messages can be edited.")
    return render(request, "_edit_message.html", {"message": message})


@router.post("/messages/{message_id}/edit")
async def edit_and_resend(
    message_id: MessageId, request: Request, context: AnswerContextDep
) -> Response:
    """Resend a message with new text. The last message is changed in place (its answer is
    replaced); an earlier one is resent in a copy of the conversation up to it, so nothing
    written later is lost."""
    db, user_id, settings = context.db, context.user_id, context.settings
    engines, generations = context.engines, context.generations
    message = owned_message(db, user_id, message_id)
    if message.role != "user":
        raise UserError(409, "Only your own messages can be edited.")
    form = await read_form(request)
    content = parse_content(form, settings)
    options = parse_options(form, settings, engines)
    conversation = owned_conversation(db, user_id, message.conversation_id)
    refuse_while_streaming(generations, conversation.id)
    history = answer_versions.shown_path(db, conversation.id)
    is_last_user_message = not any(m.role == "user" and m.id > message.id for m in history)
    earlier = [m for m in history if m.id < message.id]
    engine = engines[options.engine]
    with transaction(db):
        if is_last_user_message:
            messages.update_user_message(db, message.id, content)
            messages.delete_messages_from(db, conversation.id, message.id + 1)
            target_id = conversation.id
        else:
            fork = conversations.fork_conversation(db, user_id, conversation.id, message.id)
            answer_versions.copy_to_fork(db, conversation.id, fork.id, message.id)
            messages.add_user_message(db, fork.id, content)
            target_id = fork.id
        answer = store_answer_row(db, target_id, engine, options)
    to_engine = chat_messages(earlier, options.system_prompt, new_message=content)
    await start_answer(generations, answer, engine, options, to_engine, context.received)
    if is_last_user_message:
        return messages_list(request, db, generations, engines, conversation)
    return Response(status_code=200, headers={"HX-Redirect": f"/c/{target_id}"})
