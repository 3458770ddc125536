"""Ollama's native `/api/chat`: newline-delimited JSON, one object per generated piece.

Each object carries `message.thinking` and/or `message.content`; the last one has `done: true`,
`done_reason`, and Ollama's own counters and timers (`prompt_eval_count`, `eval_count`,
`*_duration` in nanoseconds), which become a `Usage` event with the timings in seconds.
Thinking is asked for with `think: true/false`; Ollama accepts it only for models whose TEMPLATE
renders `.Thinking` (see `duet.modelfile`).

Tools go out in OpenAI's function-tool schema, which is Ollama's too. Ollama finds a tool call in
the model's output (for Duet's TEMPLATE: after `<tool_call>`, see `duet.modelfile`) and sends it
whole as `message.tool_calls`, its arguments a JSON object; they become one `ToolCallDelta` per
call with the arguments as JSON text, as OpenAI's API carries them. Ollama's last line then says
`done_reason: "stop"`; its own `/v1` reports `tool_calls` for such an answer, and so does this
adapter. Arguments sent back to Ollama in an assistant turn go as the object it expects.

We speak HTTP through the shared line reader (`duet.engines.http`) rather than the official
`ollama` client: the adapter must stamp every line the moment it arrives and close the
connection the moment the user presses Stop, and the reader does both the same way for every
engine. The health check is a management call, outside every answer's path, and goes through
the official client (`ollama.AsyncClient`): one per adapter, opened on first use in the event
loop that uses it and closed with the adapter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import ollama

from duet.engines.base import ChatMessage, ChatRequest, ContextWindow, EngineHealth, OnSent
from duet.engines.events import (
    AnswerDelta,
    Done,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    ToolCallDelta,
    Usage,
)
from duet.engines.http import EngineError, HTTPEngine, post_lines
from duet.tasks import describe_exception

NANOSECONDS = 1e9
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")

# What the official client raises when a management call fails: the server's error answer;
# ConnectionError, which it raises in place of httpx's ConnectError; httpx's other transport
# errors (timeouts among them); ValueError (pydantic's) for an answer that is not Ollama's.
MANAGEMENT_ERRORS = (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError)
# The whole health check, every call in it: a badge must not wait on an engine that hangs.
HEALTH_SECONDS = 3.0


def management_failure(error: Exception) -> EngineError:
    """A failed management call in words a person can act on."""
    if isinstance(error, ollama.ResponseError):
        return EngineError(f"HTTP {error.status_code}: {error.error}", error.status_code)
    if isinstance(error, ConnectionError) and error.__context__ is not None:
        # The client's own message points at Ollama's download page; the httpx error it
        # replaced says what happened ("Connection refused").
        error = error.__context__
    return EngineError(describe_exception(error))


def loaded_model(
    model: str, running: ollama.ProcessResponse
) -> ollama.ProcessResponse.Model | None:
    """The entry of `/api/ps` for `model`, which Ollama lists under its tag."""
    names = (model, f"{model}:latest")
    return next((m for m in running.models if m.model in names), None)


def load_state(model: str, running: ollama.ProcessResponse) -> str:
    """Whether Ollama holds `model` in memory: if not, the next answer waits for it to load."""
    loaded = loaded_model(model, running)
    if loaded is None:
        return f"{model} is not loaded yet: the next answer waits while Ollama loads it"
    context = f" with a {loaded.context_length:,}-token context" if loaded.context_length else ""
    return f"{model} is loaded{context}"


def events_from_line(data: dict, at: float, index: int) -> list[StreamEvent]:
    if "error" in data:
        return [StreamError(message=str(data["error"]), at=at)]
    events: list[StreamEvent] = []
    message = data.get("message") or {}
    if message.get("thinking"):
        events.append(ReasoningDelta(text=message["thinking"], at=at, chunk=index))
    if message.get("content"):
        events.append(AnswerDelta(text=message["content"], at=at, chunk=index))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        events.append(
            ToolCallDelta(
                index=function.get("index", 0),
                id=call.get("id"),
                name=function.get("name"),
                arguments=json.dumps(function.get("arguments") or {}, ensure_ascii=False),
                at=at,
                chunk=index,
            )
        )
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


def arguments_object(arguments: str) -> object:
    """A call's arguments as Ollama takes them: the JSON object the text holds. Text that holds
    no object goes as it is, for Ollama to refuse in its own words."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed if isinstance(parsed, dict) else arguments


