"""Duet's OpenAI-compatible `/v1`: `GET /v1/models` and `POST /v1/chat/completions`, for the
editor plugins, scripts and tools of the people who have accounts here.

Every route has `api_caller` (a Bearer key; never a cookie). A completion goes through the same
instrumented engine adapters as the web UI's answers, so it is counted and timed in `/metrics`
per engine, and it carries the web UI's two stamps: when Duet received the request (the
receipt stamp, `received_at`) and when the engine request was on the wire (`on_sent`); the
`Server-Timing` header gives both spans (Duet's own time before the engine request, and the
engine's time to its first token). Before the engine is asked, `duet.limits` admits the request
(429 over a limit); when it has ended, its usage row gets its outcome and counts, and a key that
keeps its conversations has the answer kept in its owner's history (`duet.api.history`).

The response starts once the engine has said something: its first event is read before the
status line is written, so that an engine that refuses or cannot be reached is a proper HTTP
error (404 for a model it does not have, 503 when it is down) rather than a 200 stream that
fails. A client that goes away, while waiting or while the answer streams, closes the engine's
stream, which is how vLLM and Ollama learn to stop generating.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from duet.api.errors import ApiError
from duet.api.history import Kept
from duet.api.keys import Caller, api_caller
from duet.api.models import model_id, served_models, split_model_id
from duet.api.schema import ChatCompletionRequest, problems
from duet.api.translate import Answer, Head, Unsupported, chat_request, first_chunk
from duet.engines.base import ChatRequest, Engine
from duet.engines.events import (
    AnswerDelta,
    Done,
    EngineName,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    ToolCallDelta,
)
from duet.limits import Admitted, Limits, OverLimit
from duet.sse import SSE_HEADERS
from duet.store.api_usage import EndStatus, Outcome
from duet.tasks import describe_exception
from duet.views.deps import Engines, received_at
from duet.views.health import check

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", dependencies=[Depends(api_caller)])

ApiCaller = Annotated[Caller, Depends(api_caller)]
# Seconds a client is asked to wait before trying an engine that is down again.
ENGINE_RETRY_AFTER_SECONDS = 5


def model_card(engine: EngineName, model: str) -> dict[str, Any]:
    return {"id": model_id(engine, model), "object": "model", "created": 0, "owned_by": engine}


@router.get("/models")
async def list_models(caller: ApiCaller, engines: Engines) -> dict[str, Any]:
    """Every model of every engine that is up, that this key may use."""
    cards = [
        model_card(engine, model)
        for engine, model in await served_models(engines)
        if caller.may_use(model_id(engine, model))
    ]
    return {"object": "list", "data": cards}


@router.get("/models/{name:path}")
async def get_model(name: str, caller: ApiCaller, engines: Engines) -> dict[str, Any]:
    engine, model = resolve(name, caller, engines)
    for served_engine, served in await served_models(engines):
        if (served_engine, served) == (engine, model):
            return model_card(engine, model)
    raise ApiError(404, f"No engine serves {name!r} now.", "model_not_found", "model")


def resolve(
    name: str, caller: Caller, engines: Mapping[EngineName, Engine]
) -> tuple[EngineName, str]:
    """The engine and its model name for a /v1 model name: 404 if it names no engine here,
    403 if this key may not use it."""
    found = split_model_id(name, engines)
    if found is None:
        names = ", ".join(f"{engine}/<model>" for engine in engines) or "none: no engines"
        raise ApiError(
            404,
            f"Duet has no model {name!r}: a model is named by its engine, as in {names} "
            "(GET /v1/models lists them).",
            "model_not_found",
            "model",
        )
    if not caller.may_use(name):
        raise ApiError(403, f"This API key may not use {name!r}.", "model_not_allowed", "model")
    return found


async def read_request(request: Request) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate_json(await request.body())
    except ValidationError as error:
        message, param = problems(error)
        raise ApiError(400, message, "invalid_request", param) from None


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass(slots=True)
class Ledger:
    """One API request's books: its two stamps, as the web UI's answers have them
    (perf_counter(): when Duet received it, when the engine request was on the wire), and how
    it ended, written once to /metrics and to its usage row (`duet.limits`)."""

    engine: EngineName
    received: float
    counter: Counter
    admitted: Admitted
    # The owner's history, when the key keeps its conversations (`duet.api.history`).
    history: Kept | None = None
    sent: float | None = None
    ended: bool = False

    def on_sent(self, at: float) -> None:
        if self.sent is None:
            self.sent = at

    @property
    def start(self) -> float:
        return self.sent if self.sent is not None else self.received

    def server_timing(self, first_at: float | None) -> str:
        spans = [f'duet;desc="receipt to engine request";dur={ms(self.start - self.received)}']
        if first_at is not None:
            spans.append(
                f'engine;desc="engine request to first token";dur={ms(first_at - self.start)}'
            )
        return ", ".join(spans)

    def end(self, status: EndStatus, answer: Answer | None = None) -> None:
        """Record how the request ended (only the first call counts). Times count from the
        engine request, like a web UI answer's."""
        if self.ended:
            return
        self.ended = True
        self.counter.labels(self.engine, status).inc()
        usage = answer.usage if answer is not None else None
        first = answer.first_text_at if answer is not None else None
        ttft_ms = None if first is None else ms(first - self.start)
        duration_ms = ms(time.perf_counter() - self.start)
        self.admitted.finish(
            Outcome(
                status,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                ttft_ms=ttft_ms,
                duration_ms=duration_ms,
            )
        )
        if self.history is not None and answer is not None:
            try:
                self.history.keep(self.admitted.db, status, answer, ttft_ms, duration_ms)
            except sqlite3.Error:
                # The answer went out already: a history that could not be written must not
                # fail it (the usage row above has its counts).
                log.exception("keeping a /v1 answer in %s's history", self.history.user_id)


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


