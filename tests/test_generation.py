"""A generation's event fan-out (`Generation.watch`) and the event stream that writes it to a page
(`sse.EventStream`, `sse.EventStreamResponse`), on their own: no engine is asked anything here
(the adapter only fills the Generation's field; it points at a closed port), and the ASGI
server's `send` and `receive` are recorded by the test."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from down_engine import closed_port
from duet import sse
from duet.engines import build_engines
from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.engines.events import AnswerDelta
from duet.generation import Generation
from duet.published import AnswerEnded, RequestSent
from duet.settings import Settings
from duet.sse import EventStream, EventStreamResponse


def new_generation() -> Generation:
    engine = build_engines(Settings(vllm_url=f"http://127.0.0.1:{closed_port()}"))["vllm"]
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=8, seed=0)
    request = ChatRequest(
        messages=(ChatMessage(role="user", content="Hi"),), thinking=False, sampling=sampling
    )
    return Generation(1, 1, engine, request, received=time.perf_counter())


def answer(generation: Generation, text: str) -> None:
    chunk = len(generation.events)
    generation.publish(AnswerDelta(text, at=time.perf_counter(), chunk=chunk), 1.0)


def end(generation: Generation) -> None:
    generation.publish(AnswerEnded("complete", None), 2.0)


async def watched(generation: Generation) -> None:
    """Until a page's stream watches the generation."""
    while not generation.subscribers:
        await asyncio.sleep(0)


class RecordedSend:
    """An ASGI server's `send`, recording the bodies; `hold()` makes the next sends wait, as a
    server's send waits while a slow client's connection takes no more bytes."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.open.wait()
        self.messages.append(message)

    def hold(self) -> None:
        self.open.clear()

    @property
    def text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages).decode()


def test_a_watcher_gets_the_backlog_at_once_then_each_event_as_published() -> None:
    generation = new_generation()
    for text in ("a", "b", "c"):
        answer(generation, text)
    calls: list[list[int]] = []
    stop = generation.watch(0, lambda events: calls.append([e.seq for e in events]))
    assert calls == [[1, 2]], "the events after the last one seen, in one call"
    answer(generation, "d")
    answer(generation, "e")
    assert calls == [[1, 2], [3], [4]]
    stop()
    answer(generation, "f")
    assert calls == [[1, 2], [3], [4]], "no events after stop"


def test_an_ended_generation_hands_out_its_backlog_and_keeps_no_watcher() -> None:
    generation = new_generation()
    answer(generation, "a")
    end(generation)
    seen: list[str] = []
    generation.watch(-1, lambda events: seen.extend(e.event.kind for e in events))
    assert seen == ["answer", "end"]
    assert not generation.subscribers


def test_a_failing_watcher_does_not_stop_the_others() -> None:
    generation = new_generation()
    seen: list[int] = []

    def broken(events: Any) -> None:
        raise RuntimeError("this page's connection broke")

    generation.watch(-1, broken)
    generation.watch(-1, lambda events: seen.extend(e.seq for e in events))
    answer(generation, "a")
    answer(generation, "b")
    assert seen == [0, 1]


async def test_follow_writes_events_then_heartbeats_and_ends_with_the_end_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.05)
    generation = new_generation()
    generation.publish(RequestSent(after_receipt_ms=0.5, received_at=0.0), 0.0)
    send = RecordedSend()
    stream = EventStream(send)
    following = asyncio.create_task(stream.follow(generation))
    await asyncio.sleep(0.18)  # the engine thinks: about three heartbeats' worth of silence
    answer(generation, "Hel")
    answer(generation, "lo")
    end(generation)
    await asyncio.wait_for(following, 5)
    await stream.drained()

    text = send.text
    assert text.startswith("id: 0\nevent: sent\n")
    assert text.count(": waiting\n\n") >= 2, text
    assert text.index("Hel") < text.index("lo") < text.index("event: end")
    assert '"s":' in text.split("event: answer")[1], "each event carries when it was written"
    assert not generation.subscribers, "the ended stream left its watcher behind"


async def test_a_slow_connection_holds_no_one_up_and_loses_nothing() -> None:
    """When the connection takes no more bytes, writes queue behind the waiting one, in order;
    the publisher never waits."""
    generation = new_generation()
    send = RecordedSend()
    stream = EventStream(send)
    following = asyncio.create_task(stream.follow(generation))
    await watched(generation)
    send.hold()
    for text in ("one", "two", "three"):
        answer(generation, text)  # would block here if a write waited for the connection
    end(generation)
    await asyncio.wait_for(following, 5)
    assert "one" not in send.text
    send.open.set()
    await asyncio.wait_for(stream.drained(), 5)
    text = send.text
    assert text.index("one") < text.index("two") < text.index("three") < text.index("end")


async def test_the_response_ends_after_everything_written_went_out() -> None:
    send = RecordedSend()

    async def produce(stream: EventStream) -> None:
        stream.write(b"data: 1\n\n")
        stream.write(b"data: 2\n\n")

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays
        return {"type": "http.disconnect"}

    await asyncio.wait_for(EventStreamResponse(produce)({"type": "http"}, receive, send), 5)
    start, *bodies, last = send.messages
    assert start["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert [b["body"] for b in bodies] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert last == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_client_that_leaves_stops_the_stream_but_not_the_answer() -> None:
    generation = new_generation()
    send = RecordedSend()
    left = asyncio.Event()

    async def produce(stream: EventStream) -> None:
        await stream.follow(generation)

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    responding = asyncio.create_task(EventStreamResponse(produce)({"type": "http"}, receive, send))
    await watched(generation)
    answer(generation, "seen")
    left.set()
    await asyncio.wait_for(responding, 5)
    answer(generation, "after the client left")
    assert "seen" in send.text and "after the client left" not in send.text
    assert not generation.subscribers
    assert send.messages[-1].get("more_body", True), "no end of body for a client that left"
    last = generation.events[-1].event
    assert isinstance(last, AnswerDelta) and last.text == "after the client left", "it goes on"
