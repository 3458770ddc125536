"""The typed stream every engine adapter yields.

An adapter turns one engine's wire format (vLLM's OpenAI SSE, Ollama's NDJSON, Ollama's OpenAI
SSE) into these frozen values, so nothing past `duet.engines` knows any wire format. Each event
carries `at`, the server's monotonic clock (`time.perf_counter()`, seconds) at the moment the
bytes that produced it were read from the socket: metrics are computed from these stamps, never
from wall-clock time.

One upstream chunk can produce several events (a chunk holding both reasoning and answer text);
they share the same `at`. `chunk` numbers the upstream chunk, so a consumer can count chunks the
way `vllm bench serve` does (one inter-token latency per chunk, not per event).

A tool call arrives as `ToolCallDelta`s: vLLM streams one in pieces (the first names the
function and carries the call's id, later ones add to its arguments), Ollama sends each call
whole in one delta. `tool_calls()` assembles them into `ToolCall`s, the same way for every engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

# A route's name, as the registry of routes (duet.engines.routes) gives it: "vllm", "ollama", ...
EngineName = str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's thinking (vLLM `reasoning`/`reasoning_content`, Ollama `thinking`)."""

    text: str
    at: float
    chunk: int
    kind: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    """A piece of the answer the user reads."""

    text: str
    at: float
    chunk: int
    kind: Literal["answer"] = "answer"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: which function, with what arguments (a JSON object, as text, the
    way OpenAI's API carries it), under the id a tool result answers it by."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call number `index` of this answer. `id` and `name` come with its first
    piece (None after); `arguments` is the next part of its arguments' JSON text."""

    index: int
    id: str | None
    name: str | None
    arguments: str
    at: float
    chunk: int
    kind: Literal["tool_call"] = "tool_call"


def tool_calls(deltas: Iterable[ToolCallDelta]) -> list[ToolCall]:
    """The calls that these pieces make up, in index order."""
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for delta in deltas:
        if delta.id:
            ids[delta.index] = delta.id
        if delta.name:
            names[delta.index] = delta.name
        arguments[delta.index] = arguments.get(delta.index, "") + delta.arguments
    return [
        ToolCall(id=ids.get(i, ""), name=names.get(i, ""), arguments=arguments[i])
        for i in sorted(arguments)
    ]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts and the engine's own timings, from the last chunk(s) of a stream.

    vLLM reports counts only (`usage` with `stream_options.include_usage`); Ollama's native API
    adds its own durations, kept here in seconds so both read the same way.
    """

    prompt_tokens: int | None
    completion_tokens: int | None
    at: float
    engine_timings: dict[str, float] = field(default_factory=dict)
    kind: Literal["usage"] = "usage"


@dataclass(frozen=True, slots=True)
class Done:
    """The engine ended the stream normally; `finish_reason` is its word for why (stop, length,
    tool_calls: the answer is a tool call, and the conversation goes on with its result)."""

    finish_reason: str | None
    at: float
    kind: Literal["done"] = "done"


@dataclass(frozen=True, slots=True)
class StreamError:
    """The request failed or the stream broke. `message` is meant for a person to read."""

    message: str
    at: float
    status: int | None = None
    kind: Literal["error"] = "error"


StreamEvent = ReasoningDelta | AnswerDelta | ToolCallDelta | Usage | Done | StreamError
