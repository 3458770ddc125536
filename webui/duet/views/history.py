"""The sidebar: list and search conversations, rename, delete (to the trash), export."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from duet.exports.conversation import conversation_json, conversation_markdown, export_filename
from duet.store import conversations, messages, trash
from duet.store.answer_versions import version_marks
from duet.views.deps import (
    MEMBERS_ONLY,
    Db,
    Engines,
    Running,
    UserId,
    owned_conversation,
    render,
)
from duet.views.downloads import download
from duet.views.errors import UserError
from duet.views.forms import read_form
from duet.views.params import ConversationId

router = APIRouter(dependencies=MEMBERS_ONLY)


SEARCH_MAX_CHARS = 200


@router.get("/conversations", response_class=HTMLResponse)
async def conversation_list(
    request: Request, db: Db, user_id: UserId, q: str = "", current: int | None = None
) -> HTMLResponse:
    """The sidebar list; with `q`, the conversations whose messages match it."""
    query = q.strip()
    if len(query) > SEARCH_MAX_CHARS:
        raise UserError(422, f"Search text is limited to {SEARCH_MAX_CHARS} characters.")
    context = {"current_id": current, "query": query}
    if query:
        context["hits"] = conversations.search_conversations(db, user_id, query)
    else:
        context["conversations"] = conversations.list_conversations(db, user_id)
    return render(request, "_conversation_list.html", context)


@router.get("/conversations/{conversation_id}/rename", response_class=HTMLResponse)
async def rename_form(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    conversation = owned_conversation(db, user_id, conversation_id)
    return render(request, "_rename.html", {"conversation": conversation})


@router.get("/conversations/{conversation_id}/item", response_class=HTMLResponse)
async def conversation_item(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    conversation = owned_conversation(db, user_id, conversation_id)
    current_id = conversation_id if is_open_in_page(request, conversation_id) else None
    context = {"conversation": conversation, "current_id": current_id}
    return render(request, "_conversation_item.html", context)


@router.post("/conversations/{conversation_id}/rename", response_class=HTMLResponse)
async def rename(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    owned_conversation(db, user_id, conversation_id)
    title = str((await read_form(request)).get("title") or "").strip()
    if not title:
        raise UserError(422, "A conversation needs a title.")
    if len(title) > conversations.TITLE_MAX_CHARS:
        raise UserError(422, f"Titles are limited to {conversations.TITLE_MAX_CHARS} characters.")
    conversations.rename_conversation(db, user_id, conversation_id, title)
    conversation = owned_conversation(db, user_id, conversation_id)
    # The page the rename came from shows this conversation: its heading and title follow.
    is_open = is_open_in_page(request, conversation_id)
    context = {"conversation": conversation, "current_id": conversation_id if is_open else None}
    return render(request, "_renamed.html", context)


def is_open_in_page(request: Request, conversation_id: int) -> bool:
    """Whether the page that sent this htmx request shows this conversation."""
    page = urlsplit(request.headers.get("HX-Current-URL", "")).path
    return page == f"/c/{conversation_id}"


@router.delete("/conversations/{conversation_id}")
async def delete(
    conversation_id: ConversationId,
    request: Request,
    db: Db,
    user_id: UserId,
    generations: Running,
) -> Response:
    """Move a conversation to the trash, where it can be restored (`duet.views.trash`). An
    answer still streaming in it is stopped first, as a delete means the conversation is done
    with; its text so far is kept with it."""
    conversation = owned_conversation(db, user_id, conversation_id)
    running = generations.streaming_in(conversation_id)
    if running is not None and running.message_id is not None:
        await generations.stop(running.message_id)
    trash.move_to_trash(db, user_id, conversation_id)
    # Deleting the open conversation leaves nothing to show: go to a new chat, which offers
    # the Undo.
    if is_open_in_page(request, conversation_id):
        return Response(status_code=200, headers={"HX-Redirect": f"/?trashed={conversation_id}"})
    return render(request, "_trashed_item.html", {"conversation": conversation})


@router.get("/conversations/{conversation_id}/export.{extension}")
async def export(
    conversation_id: ConversationId,
    extension: str,
    db: Db,
    user_id: UserId,
    engines: Engines,
) -> Response:
    conversation = owned_conversation(db, user_id, conversation_id)
    history = messages.list_messages(db, conversation_id)
    marks = version_marks(db, conversation_id, history)
    if extension == "json":
        body, media_type = conversation_json(conversation, history, marks), "application/json"
    elif extension == "md":
        labels = {name: engine.label for name, engine in engines.items()}
        markdown = conversation_markdown(conversation, history, labels, marks)
        body, media_type = markdown, "text/markdown"
    else:
        raise UserError(404, f"Export as .{extension} is not offered; use .md or .json.")
    filename = export_filename(conversation, extension)
    return download(body, f"{media_type}; charset=utf-8", filename)
