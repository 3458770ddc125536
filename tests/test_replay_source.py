"""The replay source (`duet.bench.replay_source`), which measures Duet, not an engine: it
serves the recordings made from the real engines byte for byte, Duet's adapters and health
checks read it as they read the engines, and it paces its streams as asked.

No test of an engine uses the replay source in place of one: these tests are of the source.
The pacing is judged by ratios to the asked pace (the median gap over the asked interval, a
stream's length over its schedule), so that a busy machine's stall in one gap does not decide.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import replace
from itertools import pairwise

import httpx
import pytest
from app_server import serve_asgi
from duet.bench.reference_relay import TEXT_FIELD
from duet.bench.replay_source import (
    STREAM_PATHS,
    Pace,
    create_source,
    load_recordings,
    pieces,
    steps,
)
from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.engines.ollama import OllamaEngine
from duet.engines.openai import OllamaOpenAIEngine, VllmEngine
from duet.metrics.stream import arrivals_from_events

pytestmark = pytest.mark.replay

RECORDINGS = load_recordings()
MODEL = RECORDINGS.about["vllm"]["model"]
REQUEST = ChatRequest(
    (ChatMessage("user", "anything: the source answers with its recording"),),
    thinking=False,
    sampling=Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=8),
)
CHAT_PATHS = {
    route: (prefix, path) for prefix, paths in STREAM_PATHS.items() for path, route in paths.items()
}


def adapters(url: str) -> dict[str, VllmEngine | OllamaEngine | OllamaOpenAIEngine]:
    return {
        "vllm": VllmEngine("vllm", "vLLM", url + "/vllm", MODEL),
        "ollama": OllamaEngine("ollama", "Ollama", url + "/ollama", MODEL),
        "ollama-openai": OllamaOpenAIEngine(
            "ollama-openai", "Ollama (/v1)", url + "/ollama", MODEL
        ),
    }


def test_the_recordings_are_every_wire_format_and_long_enough_to_pace() -> None:
    assert set(RECORDINGS.streams) == {"vllm", "ollama", "ollama-openai"}
    assert RECORDINGS.streams["vllm"].content_type.startswith("text/event-stream")
    assert RECORDINGS.streams["ollama"].content_type.startswith("application/x-ndjson")
    for recorded in RECORDINGS.streams.values():
        assert recorded.status == 200
        assert len(steps(recorded)) >= 32
        # One text piece per token, in the engine's own count: the pace in steps is in tokens.
        counted = re.search(r'"(?:completion_tokens|eval_count)":(\d+)', recorded.body)
        assert counted is not None and int(counted.group(1)) == len(steps(recorded))


def test_steps_are_one_text_piece_each_and_join_to_the_body() -> None:
    for route, recorded in RECORDINGS.streams.items():
        cut = steps(recorded)
        assert b"".join(cut) == recorded.data, route
        assert b"".join(pieces(recorded)) == recorded.data, route
        texts = [
            sum(1 for p in pieces(replace(recorded, body=step.decode())) if TEXT_FIELD.search(p))
            for step in cut
        ]
        assert texts == [1] * len(cut), route
    # vLLM's role chunk goes with the first token, its finish, usage and [DONE] with the last.
    vllm = steps(RECORDINGS.streams["vllm"])
    assert b'"role":"assistant"' in vllm[0] and vllm[-1].endswith(b"data: [DONE]\n\n")
    assert b'"done":true' in steps(RECORDINGS.streams["ollama"])[-1]


def test_every_answer_is_the_recording_byte_for_byte() -> None:
    source = create_source(RECORDINGS, Pace(5000, 0))
    with (
        serve_asgi(source, lifespan="off") as url,
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        for route, recorded in RECORDINGS.streams.items():
            prefix, path = CHAT_PATHS[route]
            got = client.post(f"{url}/{prefix}{path}", json={"model": MODEL, "stream": True})
            assert got.status_code == 200
            assert got.headers["content-type"] == recorded.content_type
            assert got.content == recorded.data, route
        for prefix, answers in RECORDINGS.documents.items():
            for key, recorded in answers.items():
                method, path = key.split(" ", 1)
                got = client.request(method, f"{url}/{prefix}{path}", json={"model": MODEL})
                assert (got.status_code, got.content) == (recorded.status, recorded.data), key
        assert client.get(f"{url}/vllm/v1/nothing").status_code == 404


async def test_duets_adapters_and_health_checks_read_the_source_as_an_engine() -> None:
    with serve_asgi(create_source(RECORDINGS, Pace(5000, 0)), lifespan="off") as url:
        engines = adapters(url)
        try:
            for route, engine in engines.items():
                health = await engine.health()
                assert health.up, (route, health.detail)
                events = [event async for event in engine.stream_chat(REQUEST)]
                kinds = [event.kind for event in events]
                assert "error" not in kinds and kinds[-1] == "done", route
                chunks = len(arrivals_from_events(events))
                assert chunks == len(steps(RECORDINGS.streams[route])), route
        finally:
            for engine in engines.values():
                await engine.aclose()


def test_the_schedule_is_the_first_token_delay_then_one_step_per_interval() -> None:
    assert Pace(100, 20).offsets(4) == pytest.approx([0.02, 0.03, 0.04, 0.05])
    assert Pace(50, 0).offsets(3) == pytest.approx([0.0, 0.02, 0.04])


@pytest.mark.parametrize("tokens_per_s", [50, 200])
async def test_a_stream_keeps_the_asked_pace(tokens_per_s: float) -> None:
    pace = Pace(tokens_per_s, first_token_ms=100)
    with serve_asgi(create_source(RECORDINGS, pace), lifespan="off") as url:
        engine = adapters(url)["vllm"]
        try:
            await engine.health()  # a kept-open connection, as Duet's adapter has one
            sent: list[float] = []
            events = [event async for event in engine.stream_chat(REQUEST, sent.append)]
        finally:
            await engine.aclose()
    arrivals = arrivals_from_events(events)
    gaps = [b.at - a.at for a, b in pairwise(arrivals)]
    interval = 1 / tokens_per_s
    # The median gap is the asked interval, and the stream is never faster than its schedule.
    assert 0.8 < statistics.median(gaps) / interval < 1.25
    scheduled = pace.offsets(len(arrivals))[-1]
    assert 0.98 < (arrivals[-1].at - sent[0]) / scheduled < 2.0
    assert 0.9 < (arrivals[0].at - sent[0]) / (pace.first_token_ms / 1000) < 5.0
