"""The trash: what a delete in the sidebar leaves restorable, for DUET_TRASH_DAYS.

Deleting (`duet.views.history.delete`) moves a conversation here and answers with an Undo in
its place in the sidebar; deleting the open one goes to a new chat, which shows the Undo above
the composer (`notice`). `/trash` lists the owner's deleted conversations with Restore and
Delete forever, and empties the trash at once. Every route loads the conversation through the
owner's scoped query of the trash (`duet.store.trash`): another user's id, or one not in the
trash, is 404, and an emptying deletes only the owner's.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from duet.store import trash
from duet.store.trash import Trashed
from duet.views.deps import MEMBERS_ONLY, AppSettings, Db, UserId, owned_conversation, render
from duet.views.errors import UserError, not_found
from duet.views.forms import read_form
from duet.views.params import ConversationId

router = APIRouter(dependencies=MEMBERS_ONLY)


def trashed_conversation(
    db: sqlite3.Connection, user_id: int, conversation_id: int, days: float
) -> Trashed:
    found = trash.get_trashed(db, user_id, conversation_id, days)
    if found is None:
        raise not_found("That conversation in the trash")
    return found


@router.get("/trash", response_class=HTMLResponse)
async def trash_page(request: Request, db: Db, user_id: UserId, settings: AppSettings) -> Response:
    items = trash.list_trash(db, user_id, settings.trash_days)
    return render(request, "trash.html", {"items": items, "days": settings.trash_days})


@router.delete("/trash", response_class=HTMLResponse)
async def empty(
    request: Request,
    db: Db,
    user_id: UserId,
    settings: AppSettings,
    deleted_by: Annotated[str, Query(max_length=40, description="the newest deletion shown")],
) -> Response:
    """Empty the trash: what the page showed, up to its newest deletion (`deleted_by`); the
    trash's body comes back with what is left and how many were deleted."""
    try:
        datetime.fromisoformat(deleted_by)
    except ValueError:
        raise UserError(422, f"Bad deleted_by {deleted_by!r}: expected an ISO 8601 time.") from None
    deleted = trash.empty_trash(db, user_id, deleted_by)
    items = trash.list_trash(db, user_id, settings.trash_days)
    return render(request, "_trash_body.html", {"items": items, "emptied": deleted})


@router.post("/trash/{trashed_id}/restore", response_class=HTMLResponse)
async def restore(
    trashed_id: ConversationId, request: Request, db: Db, user_id: UserId, settings: AppSettings
) -> Response:
    """Back out of the trash. What answers depends on where the Restore was: the trash page's
    row says so and links to it; the Undo of a new chat's notice (`open`) goes to it; the
    sidebar's Undo gets the conversation's entry back."""
    item = trashed_conversation(db, user_id, trashed_id, settings.trash_days)
    form = await read_form(request)
    trash.restore(db, user_id, trashed_id)
    conversation = owned_conversation(db, user_id, trashed_id)
    if form.get("open"):
        return Response(status_code=200, headers={"HX-Redirect": f"/c/{trashed_id}"})
    if urlsplit(request.headers.get("HX-Current-URL", "")).path == "/trash":
        return render(request, "_trash_row.html", {"item": item, "restored": True})
    return render(
        request, "_conversation_item.html", {"conversation": conversation, "current_id": None}
    )


@router.delete("/trash/{trashed_id}")
async def delete_forever(
    trashed_id: ConversationId, db: Db, user_id: UserId, settings: AppSettings
) -> Response:
    trashed_conversation(db, user_id, trashed_id, settings.trash_days)
    trash.delete_forever(db, user_id, trashed_id)
    return Response(status_code=200)


@router.get("/trash/{trashed_id}/notice", response_class=HTMLResponse)
async def notice(
    trashed_id: ConversationId, request: Request, db: Db, user_id: UserId, settings: AppSettings
) -> Response:
    """The Undo a new chat shows after the conversation that was open was deleted."""
    item = trashed_conversation(db, user_id, trashed_id, settings.trash_days)
    return render(request, "_trash_notice.html", {"item": item, "days": settings.trash_days})
