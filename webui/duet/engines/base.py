"""The one small interface every engine adapter implements.

A request goes in as a `ChatRequest` (with, optionally, `on_sent`: called when the request is on
the wire); what comes out is an async iterator of `StreamEvent`s
(see `events.py`). Stopping is closing that iterator (`aclose()`, or leaving an `async for`
early): the adapter must then close its upstream HTTP response, which is how vLLM and Ollama
learn to stop generating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from duet.engines.events import EngineName, StreamEvent, ToolCall

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    # The reasoning of an earlier assistant turn. Engines are sent it so that the chat template,
    # not Duet, decides what to drop (Qwen3 drops reasoning of turns before the last user turn).
    reasoning: str | None = None
    # An assistant turn that called tools (its content may be empty).
    tool_calls: tuple[ToolCall, ...] = ()
    # A `tool` turn: the result of the call with this id.
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    min_p: float = 0.0
    seed: int | None = None
    # Text that ends the answer where it appears (not included in it); none by default.
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    thinking: bool
    sampling: Sampling
    model: str | None = None  # None: the model the engine is configured to serve
    # Functions the model may call, in OpenAI's function-tool schema
    # ({"type": "function", "function": {"name", "description", "parameters"}}).
    tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class EngineHealth:
    engine: EngineName
    up: bool
    models: tuple[str, ...] = ()
    detail: str = ""  # for a person: why it is down, or what is known of it when up
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """How many tokens a model can hold at once, prompt and answer together, as its engine says.

    `tokens` is None when the engine does not say (or cannot be asked): the page says so rather
    than guess. `source`, for a person, is where the number came from or why there is none;
    `when_full`, what the engine does with a prompt longer than the window."""

    tokens: int | None
    source: str
    when_full: str = ""


# Called with perf_counter() the moment an engine request's last byte is on the wire: from there
# the engine's time runs (its time to first token counts from it).
OnSent = Callable[[float], None]


class Engine(Protocol):
    name: EngineName
    label: str  # shown in the UI, e.g. "vLLM" or "Ollama (/v1)"
    model: str

    def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]: ...

    async def health(self) -> EngineHealth: ...

    # The context window of `model` (None: the model the engine is configured to serve) as
    # the engine has it in effect now; a management call, outside every answer's path.
    async def context_window(self, model: str | None = None) -> ContextWindow: ...

    # Releases the adapter's HTTP client, which belongs to the event loop that opened it; the
    # adapter stays usable and opens a new client on its next request.
    async def aclose(self) -> None: ...
