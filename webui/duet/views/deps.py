"""What views get injected: the app's parts live on `app.state`, set by `create_app`.

These are `async def` on purpose: FastAPI runs plain `def` dependencies in a worker thread, and
the SQLite connection is used from the event loop only.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from duet.auth.actors import ANONYMOUS, LOCAL, Actor, may
from duet.auth.sessions import COOKIE, session_of
from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.generation import Generations
from duet.settings import Settings
from duet.store import conversations, messages
from duet.store.conversations import Conversation
from duet.store.messages import Message
from duet.views.errors import NotAllowed, UserError, not_found


async def get_db(request: Request) -> sqlite3.Connection:
    return request.app.state.db  # type: ignore[no-any-return]


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_engines(request: Request) -> Mapping[EngineName, Engine]:
    return request.app.state.engines  # type: ignore[no-any-return]


async def get_generations(request: Request) -> Generations:
    return request.app.state.generations  # type: ignore[no-any-return]


# Where `StampReceipt` puts perf_counter() of the moment the app received a request.
RECEIVED_KEY = "duet.received"


class StampReceipt:
    """Stamp every HTTP request with perf_counter() as the app receives it, before routing,
    dependencies and body parsing: Duet's own time for a request counts from there."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[RECEIVED_KEY] = time.perf_counter()
        await self.app(scope, receive, send)


def received_at(request: Request) -> float:
    """When the app received this request (see `StampReceipt`): the views that start answers
    count Duet's own time to the engine request from here."""
    stamped = request.scope.get(RECEIVED_KEY)
    return stamped if isinstance(stamped, float) else time.perf_counter()


async def current_actor(request: Request) -> Actor:
    """Who is asking. In local mode, the local user; in accounts mode, the user of the
    request's session cookie, or no one. Kept on `request.state.actor` for the page templates
    (the navigation shows what the actor may open)."""
    actor = actor_of(request)
    request.state.actor = actor
    return actor


def actor_of(request: Request) -> Actor:
    settings: Settings = request.app.state.settings
    if settings.mode == "local":
        return LOCAL
    token = request.cookies.get(COOKIE)
    if not token:
        return ANONYMOUS
    found = session_of(request.app.state.db, token, settings)
    if found is None:
        return ANONYMOUS
    user = found.user
    return Actor(
        user_id=user.id,
        name=user.name,
        role=user.role,
        session_id=found.session.id,
        must_change_password=user.must_change_password,
    )


CurrentActor = Annotated[Actor, Depends(current_actor)]


async def member(request: Request, actor: CurrentActor) -> int:
    """The id of the signed-in, approved user asking; anyone else is sent where they can go on
    (signing in, waiting for approval, changing a reset password)."""
    if not actor.signed_in:
        raise NotAllowed(401, "/signin", "Sign in to use Duet.")
    if actor.role == "pending":
        raise NotAllowed(403, "/waiting", "Your account is waiting for an admin's approval.")
    if actor.must_change_password:
        raise NotAllowed(403, "/account/password", "Choose a new password to go on.")
    assert actor.user_id is not None
    return actor.user_id


async def admin(actor: CurrentActor, user_id: Annotated[int, Depends(member)]) -> Actor:
    """The actor, if they may administer this instance; else 403."""
    if not may(actor, "administer"):
        raise UserError(403, "Only an admin can do that.")
    return actor


# What views declare in their signatures.
Db = Annotated[sqlite3.Connection, Depends(get_db)]
UserId = Annotated[int, Depends(member)]
Admin = Annotated[Actor, Depends(admin)]
# Every router of pages for members has this: no route of theirs is reached without it.
MEMBERS_ONLY = [Depends(member)]
Engines = Annotated[Mapping[EngineName, Engine], Depends(get_engines)]
Running = Annotated[Generations, Depends(get_generations)]
AppSettings = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True, slots=True)
class AnswerContext:
    """What a view that starts an answer (send, regenerate, edit and resend, compare) works
    with: the member asking, the app's parts, and when Duet received the request.

    One dependency in place of six: FastAPI resolves every declared dependency on every request,
    one after the other, and these requests are on their way to an engine (their time to the
    engine request is measured from `received`)."""

    user_id: int
    db: sqlite3.Connection
    settings: Settings
    engines: Mapping[EngineName, Engine]
    generations: Generations
    received: float


async def answer_context(request: Request, user_id: UserId) -> AnswerContext:
    state = request.app.state
    return AnswerContext(
        user_id=user_id,
        db=state.db,
        settings=state.settings,
        engines=state.engines,
        generations=state.generations,
        received=received_at(request),
    )


AnswerContextDep = Annotated[AnswerContext, Depends(answer_context)]


def engine_labels(engines: Mapping[EngineName, Engine]) -> dict[str, str]:
    """Each engine's name as the pages show it, by the name it has in forms and the store."""
    return {name: engine.label for name, engine in engines.items()}


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=headers
    )


def owned_conversation(db: sqlite3.Connection, user_id: int, conversation_id: int) -> Conversation:
    conversation = conversations.get_conversation(db, user_id, conversation_id)
    if conversation is None:
        raise not_found("That conversation")
    return conversation


def owned_message(db: sqlite3.Connection, user_id: int, message_id: int) -> Message:
    message = messages.get_message(db, message_id)
    if message is None or messages.message_owner(db, message_id) != user_id:
        raise not_found("That message")
    return message
