"""How much of the model's context window a conversation fills, under the composer.

The figure is the last answer's prompt tokens, as its engine counted them (the system prompt,
the conversation so far and the message it answered), over the context window of the engine
and model that answered it, as that engine reports it now (`Engine.context_window`). The
line is loaded after the page (it asks the engine, which must not slow the page down) and
again whenever an answer ends. Where the engine does not say its window, the line says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from duet.engines.base import ContextWindow
from duet.store import answer_versions
from duet.views.deps import MEMBERS_ONLY, Db, Engines, UserId, owned_conversation, render
from duet.views.params import ConversationId

router = APIRouter(dependencies=MEMBERS_ONLY)

# From this share of the window on, the line warns: the next turns may not fit.
NEAR_FULL = 0.8


@dataclass(frozen=True, slots=True)
class ContextUse:
    prompt_tokens: int
    engine_label: str
    model: str
    window: ContextWindow

    @property
    def share(self) -> float | None:
        """The share of the window the prompt filled, or None where the window is not known."""
        return None if not self.window.tokens else self.prompt_tokens / self.window.tokens

    @property
    def near_full(self) -> bool:
        return self.share is not None and self.share >= NEAR_FULL


@router.get("/conversations/{conversation_id}/context", response_class=HTMLResponse)
async def context_use(
    conversation_id: ConversationId, request: Request, db: Db, user_id: UserId, engines: Engines
) -> HTMLResponse:
    conversation = owned_conversation(db, user_id, conversation_id)
    # The conversation as it goes on: of several answers to a question, the one shown.
    history = answer_versions.shown_path(db, conversation_id)
    last = next(
        (m for m in reversed(history) if m.role == "assistant" and m.prompt_tokens is not None),
        None,
    )
    use = None
    if last is not None and last.prompt_tokens is not None:
        engine = engines.get(last.engine) if last.engine else None
        if engine is None:
            window = ContextWindow(None, f"the engine {last.engine} is no longer configured")
            label = last.engine or "the engine"
        else:
            window = await engine.context_window(last.model)
            label = engine.label
        use = ContextUse(last.prompt_tokens, label, last.model or "", window)
    return render(request, "_context_use.html", {"conversation": conversation, "use": use})
