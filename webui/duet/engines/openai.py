"""The OpenAI chat-completions streaming format, as vLLM, Ollama's `/v1` and `transformers serve`
speak it.

One parser serves all three; the adapters differ only in how they ask for thinking on or off
(`OpenAICompatibleEngine.thinking_fields`). Facts the parser relies on:

- vLLM's reasoning parser puts thinking in `delta.reasoning`; versions before the rename used
  `delta.reasoning_content` (vLLM PR #27752), so both are read. Ollama's `/v1` uses `reasoning`.
- `stream_options.include_usage` makes the server send a final chunk with `usage` and no choices.
- Tool calls come as `delta.tool_calls` entries, each with the `index` of its call: vLLM's
  parser (`--tool-call-parser hermes`) sends a call's id and name first, then its arguments'
  JSON in pieces; Ollama's `/v1` sends each call whole. The finish reason is then `tool_calls`.
- The stream ends with `data: [DONE]`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

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
from duet.engines.ollama import OllamaManagement
from duet.engines.think_tags import split_think_tags


def parse_sse_line(line: str) -> dict | None:
    """The JSON object of one `data:` line; None for comments, other fields and `[DONE]`."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    return json.loads(data)


def events_from_chunk(chunk: dict, at: float, index: int) -> tuple[list[StreamEvent], str | None]:
    """The events one chunk carries, and its finish_reason if it has one."""
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        return [StreamError(message=message, at=at)], None
    events: list[StreamEvent] = []
    finish_reason = None
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
        if reasoning:
            events.append(ReasoningDelta(text=reasoning, at=at, chunk=index))
        if delta.get("content"):
            events.append(AnswerDelta(text=delta["content"], at=at, chunk=index))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            events.append(
                ToolCallDelta(
                    index=call.get("index", 0),
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                    at=at,
                    chunk=index,
                )
            )
        finish_reason = choice.get("finish_reason") or finish_reason
    usage = chunk.get("usage")
    if usage:
        events.append(
            Usage(
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                at=at,
            )
        )
    return events, finish_reason


