"""Two tabs on one conversation: a send from a tab that has not seen the latest turns.

Another tab, window or device may have gone on with the conversation since this tab last
showed it. The composer sends the id of the last message the tab shows (`last_message_id`,
_last_message_id.html); when the conversation has moved on since, the send is refused (409)
and answered with the conversation as it is now, in place of what the tab showed, and why.
Nothing is stored, and what was typed stays in the box (a refused send does not clear it):
the model never answers from a history the person did not see.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from duet.store.messages import Message
from duet.views.deps import render
from duet.views.forms import FormData
from duet.views.params import parse_optional_id

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
