"""The typed stream every engine adapter yields.

An adapter turns one engine's wire format (vLLM's OpenAI SSE, Ollama's NDJSON, Ollama's OpenAI
SSE) into these frozen values, so nothing past `duet.engines` knows any wire format. Each event
carries `at`, the server's monotonic clock (`time.perf_counter()`, seconds) at the moment the
bytes that produced it were read from the socket: metrics are computed from these stamps, never
from wall-clock time.

One upstream chunk can produce several events (a chunk holding both reasoning and answer text);
they share the same `at`. `chunk` numbers the upstream chunk, so a consumer can count chunks the
way `vllm bench serve` does (one inter-token latency per chunk, not per event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EngineName = Literal["vllm", "ollama", "ollama-openai"]


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
    """The engine ended the stream normally; `finish_reason` is its word for why (stop, length)."""

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


StreamEvent = ReasoningDelta | AnswerDelta | Usage | Done | StreamError
