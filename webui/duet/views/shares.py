"""Sharing: an owner gives signed-in teammates a read-only link to a conversation or compare
run, and can revoke it.

Only members reach these routes (MEMBERS_ONLY): a link works for teammates who are signed in,
never for anyone who merely holds it. Making, listing and revoking links go through the owner's
scoped queries, so another user's id answers 404 as it does everywhere. The shared page loads
the object through its owner's query too, and renders it with the same templates and Markdown
pipeline as the owner's pages, with `read_only` set: no composer, no buttons, no stream.
"""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from duet.store import conversations, runs, shares, users
from duet.store.shares import ShareKind
from duet.views.chat import conversation_context
from duet.views.compare import run_view
from duet.views.deps import (
    MEMBERS_ONLY,
    Db,
    Engines,
    Running,
    UserId,
    engine_labels,
    owned_conversation,
    render,
)
from duet.views.errors import UserError, not_found
from duet.views.params import ConversationId, RunId, ShareId
from duet.views.runs import owned_run

router = APIRouter(dependencies=MEMBERS_ONLY)

# The route that makes a link to each kind of object, and its id parameter: the control's
# Share button posts there.
SHARE_ROUTES: dict[ShareKind, tuple[str, str]] = {
    "conversation": ("share_conversation", "conversation_id"),
    "run": ("share_run", "run_id"),
}


def no_such_link() -> UserError:
    # One answer for a revoked link and one that never was: trying tokens tells nothing.
    return UserError(404, "This link was revoked or never existed.")


def share_control(
    request: Request, db: sqlite3.Connection, user_id: int, kind: ShareKind, object_id: int
) -> HTMLResponse:
    """The owner's Share control for one object: its live links with a Revoke button each, or
    a Share button."""
    route, id_name = SHARE_ROUTES[kind]
    context = {
        "shares": shares.live_shares_of(db, user_id, kind, object_id),
        "share_path": request.app.url_path_for(route, **{id_name: str(object_id)}),
    }
    return render(request, "_share.html", context)


def share_once(
    request: Request, db: sqlite3.Connection, user_id: int, kind: ShareKind, object_id: int
) -> HTMLResponse:
    """Share an object the caller owns: one live link per object, made on the first click."""
    if not shares.live_shares_of(db, user_id, kind, object_id):
        shares.create_share(db, user_id, kind, object_id)
    return share_control(request, db, user_id, kind, object_id)


@router.get("/conversations/{conversation_id}/shares", response_class=HTMLResponse)
async def conversation_shares(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    owned_conversation(db, user_id, conversation_id)
    return share_control(request, db, user_id, "conversation", conversation_id)


@router.post(
    "/conversations/{conversation_id}/share",
    response_class=HTMLResponse,
    name="share_conversation",
)
async def share_conversation(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    owned_conversation(db, user_id, conversation_id)
    return share_once(request, db, user_id, "conversation", conversation_id)


@router.get("/runs/{run_id}/shares", response_class=HTMLResponse)
async def run_shares(run_id: RunId, request: Request, db: Db, user_id: UserId) -> HTMLResponse:
    owned_run(db, user_id, run_id)
    return share_control(request, db, user_id, "run", run_id)


@router.post("/runs/{run_id}/share", response_class=HTMLResponse, name="share_run")
async def share_run(run_id: RunId, request: Request, db: Db, user_id: UserId) -> HTMLResponse:
    owned_run(db, user_id, run_id)
    return share_once(request, db, user_id, "run", run_id)


@router.post("/shares/{share_id}/revoke", response_class=HTMLResponse)
async def revoke(share_id: ShareId, request: Request, db: Db, user_id: UserId) -> HTMLResponse:
    revoked = shares.revoke_share(db, user_id, share_id)
    if revoked is None:
        raise not_found("That share")
    return share_control(request, db, user_id, revoked.kind, revoked.object_id)


@router.get("/shared/{token}", response_class=HTMLResponse, name="shared_page")
async def shared_page(
    token: str,
    request: Request,
    db: Db,
    generations: Running,
    engines: Engines,
) -> HTMLResponse:
    """The read-only page a link shows, to any member, while its owner has not revoked it."""
    share = shares.find_live_share(db, token)
    if share is None:
        raise no_such_link()
    if share.kind == "conversation":
        conversation = conversations.get_conversation(db, share.user_id, share.object_id)
        if conversation is None:
            raise not_found("What this link showed")
        context = conversation_context(db, generations, engines, conversation)
        template = "shared_conversation.html"
    else:
        run = runs.get_run(db, share.user_id, share.object_id)
        if run is None:
            raise not_found("What this link showed")
        context = run_view(run, engine_labels(engines))
        template = "shared_run.html"
    context["read_only"] = True
    context["owner"] = users.user_name(db, share.user_id) or "a teammate"
    # Not kept by the browser: once the link is revoked, going back does not show it again.
    return render(request, template, context, headers={"Cache-Control": "no-store"})