def message_payload(message: ChatMessage) -> dict:
    payload: dict = {"role": message.role, "content": message.content}
    if message.reasoning and message.role == "assistant":
        payload["reasoning"] = message.reasoning
    if message.tool_calls:
        payload["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        payload["tool_call_id"] = message.tool_call_id
    return payload


@dataclass
class OpenAICompatibleEngine(HTTPEngine):
    """An engine reached through `/v1/chat/completions`."""

    api_key: str = ""  # sent as a Bearer token when set (vLLM's --api-key)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def thinking_fields(self, thinking: bool) -> dict:
        raise NotImplementedError

    def payload(self, request: ChatRequest) -> dict:
        sampling = request.sampling
        payload = {
            "model": request.model or self.model,
            "messages": [message_payload(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            **self.thinking_fields(request.thinking),
        }
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        if request.tools:
            payload["tools"] = list(request.tools)  # tool_choice stays "auto": the model decides
        return payload

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        finish_reason = None
        index = 0
        try:
            url = self.url("/v1/chat/completions")
            lines = post_lines(
                self.client, url, self.payload(request), self.label, self.headers, on_sent
            )
            # aclosing: when our consumer stops early, the HTTP response closes now, not at GC.
            async with aclosing(lines):
                async for at, line in lines:
                    try:
                        chunk = parse_sse_line(line)
                    except ValueError:
                        yield StreamError(
                            f"{self.label} sent a line that is not JSON: {line!r}", at
                        )
                        return
                    if chunk is None:
                        continue
                    events, reason = events_from_chunk(chunk, at, index)
                    index += 1
                    finish_reason = reason or finish_reason
                    for event in events:
                        yield event
                        if isinstance(event, StreamError):
                            return
        except EngineError as error:
            yield StreamError(error.message, time.perf_counter(), error.status)
            return
        yield Done(finish_reason=finish_reason, at=time.perf_counter())

    async def health(self) -> EngineHealth:
        try:
            listed = await self.get_json("/v1/models", headers=self.headers)
            # Ollama answers `"data": null` while it has no models yet.
            models = tuple(m["id"] for m in listed.get("data") or ())
        except (EngineError, ValueError, KeyError, AttributeError) as error:
            return self.unreachable(error)
        # Ollama lists a bare name with its default tag.
        served = self.model in models or f"{self.model}:latest" in models
        detail = "" if served else f"{self.model} is not among the served models"
        return EngineHealth(self.name, up=served, models=models, detail=detail)


class VllmEngine(OpenAICompatibleEngine):
    """vLLM's OpenAI-compatible server, started with `--reasoning-parser qwen3`."""

    def thinking_fields(self, thinking: bool) -> dict:
        # Qwen3's chat template reads enable_thinking; vLLM passes these kwargs to it.
        return {"chat_template_kwargs": {"enable_thinking": thinking}}

    def payload(self, request: ChatRequest) -> dict:
        payload = super().payload(request)
        # vLLM's extensions to the OpenAI schema; top_k -1 means "no limit" there.
        payload["top_k"] = request.sampling.top_k or -1
        payload["min_p"] = request.sampling.min_p
        return payload

    async def context_window(self, model: str | None = None) -> ContextWindow:
        # vLLM's /v1/models gives each base model's max_model_len: the most tokens, prompt and
        # answer together, one request may hold (ModelCard.max_model_len, from the engine's
        # model config in OpenAIModelRegistry.show_available_models,
        # vllm/entrypoints/openai/models/serving.py). vLLM refuses a longer prompt.
        name = model or self.model
        try:
            listed = await self.get_json("/v1/models", headers=self.headers)
            cards = [card for card in listed.get("data") or () if card.get("id") == name]
        except (EngineError, ValueError, AttributeError) as error:
            reason = error.message if isinstance(error, EngineError) else type(error).__name__
            return ContextWindow(None, f"{self.label} could not be asked: {reason}")
        if not cards:
            return ContextWindow(None, f"{self.label} does not serve {name}")
        length = cards[0].get("max_model_len")
        if not isinstance(length, int):
            return ContextWindow(None, f"{self.label}'s /v1/models gives no max_model_len")
        source = f"max_model_len of {name} in {self.label}'s /v1/models"
        return ContextWindow(length, source, f"{self.label} refuses a longer prompt")


class OllamaOpenAIEngine(OllamaManagement, OpenAICompatibleEngine):
    """Ollama's OpenAI-compatible `/v1` route: one more translation layer inside Ollama. Its
    context window is the native API's (`OllamaManagement`): the same server, the same model."""

    def thinking_fields(self, thinking: bool) -> dict:
        # Ollama maps reasoning_effort to its `think` option; "none" turns thinking off.
        return {"reasoning_effort": "medium" if thinking else "none"}


class TransformersEngine(OpenAICompatibleEngine):
    """Hugging Face Transformers' own OpenAI-compatible server, `transformers serve MODEL`
    (transformers/cli/serving/chat_completion.py). What differs from vLLM:

    - It answers 422 to a field outside OpenAI's schema besides `chat_template_kwargs`, `seed`
      and `generation_config`: no `top_k` or `min_p` (the model's generation_config.json sets
      them). It ignores `stream_options`, and sends `usage` in its last chunk anyway.
    - It splits reasoning into `reasoning_content` for the model types it has a response
      template for (Qwen3's among them); `<think>` tags left in the answer by any other are
      split here (`split_think_tags`). Its parser also reads the prompt's tail: with thinking
      off it sends the template's empty `<think>\n\n</think>` back as a reasoning delta of
      blank lines before any token is generated. That delta is dropped, so that the first
      text is the model's own (time to first token counts to it).
    - A server started with a model answers 400 to a request naming any other: the configured
      model is the name (or path) it was started with.
    """

    def thinking_fields(self, thinking: bool) -> dict:
        # Passed to the chat template, as vLLM does; Qwen3's reads enable_thinking.
        return {"chat_template_kwargs": {"enable_thinking": thinking}}

    def payload(self, request: ChatRequest) -> dict:
        payload = super().payload(request)
        del payload["stream_options"]  # ignored, with a warning in its log
        return payload

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        events = split_think_tags(super().stream_chat(request, on_sent))
        async with aclosing(events):
            async for event in events:
                blank = isinstance(event, ReasoningDelta) and not event.text.strip()
                if not (blank and not request.thinking):
                    yield event

    async def context_window(self, model: str | None = None) -> ContextWindow:
        # Its /v1/models gives no context length, and generate() sets no limit of its own.
        return ContextWindow(None, f"{self.label} does not say the window of {model or self.model}")
