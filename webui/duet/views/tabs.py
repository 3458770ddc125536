"""Two tabs on one conversation: a tab that has not seen the latest turns.

Another tab, window or device may have gone on with the conversation since this tab last
showed it. The composer sends the id of the last message the tab shows (`last_message_id`,
_last_message_id.html); when the conversation has moved on since, the send is refused (409)
and answered with the conversation as it is now, in place of what the tab showed, and why.
Nothing is stored, and what was typed stays in the box (a refused send does not clear it):
the model never answers from a history the person did not see.

Before it comes to that, the page asks every few seconds whether the conversation has moved on
(`news`), and says so with a button that shows the new turns. (Tabs of one browser learn of
each other's turns at once, through chat.js's BroadcastChannel; this reaches the others.)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from duet.store import answer_versions
from duet.store.messages import Message
from duet.views.deps import MEMBERS_ONLY, Db, UserId, owned_conversation, render
from duet.views.forms import FormData
from duet.views.params import ConversationId, parse_optional_id

router = APIRouter(dependencies=MEMBERS_ONLY)

SHOWN_FIELD = "last_message_id"


def is_behind(form: FormData, history: list[Message]) -> bool:
    """Whether the tab that sent `form` shows less than the conversation's `history` (as the
    page would show it now). A form without the field, from a client other than the page, is
    taken as up to date."""
    if SHOWN_FIELD not in form:
        return False
    shown = parse_optional_id(form, SHOWN_FIELD, "last message id")
    return shown != (history[-1].id if history else None)


def missed_turns(request: Request, shown: dict[str, Any]) -> HTMLResponse:
    """The refusal: the conversation's messages as the page shows them (`shown`, from
    `duet.views.chat.conversation_context`) in place of the tab's, and the reason above the
    composer."""
    return render(
        request,
        "_missed_turns.html",
        shown,
        status_code=409,
        headers={"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"},
    )


@router.get("/conversations/{conversation_id}/news", response_class=HTMLResponse)
async def news(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId
) -> HTMLResponse:
    """Polled by the chat page with the last message it shows: nothing while that is still the
    conversation's last, else a notice with a button that shows the new turns."""
    conversation = owned_conversation(db, user_id, conversation_id)
    if not is_behind(request.query_params, answer_versions.shown_path(db, conversation_id)):
        return HTMLResponse("")
    return render(request, "_conversation_news.html", {"conversation": conversation})
