"""Ollama's native `/api/chat`: newline-delimited JSON, one object per generated piece.

Each object carries `message.thinking` and/or `message.content`; the last one has `done: true`,
`done_reason`, and Ollama's own counters and timers (`prompt_eval_count`, `eval_count`,
`*_duration` in nanoseconds), which become a `Usage` event with the timings in seconds.
Thinking is asked for with `think: true/false`; Ollama accepts it only for models whose TEMPLATE
renders `.Thinking` (see `duet.modelfile`).

We speak HTTP through the shared line reader (`duet.engines.http`) rather than the official
`ollama` client: the adapter must stamp every line the moment it arrives and close the
connection the moment the user presses Stop, and the reader does both the same way for every
engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from duet.engines.base import ChatRequest, EngineHealth
from duet.engines.events import (
    AnswerDelta,
    Done,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    Usage,
)
from duet.engines.http import EngineError, HTTPEngine, post_lines

NANOSECONDS = 1e9
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def events_from_line(data: dict, at: float, index: int) -> list[StreamEvent]:
    if "error" in data:
        return [StreamError(message=str(data["error"]), at=at)]
    events: list[StreamEvent] = []
    message = data.get("message") or {}
    if message.get("thinking"):
        events.append(ReasoningDelta(text=message["thinking"], at=at, chunk=index))
    if message.get("content"):
        events.append(AnswerDelta(text=message["content"], at=at, chunk=index))
    if data.get("done"):
        timings = {name: data[name] / NANOSECONDS for name in DURATIONS if name in data}
        events.append(
            Usage(
                prompt_tokens=data.get("prompt_eval_count"),
                completion_tokens=data.get("eval_count"),
                at=at,
                engine_timings=timings,
            )
        )
        events.append(Done(finish_reason=data.get("done_reason"), at=at))
    return events


class OllamaEngine(HTTPEngine):
    """Ollama's native API."""

    def payload(self, request: ChatRequest) -> dict:
        sampling = request.sampling
        messages = []
        for message in request.messages:
            entry = {"role": message.role, "content": message.content}
            if message.reasoning and message.role == "assistant":
                entry["thinking"] = message.reasoning
            messages.append(entry)
        options = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "num_predict": sampling.max_tokens,
        }
        if sampling.seed is not None:
            options["seed"] = sampling.seed
        return {
            "model": request.model or self.model,
            "messages": messages,
            "stream": True,
            "think": request.thinking,
            "options": options,
        }

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        index = 0
        done = False
        try:
            lines = post_lines(
                self.client, self.url("/api/chat"), self.payload(request), self.label
            )
            async with aclosing(lines):  # close the response as soon as our consumer stops
                async for at, line in lines:
                    if done:
                        continue
                    try:
                        data = json.loads(line)
                    except ValueError:
                        yield StreamError(
                            f"{self.label} sent a line that is not JSON: {line!r}", at
                        )
                        return
                    for event in events_from_line(data, at, index):
                        yield event
                        if isinstance(event, StreamError):
                            return
                        # Read on to the end of the body (the final line is the last one):
                        # a response closed unread loses its connection, and the next request
                        # would pay for a new one before it could be sent.
                        done = done or isinstance(event, Done)
                    index += 1
        except EngineError as error:
            if not done:
                yield StreamError(error.message, time.perf_counter(), error.status)
            return
        if done:
            return
        yield StreamError(
            f"{self.label} ended the stream without a final message", time.perf_counter()
        )

    async def health(self) -> EngineHealth:
        try:
            version = (await self.get_json("/api/version"))["version"]
            tags = await self.get_json("/api/tags")
            models = tuple(m["name"] for m in tags.get("models") or ())
        except (EngineError, ValueError, KeyError, AttributeError, TypeError) as error:
            return self.unreachable(error)
        served = self.model in models or f"{self.model}:latest" in models
        detail = f"Ollama {version}" if served else f"{self.model} has not been created in Ollama"
        return EngineHealth(self.name, up=served, models=models, detail=detail)
