"""One request of `duet bench load`, on either path, as a `RequestRecord`.

- straight: Duet's own engine adapter (`duet.engines`), in this process, as `duet bench relay`
  sends its direct requests; TTFT and gaps from the adapter's arrival stamps.
- through Duet: the composer's POST /chat/send to a `duet serve`, then the answer's event
  stream, with the relay benchmark's client (`duet.bench.relay.post_message`, `read_answer`,
  read with `duet.bench.sse_client` over the adapters' line reader); TTFT from the POST to the
  first text event read here.

A conversation's next turn goes with the history the path keeps: straight, this client sends
the earlier turns and the model's answers; through Duet, the turn goes to the conversation
Duet stored them in. A request that fails becomes a record with its cause, never an
exception: a load run must account for every request it sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import aiohttp

from duet.bench.load_metrics import FailureCause, RequestRecord
from duet.bench.load_workload import Workload
from duet.bench.relay import (
    DuetRefused,
    DuetUnderTest,
    SentMessage,
    message_form,
    post_message,
    read_answer,
)
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import EngineName, StreamError, Usage
from duet.engines.openai import VllmEngine
from duet.metrics.stream import ChunkArrival, arrivals_from_events
from duet.settings import Settings

PathKind = Literal["direct", "duet"]
PATH_KINDS: tuple[PathKind, ...] = ("direct", "duet")


@dataclass(frozen=True, slots=True)
class Series:
    """One engine route on one path: what a line in a plot is."""

    route: EngineName
    path: PathKind

    @property
    def name(self) -> str:
        return f"{self.route} {self.path}"


class FixedLengthVllm(VllmEngine):
    """vLLM asked for exactly max_tokens tokens: `ignore_eos` (vLLM's own extension to the
    OpenAI schema), as `vllm bench serve --ignore-eos` asks. Not `min_tokens` too: with the
    end of sequence ignored it changes nothing but adds a logits processor to every step."""

    def payload(self, request: ChatRequest) -> dict:
        payload = super().payload(request)
        payload["ignore_eos"] = True
        return payload


def fixed_length_vllm(settings: Settings) -> FixedLengthVllm:
    return FixedLengthVllm(
        "vllm", "vLLM", settings.vllm_url, settings.vllm_model, api_key=settings.vllm_api_key,
        connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
    )  # fmt: skip


@dataclass
class ChatState:
    """A conversation so far, as each path keeps it."""

    history: list[ChatMessage] = field(default_factory=list)  # straight: sent with each turn
    conversation_id: int | None = None  # through Duet: where its turns are stored


def cause_of(status: int | None, message: str) -> FailureCause:
    """A failed request's cause, from the status the engine answered with or the words the
    adapters' shared HTTP layer (duet.engines.http) uses for each kind of failure."""
    if status == 503:
        return "queue full (503)"
    if status is not None:
        return "refused"
    if "did not answer in time" in message:
        return "timeout"
    if "not reachable" in message or "closed the connection" in message:
        return "connection"
    return "engine error"


def sampling(workload: Workload, max_tokens: int | None = None) -> Sampling:
    # Greedy: every run of a workload asks the same thing of each engine. No seed: greedy
    # needs none, Duet's composer sends none, and `vllm bench serve` sends none (vLLM keeps a
    # random generator for each seeded request).
    return Sampling(
        temperature=0.0, top_p=1.0, top_k=0, max_tokens=max_tokens or workload.output_len
    )


def completed(
    series: Series,
    index: int,
    turn: int,
    start: float,
    arrivals: Sequence[ChunkArrival],
    prompt_tokens: int | None,
    output_tokens: int | None,
) -> RequestRecord:
    if not arrivals:
        return failed(series, index, turn, start, "engine error", "the stream held no text")
    gaps = tuple(b.at - a.at for a, b in pairwise(arrivals))
    return RequestRecord(
        series=series.name,
        index=index,
        turn=turn,
        start_time=start,
        end_time=arrivals[-1].at,
        success=True,
        ttft=arrivals[0].at - start,
        itl=gaps,
        latency=arrivals[-1].at - start,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        chunks=len(arrivals),
    )