def message_entry(message: ChatMessage, tool_names: dict[str, str]) -> dict:
    """One message as `/api/chat` takes it; `tool_names` maps earlier calls' ids to their
    functions, for a tool result's `tool_name` (which Ollama's own /v1 fills in the same way)."""
    entry: dict = {"role": message.role, "content": message.content}
    if message.reasoning and message.role == "assistant":
        entry["thinking"] = message.reasoning
    if message.tool_calls:
        entry["tool_calls"] = [
            {"id": c.id, "function": {"name": c.name, "arguments": arguments_object(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        entry["tool_call_id"] = message.tool_call_id
        if message.tool_call_id in tool_names:
            entry["tool_name"] = tool_names[message.tool_call_id]
    return entry


def num_ctx_parameter(parameters: str | None) -> int | None:
    """The `num_ctx` a model's Modelfile sets, from `/api/show`'s parameters: one
    `name value` per line."""
    for line in (parameters or "").splitlines():
        name, _, value = line.strip().partition(" ")
        if name == "num_ctx" and value.strip().isascii() and value.strip().isdigit():
            return int(value.strip())
    return None


def trained_context(shown: ollama.ShowResponse) -> int | None:
    """The context the model was trained for: `<architecture>.context_length` in the GGUF's
    metadata, which `/api/show` gives as model_info."""
    info = shown.modelinfo or {}
    length = info.get(f"{info.get('general.architecture')}.context_length")
    return length if isinstance(length, int) else None


class OllamaManagement:
    """What both Ollama adapters (native and /v1) ask of the same server besides answers: the
    official client for management calls, and the context window in effect.

    Ollama does not report the window in an answer, and its /v1 models list has no such field,
    so both adapters read it the same way, from the native management API (Ollama v0.24.0's
    source, server/routes.go and llm/server.go):
    - `/api/ps` lists each loaded model with `context_length`: the num_ctx its runner was
      started with, capped at the trained context. That is the window in effect. A request's
      `options.num_ctx` decides it when the model loads (a different one reloads the model);
      Duet sends none, so it is the Modelfile's `num_ctx` parameter, else
      OLLAMA_CONTEXT_LENGTH, else a default by GPU memory (4096 without a GPU).
    - Before the model is loaded, `/api/show` gives the Modelfile's parameters (num_ctx, if it
      sets one) and the trained context, but not OLLAMA_CONTEXT_LENGTH or the default: then
      the window is not known, and Duet says so instead of guessing.
    A prompt longer than the window is not refused: Ollama leaves out the earliest messages
    (all but the system prompt and the last message) until it fits (server/prompt.go)."""

    base_url: str
    label: str
    model: str
    _management: ollama.AsyncClient | None = None

    @property
    def management(self) -> ollama.AsyncClient:
        """The official client, for management calls; created on first use, so it belongs to
        the event loop that uses it. `HEALTH_SECONDS` bounds each health check as a whole.
        No proxy from the environment: it goes straight to the server, as `client` does."""
        if self._management is None:
            self._management = ollama.AsyncClient(host=self.base_url, trust_env=False)
        return self._management

    @property
    def when_full(self) -> str:
        return f"{self.label} leaves out the earliest messages until the prompt fits"

    async def context_window(self, model: str | None = None) -> ContextWindow:
        name = model or self.model
        try:
            async with asyncio.timeout(HEALTH_SECONDS):
                loaded = loaded_model(name, await self.management.ps())
                if loaded is not None and loaded.context_length:
                    source = f"the num_ctx {self.label} has {name} loaded with (/api/ps)"
                    return ContextWindow(loaded.context_length, source, self.when_full)
                shown = await self.management.show(name)
        except TimeoutError:
            return ContextWindow(None, f"{self.label} did not answer within {HEALTH_SECONDS:g} s")
        except MANAGEMENT_ERRORS as error:
            reason = management_failure(error).message
            return ContextWindow(None, f"{self.label} could not be asked: {reason}")
        trained = trained_context(shown)
        num_ctx = num_ctx_parameter(shown.parameters)
        if num_ctx is not None:
            tokens = min(num_ctx, trained) if trained else num_ctx
            source = f"the num_ctx of {name}'s Modelfile; {self.label} has not loaded it yet"
            return ContextWindow(tokens, source, self.when_full)
        trained_note = f" (it was trained for {trained:,} tokens)" if trained else ""
        return ContextWindow(
            None,
            f"{self.label} says {name}'s context window only once the model is loaded: its "
            f"num_ctx then comes from OLLAMA_CONTEXT_LENGTH or a default, which Ollama's API "
            f"does not show{trained_note}",
        )

    async def aclose(self) -> None:
        management, self._management = self._management, None
        try:
            if management is not None:
                await management.close()
        finally:
            await super().aclose()  # type: ignore[misc]


class OllamaEngine(OllamaManagement, HTTPEngine):
    """Ollama's native API."""

    def payload(self, request: ChatRequest) -> dict:
        sampling = request.sampling
        tool_names = {c.id: c.name for m in request.messages for c in m.tool_calls}
        messages = [message_entry(m, tool_names) for m in request.messages]
        options = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "num_predict": sampling.max_tokens,
        }
        if sampling.seed is not None:
            options["seed"] = sampling.seed
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        payload = {
            "model": request.model or self.model,
            "messages": messages,
            "stream": True,
            "think": request.thinking,
            "options": options,
        }
        if request.tools:
            payload["tools"] = list(request.tools)
        return payload

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        index = 0
        done = False
        called = False  # a tool call came: the answer ends for its result
        try:
            lines = post_lines(
                self.client,
                self.url("/api/chat"),
                self.payload(request),
                self.label,
                on_sent=on_sent,
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
                        called = called or isinstance(event, ToolCallDelta)
                        if isinstance(event, Done) and called and event.finish_reason == "stop":
                            event = dataclasses.replace(event, finish_reason="tool_calls")
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
            async with asyncio.timeout(HEALTH_SECONDS):
                listed = await self.management.list()
                running = await self.management.ps()
        except TimeoutError:
            return self.unreachable(EngineError(f"no answer within {HEALTH_SECONDS:g} s"))
        except MANAGEMENT_ERRORS as error:
            return self.unreachable(management_failure(error))
        models = tuple(m.model for m in listed.models if m.model)
        # Ollama lists a name given without a tag under its default tag.
        served = next(
            (name for name in (self.model, f"{self.model}:latest") if name in models), None
        )
        if served is None:
            detail = f"{self.model} has not been created in Ollama"
            return EngineHealth(self.name, up=False, models=models, detail=detail)
        return EngineHealth(self.name, up=True, models=models, detail=load_state(served, running))
