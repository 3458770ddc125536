"""A generation's event fan-out (`Generation.subscribe`), on its own: no engine is asked anything
here; the adapter only fills the Generation's field (it points at a closed port)."""

from __future__ import annotations

import asyncio

from down_engine import closed_port
from duet.engines import build_engines
from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.generation import Generation
from duet.settings import Settings


def new_generation() -> Generation:
    engine = build_engines(Settings(vllm_url=f"http://127.0.0.1:{closed_port()}"))["vllm"]
    sampling = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=8, seed=0)
    request = ChatRequest(
        messages=(ChatMessage(role="user", content="Hi"),), thinking=False, sampling=sampling
    )
    return Generation(engine, request)


async def test_a_quiet_stream_gets_heartbeats_and_then_every_event_in_order() -> None:
    generation = new_generation()
    generation.publish("sent", {"t": 0.0})
    seen: list[str | None] = []

    async def read() -> None:
        async for event in generation.subscribe(heartbeat_seconds=0.05):
            seen.append(None if event is None else event.name)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.18)  # the engine thinks: about three heartbeats' worth of silence
    for index, text in enumerate(["Hel", "lo"]):
        generation.publish("answer", {"text": text, "t": 200.0 + index, "chunk": index})
    generation.publish("end", {"status": "complete", "error": None})
    for queue in generation.subscribers:
        queue.put_nowait(None)  # what Generations.finish does after the end event
    await asyncio.wait_for(reader, 5)

    assert seen[0] == "sent"
    heartbeats = seen[1:-3]
    assert heartbeats and all(beat is None for beat in heartbeats), seen
    assert seen[-3:] == ["answer", "answer", "end"]
    assert not generation.subscribers, "the ended subscription left its queue behind"


async def test_a_late_subscriber_gets_the_backlog_after_its_last_event_only() -> None:
    generation = new_generation()
    for index in range(3):
        generation.publish("answer", {"text": str(index), "t": float(index), "chunk": index})
    generation.publish("end", {"status": "complete", "error": None})
    names = [(event.seq, event.name) async for event in generation.subscribe(after_seq=1)]
    assert names == [(2, "answer"), (3, "end")]