def failed(
    series: Series,
    index: int,
    turn: int,
    start: float,
    cause: FailureCause,
    error: str,
    status: int | None = None,
) -> RequestRecord:
    return RequestRecord(
        series=series.name,
        index=index,
        turn=turn,
        start_time=start,
        end_time=time.perf_counter(),
        success=False,
        cause=cause,
        error=error[:500],
        status=status,
    )


@dataclass
class DirectSender:
    """Straight to the engine, through its Duet adapter."""

    series: Series
    engine: Engine
    workload: Workload
    timeout: float

    async def send(
        self, content: str, chat: ChatState, index: int, turn: int, max_tokens: int | None = None
    ) -> RequestRecord:
        messages = (*chat.history, ChatMessage("user", content))
        request = ChatRequest(
            messages=messages,
            thinking=self.workload.thinking,
            sampling=sampling(self.workload, max_tokens),
        )
        start = time.perf_counter()
        events = []
        try:
            async with asyncio.timeout(self.timeout):
                async for event in self.engine.stream_chat(request):
                    events.append(event)
        except TimeoutError:
            return failed(self.series, index, turn, start, "timeout", f"over {self.timeout:g} s")
        errors = [event for event in events if isinstance(event, StreamError)]
        if errors:
            error = errors[0]
            cause = cause_of(error.status, error.message)
            return failed(self.series, index, turn, start, cause, error.message, error.status)
        usage = next((event for event in events if isinstance(event, Usage)), None)
        arrivals = arrivals_from_events(events)
        record = completed(
            self.series,
            index,
            turn,
            start,
            arrivals,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
        )
        if record.success:
            reasoning = "".join(e.text for e in events if e.kind == "reasoning")  # type: ignore[union-attr]
            answer = "".join(e.text for e in events if e.kind == "answer")  # type: ignore[union-attr]
            chat.history += [
                ChatMessage("user", content),
                ChatMessage("assistant", answer, reasoning or None),
            ]
        return record


@dataclass
class DuetSender:
    """Through a `duet serve`, as the page sends a message and reads its answer."""

    series: Series
    client: aiohttp.ClientSession
    duet: DuetUnderTest
    workload: Workload
    timeout: float

    async def send(
        self, content: str, chat: ChatState, index: int, turn: int, max_tokens: int | None = None
    ) -> RequestRecord:
        form = message_form(
            self.series.route,
            max_tokens or self.workload.output_len,
            content,
            self.workload.thinking,
            chat.conversation_id,
        )
        start = time.perf_counter()
        sent: SentMessage | None = None
        try:
            async with asyncio.timeout(self.timeout):
                sent = await post_message(self.client, self.duet, form)
                stream = await read_answer(self.client, self.duet, sent.stream_url)
        except TimeoutError:
            await self.stop(sent)
            return failed(self.series, index, turn, start, "timeout", f"over {self.timeout:g} s")
        except asyncio.CancelledError:
            await asyncio.shield(self.stop(sent))
            raise
        except DuetRefused as error:
            return failed(self.series, index, turn, start, "refused", str(error), error.status)
        except aiohttp.ClientError as error:
            message = f"{type(error).__name__}: {error}"
            return failed(self.series, index, turn, start, "connection", message)
        if stream.engine_error is not None:
            status = stream.engine_error_status
            cause = cause_of(status, stream.engine_error)
            return failed(self.series, index, turn, start, cause, stream.engine_error, status)
        if stream.status != "complete":
            ended = f"the answer ended {stream.status or 'without an end'}"
            return failed(self.series, index, turn, start, "engine error", ended)
        chat.conversation_id = chat.conversation_id or sent.conversation_id
        return completed(
            self.series,
            index,
            turn,
            sent.sent_at,
            stream.arrivals,
            stream.prompt_tokens,
            stream.output_tokens,
        )

    async def stop(self, sent: SentMessage | None) -> None:
        """Stop an answer this client gave up on, as the page's Stop does: Duet would
        otherwise go on generating it, and load the engine for the next point."""
        if sent is None:
            return
        stop_url = self.duet.url + sent.stream_url.removesuffix("/stream") + "/stop"
        with suppress(aiohttp.ClientError, TimeoutError):
            async with self.client.post(
                stop_url, headers=self.duet.headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                await response.read()


Sender = DirectSender | DuetSender
