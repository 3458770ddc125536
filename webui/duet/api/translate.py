"""OpenAI's chat completions in and out of Duet's engine interface, as pure functions.

In: a checked request body (`schema.ChatCompletionRequest`) becomes the `ChatRequest` every
adapter takes. Out: the adapters' typed events (`duet.engines.events`) become OpenAI's streamed
chunks or one whole completion. Nothing here knows an engine's wire format: one translation
serves every engine, and an Ollama model is answered through Ollama's native adapter, whose
events carry its thinking and token counts like any other's.

Reasoning is returned as vLLM returns it, under `reasoning`, and also under `reasoning_content`,
the name vLLM used before (vLLM PR #27752) and which older clients still read.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from duet.api.schema import ChatCompletionRequest, Message
from duet.engines.base import ChatMessage, ChatRequest, Role, Sampling
from duet.engines.events import (
    AnswerDelta,
    Done,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
    tool_calls,
)
from duet.sampling import DEFAULT_MAX_TOKENS, recommended_sampling

# finish_reason values OpenAI's clients know; an engine's other words for "it ended" read "stop".
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


class Unsupported(ValueError):
    """A request Duet understands but cannot serve yet; `param` is the field it is about."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def chat_message(message: Message) -> ChatMessage:
    calls = tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        for call in message.tool_calls or ()
    )
    return ChatMessage(
        role=ROLES[message.role],
        content=message.text,
        reasoning=message.reasoning or message.reasoning_content,
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
    )


def sampling(body: ChatCompletionRequest) -> Sampling:
    """The request's sampling; what it leaves out is Qwen3's recommendation for its mode."""
    recommended = recommended_sampling(body.thinking)
    top_k = recommended.top_k if body.top_k is None else max(body.top_k, 0)
    return Sampling(
        temperature=recommended.temperature if body.temperature is None else body.temperature,
        top_p=recommended.top_p if body.top_p is None else body.top_p,
        top_k=top_k,
        max_tokens=body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
        min_p=recommended.min_p if body.min_p is None else body.min_p,
        seed=body.seed,
        stop=body.stop_sequences,
    )


def tools(body: ChatCompletionRequest) -> tuple[dict[str, Any], ...]:
    """The functions the model may call. The engines decide for themselves whether to call one
    (OpenAI's `auto`); `none` is honoured by offering none, and forcing a call (`required`, or
    a named function) is refused rather than quietly left to the model."""
    if body.tool_choice == "none" or not body.tools:
        return ()
    if body.tool_choice not in (None, "auto"):
        raise Unsupported(
            "tool_choice may be auto or none here: the engines choose whether to call a tool.",
            "tool_choice",
        )
    return tuple(tool.model_dump(exclude_none=True) for tool in body.tools)


def chat_request(body: ChatCompletionRequest, model: str) -> ChatRequest:
    """The engine request for `body`, asking for `model` (the engine's own name for it)."""
    return ChatRequest(
        messages=tuple(chat_message(m) for m in body.messages),
        thinking=body.thinking,
        sampling=sampling(body),
        model=model,
        tools=tools(body),
    )


def finish_reason(done: Done | None, called: bool = False) -> str:
    """OpenAI's word for how the answer ended: an answer that called a tool ends for its
    result (`tool_calls`), whatever word the engine used."""
    if called:
        return "tool_calls"
    reason = done.finish_reason if done is not None else None
    return reason if reason in FINISH_REASONS else "stop"


def usage_body(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass(frozen=True, slots=True)
class Head:
    """What every chunk of one completion repeats."""

    model: str  # the /v1 name the client asked for
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))


def chunk(head: Head, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def delta(event: ReasoningDelta | AnswerDelta) -> dict[str, Any]:
    if isinstance(event, ReasoningDelta):
        return {"reasoning": event.text, "reasoning_content": event.text}
    return {"content": event.text}


def error_body(message: str) -> dict[str, Any]:
    """An engine's failure after the answer began, as the last chunk of its stream."""
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


DONE_LINE = sse("[DONE]")


@dataclass(slots=True)
class Answer:
    """One completion folded from its events, for the whole-answer response and the books."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCallDelta] = field(default_factory=list)
    usage: Usage | None = None
    done: Done | None = None
    error: StreamError | None = None
    first_text_at: float | None = None

    def fold(self, event: StreamEvent) -> None:
        text = isinstance(event, ReasoningDelta | AnswerDelta | ToolCallDelta)
        if text and self.first_text_at is None:
            self.first_text_at = event.at
        if isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, AnswerDelta):
            self.content.append(event.text)
        elif isinstance(event, ToolCallDelta):
            if event.id is None and all(c.index != event.index for c in self.calls):
                # A call must have an id for its result to answer; an engine that gives none
                # gets one here, on the call's first piece.
                event = dataclasses.replace(event, id="call_" + secrets.token_hex(12))
            self.calls.append(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Done):
            self.done = event
        elif isinstance(event, StreamError):
            self.error = event

    def stream_bytes(self, head: Head, event: StreamEvent, include_usage: bool) -> bytes:
        """Fold `event` in, and return what the stream sends for it (maybe nothing)."""
        self.fold(event)
        if isinstance(event, ReasoningDelta | AnswerDelta):
            return sse(chunk(head, delta(event))) if event.text else b""
        if isinstance(event, ToolCallDelta):
            return sse(chunk(head, {"tool_calls": [call_delta(self.calls[-1])]}))
        if isinstance(event, StreamError):
            return sse(error_body(event.message)) + DONE_LINE
        if isinstance(event, Done):
            ending = sse(chunk(head, {}, finish_reason(event, bool(self.calls))))
            usage = usage_body(self.usage)
            if include_usage and usage is not None:
                ending += sse({**chunk(head, {}), "choices": [], "usage": usage})
            return ending + DONE_LINE
        return b""

    def completion(self, head: Head) -> dict[str, Any]:
        content = "".join(self.content)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.calls:
            message["content"] = content or None
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in tool_calls(self.calls)
            ]
        if self.reasoning:
            reasoning = "".join(self.reasoning)
            message.update(reasoning=reasoning, reasoning_content=reasoning)
        body: dict[str, Any] = {
            "id": head.id,
            "object": "chat.completion",
            "created": head.created,
            "model": head.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(self.done, bool(self.calls)),
                }
            ],
        }
        usage = usage_body(self.usage)
        if usage is not None:
            body["usage"] = usage
        return body


def call_delta(piece: ToolCallDelta) -> dict[str, Any]:
    """A piece of a tool call as OpenAI streams it: the first with the call's id, type and
    function name, each with the next part of the arguments."""
    function: dict[str, Any] = {"arguments": piece.arguments}
    if piece.name:
        function["name"] = piece.name
    entry: dict[str, Any] = {"index": piece.index, "function": function}
    if piece.id:
        entry.update(id=piece.id, type="function")
    return entry


def first_chunk(head: Head) -> bytes:
    """The role, first, as OpenAI's streams begin."""
    return sse(chunk(head, {"role": "assistant", "content": ""}))