Result = TypeVar("Result")


async def unless_disconnected(request: Request, work: Awaitable[Result]) -> Result:
    """`work`'s result; ClientGone (with `work` cancelled) if the client leaves first."""

    async def until_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    working = asyncio.ensure_future(work)
    listening = asyncio.ensure_future(until_disconnect())
    try:
        await asyncio.wait({working, listening}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listening.cancel()
        if not working.done():
            working.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.wait({working, listening})
    if working.cancelled():
        raise ClientGone
    return working.result()


async def engine_failure(engine: Engine, error: StreamError) -> ApiError:
    """An engine's refusal or failure, with the status that says whose it is."""
    status = error.status
    if status == 404:
        return ApiError(404, error.message, "model_not_found", "model")
    if status is not None and 400 <= status < 500:
        return ApiError(400, error.message, "engine_refused")
    retry = {"Retry-After": str(ENGINE_RETRY_AFTER_SECONDS)}
    if status == 503:
        return ApiError(503, error.message, "engine_unavailable", headers=retry)
    if status is None:
        health = await check(engine)
        if not health.up:
            message = f"{engine.label} is down: {health.detail} ({error.message})"
            return ApiError(503, message, "engine_unavailable", headers=retry)
    return ApiError(502, error.message, "engine_error")


async def next_event(stream: AsyncIterator[StreamEvent]) -> StreamEvent:
    """The stream's next event. An adapter's stream ends with Done or StreamError; one that
    simply stops is taken as done, and one that raises as failed."""
    try:
        event = await anext(stream, None)
    except Exception as error:
        return StreamError(describe_exception(error), time.perf_counter())
    return event or Done(finish_reason=None, at=time.perf_counter())


class ChunkStream(StreamingResponse):
    """A streamed completion whose body is closed, and `finish` called, the moment the
    response ends, the client's disconnect included: Starlette cancels a streaming response
    when its client leaves, but leaves a body suspended at a `yield` to the garbage collector,
    and a body that never started runs none of its own cleanup."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        finish: Callable[[], Awaitable[None]],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            body = self.body_iterator
            try:
                if isinstance(body, AsyncGenerator):
                    await body.aclose()
            finally:
                await self.finish()


@router.post("/chat/completions")
async def chat_completions(request: Request, caller: ApiCaller) -> Response:
    # The app's parts straight from its state, not as more dependencies: FastAPI resolves
    # each one in turn, and this request is on its way to an engine.
    received = received_at(request)
    state = request.app.state
    engines: Mapping[EngineName, Engine] = state.engines
    counter: Counter = state.telemetry.api_requests
    body = await read_request(request)
    engine_name, model = resolve(body.model, caller, engines)
    try:
        asked = chat_request(body, model)
    except Unsupported as error:
        raise ApiError(400, str(error), "unsupported", error.param) from None
    limits: Limits = state.limits
    try:
        admitted = limits.admit(
            caller.user_id, key_id=caller.key.id, engine=engine_name, model=model
        )
    except OverLimit as over:
        counter.labels(engine_name, "refused").inc()
        retry = {"Retry-After": str(over.retry_after)}
        raise ApiError(429, over.message, "rate_limit_exceeded", headers=retry) from None
    history = None
    if caller.key.keep_history:
        history = Kept(caller.user_id, body, engine_name, model, asked.sampling)
    ledger = Ledger(engine_name, received, counter, admitted, history)
    engine = engines[engine_name]
    try:
        if body.stream:
            return await streamed(request, engine, asked, body, ledger)
        return await whole(request, engine, asked, body, ledger)
    except ClientGone:
        ledger.end("stopped")
        # Nobody reads this: the client has gone.
        return Response(status_code=499)
    except asyncio.CancelledError:
        ledger.end("stopped")
        raise
    except BaseException:
        ledger.end("failed")
        raise


async def whole(
    request: Request,
    engine: Engine,
    asked: ChatRequest,
    body: ChatCompletionRequest,
    ledger: Ledger,
) -> Response:
    async def collect() -> Answer:
        answer = Answer()
        async with aclosing(engine.stream_chat(asked, ledger.on_sent)) as stream:
            event: StreamEvent | None = None
            while not isinstance(event, Done | StreamError):
                event = await next_event(stream)
                answer.fold(event)
        return answer

    answer = await unless_disconnected(request, collect())
    if answer.error is not None:
        ledger.end("failed", answer)
        raise await engine_failure(engine, answer.error)
    ledger.end("completed", answer)
    timing = {"Server-Timing": ledger.server_timing(answer.first_text_at)}
    return JSONResponse(answer.completion(Head(body.model)), headers=timing)


async def streamed(
    request: Request,
    engine: Engine,
    asked: ChatRequest,
    body: ChatCompletionRequest,
    ledger: Ledger,
) -> Response:
    stream = engine.stream_chat(asked, ledger.on_sent)
    try:
        first = await unless_disconnected(request, next_event(stream))
    except BaseException:
        await stream.aclose()
        raise
    if isinstance(first, StreamError):
        await stream.aclose()
        raise await engine_failure(engine, first)
    head = Head(body.model)
    answer = Answer()

    async def chunks() -> AsyncIterator[bytes]:
        status: EndStatus = "stopped"
        try:
            async with aclosing(stream):
                event = first
                opening = first_chunk(head)
                while True:
                    yield opening + answer.stream_bytes(head, event, body.include_usage)
                    opening = b""
                    if isinstance(event, Done | StreamError):
                        status = "completed" if isinstance(event, Done) else "failed"
                        break
                    event = await next_event(stream)
        finally:
            ledger.end(status, answer)

    async def finish() -> None:
        await stream.aclose()
        ledger.end("stopped", answer)  # unless it ended already

    text = isinstance(first, ReasoningDelta | AnswerDelta | ToolCallDelta)
    headers = {**SSE_HEADERS, "Server-Timing": ledger.server_timing(first.at if text else None)}
    return ChunkStream(chunks(), finish, headers)
