"""The chat app against the real engines (the `engines` session fixture from conftest.py).

The app runs under uvicorn on a loopback port in a thread, and the test talks to it over HTTP
like a browser does, so streaming, stop and storage are exercised end to end.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from app_server import serve_app
from chat_page import STORY
from down_engine import closed_port
from duet.app import create_app
from duet.bench.sse_client import parse_events
from duet.engines.base import Engine
from duet.settings import Settings
from duet.store.db import connect
from duet.store.messages import require_message

pytestmark = pytest.mark.engines

FORM = {
    "content": "Count from one to ten in words.",
    "thinking": "on",
    "temperature": "0.6",
    "top_p": "0.95",
    "top_k": "20",
    "max_tokens": "48",
    "system_prompt": "",
}


@pytest.fixture
def app_url(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[str]:
    with serve_app(engines, tmp_path / "duet.sqlite3") as app:
        yield app.url


def send(client: httpx.Client, engine: str, **changes: str) -> int:
    """Send a message; return the id of the answer that starts streaming."""
    response = client.post("/chat/send", data={**FORM, "engine": engine, **changes})
    assert response.status_code == 200, response.text
    return int(re.findall(r'data-stream="/messages/(\d+)/stream"', response.text)[0])


def events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    for event in parse_events(response.iter_lines()):
        yield event.event, event.json()


@pytest.fixture(params=["vllm", "ollama", "ollama-openai"])
def engine_name(request: pytest.FixtureRequest, engines: Mapping[str, Engine]) -> str:
    if request.param not in engines:
        pytest.skip(f"{request.param} is not among the session's engines")
    return str(request.param)


def test_answer_streams_and_is_stored(app_url: str, engine_name: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=app_url, timeout=120) as client:
        answer_id = send(client, engine_name)
        with client.stream("GET", f"/messages/{answer_id}/stream") as response:
            assert response.headers["x-accel-buffering"] == "no"
            received = list(events(response))
    names = [name for name, _ in received]
    assert names[-1] == "end"
    assert received[-1][1]["status"] == "complete"
    deltas = [data for name, data in received if name in {"reasoning", "answer"}]
    assert deltas, "no text streamed"
    stamps = [data["t"] for data in deltas]
    assert stamps == sorted(stamps)
    assert all(data["s"] >= data["t"] for data in deltas)

    stored = require_message(connect(tmp_path / "duet.sqlite3"), answer_id)
    assert stored.status == "complete"
    assert stored.content == "".join(d["text"] for n, d in received if n == "answer")
    assert stored.reasoning == "".join(d["text"] for n, d in received if n == "reasoning")
    assert stored.ttft_ms is not None and stored.total_ms is not None
    assert stored.ttft_ms <= stored.total_ms
    assert len(stored.arrivals) == len(deltas)
    assert stored.completion_tokens and stored.completion_tokens > 0


def test_a_stream_opened_after_the_answer_ended_replays_it(
    app_url: str, engine_name: str, tmp_path: Path
) -> None:
    """A client that connects late (a short answer can end before the page's stream opens)
    still gets every event, with the server's stamps, not just `end`."""
    db = connect(tmp_path / "duet.sqlite3")
    with httpx.Client(base_url=app_url, timeout=120) as client:
        answer_id = send(client, engine_name, thinking="", max_tokens="8")
        deadline = time.monotonic() + 60
        while require_message(db, answer_id).status == "streaming":
            assert time.monotonic() < deadline, "the answer did not end"
            time.sleep(0.05)
        with client.stream("GET", f"/messages/{answer_id}/stream") as response:
            received = list(events(response))
    stored = require_message(db, answer_id)
    assert stored.status == "complete"
    assert received[0][0] == "sent"
    assert received[-1][0] == "end" and received[-1][1]["status"] == "complete"
    assert "".join(d["text"] for n, d in received if n == "answer") == stored.content
    stamps = [d["t"] for n, d in received if n in {"reasoning", "answer"}]
    assert [round(t, 3) for t in stamps] == [round(a[0], 3) for a in stored.arrivals]


def test_stop_keeps_the_partial_answer(app_url: str, engine_name: str, tmp_path: Path) -> None:
    """Stop lands while the engine is still generating: the tiny model was trained to tell this
    story without end (an ordinary prompt gets a short answer that can end before the POST)."""
    with httpx.Client(base_url=app_url, timeout=120) as client:
        answer_id = send(client, engine_name, content=STORY, thinking="", max_tokens="3000")
        received = []
        with client.stream("GET", f"/messages/{answer_id}/stream") as response:
            for name, data in events(response):
                received.append((name, data))
                if sum(1 for n, _ in received if n == "answer") == 3:
                    stop = client.post(f"/messages/{answer_id}/stop")
                    assert stop.status_code == 200
                    assert "status-stopped" in stop.text
    name, end = received[-1]
    assert name == "end" and (end["status"], end["error"], end["unsaved"]) == (
        "stopped",
        None,
        None,
    )
    stored = require_message(connect(tmp_path / "duet.sqlite3"), answer_id)
    assert stored.status == "stopped"
    streamed = "".join(d["text"] for n, d in received if n == "answer")
    assert stored.content == streamed
    assert len(streamed) > 0


def test_engine_that_is_down_fails_the_answer_not_the_page(tmp_path: Path) -> None:
    """Real adapters pointed at a closed loopback port: each answer fails with a reason.

    Needs no running engine, only the adapters (`build_engines`)."""
    from duet.engines import build_engines

    port = closed_port()
    settings = Settings(
        vllm_url=f"http://127.0.0.1:{port}",
        ollama_url=f"http://127.0.0.1:{port}",
        connect_timeout=2.0,
    )
    down = build_engines(settings)
    from fastapi.testclient import TestClient

    app = create_app(settings, engines=down, database=tmp_path / "d.sqlite3")
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        for name in down:
            response = client.post("/chat/send", data={**FORM, "engine": name})
            assert response.status_code == 200
            answer_id = int(re.findall(r"/messages/(\d+)/stream", response.text)[0])
            with client.stream("GET", f"/messages/{answer_id}/stream") as stream:
                final = list(events(stream))[-1]
            assert final[0] == "end"
            assert final[1]["status"] == "failed"
            assert final[1]["error"]
            assert "Traceback" not in final[1]["error"]
        assert all(entry["up"] is False for entry in client.get("/health").json()["engines"])
