"""A compare run through the app against both real engines, the way the page drives it: send the
prompt, read each column's event stream on its own connection, post the arrival times back, and
check what SQLite kept."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from app_server import RunningApp, serve_app
from chat_page import stored_run
from duet.bench.sse_client import parse_events
from duet.engines.base import Engine
from duet.metrics.answers import answer_metrics
from duet.store import runs

pytestmark = pytest.mark.engines

FORM = {
    "content": "What is the capital of France?",
    "engines": ["vllm", "ollama"],
    "temperature": "0",
    "top_p": "1",
    "top_k": "0",
    "max_tokens": "40",
}


@pytest.fixture
def app(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[RunningApp]:
    with serve_app(engines, tmp_path / "duet.sqlite3") as running:
        yield running


def read_column(client: httpx.Client, answer_id: int, sent_at: float) -> list[list]:
    """One column's text events as [ms since this answer's start, chunk, kind, chars], measured
    here as the page measures them (the start is the send time plus the server's started_ms)."""
    arrivals: list[list] = []
    start = None
    with client.stream("GET", f"/compare/answers/{answer_id}/stream") as response:
        for event in parse_events(response.iter_lines()):
            arrived = time.perf_counter()
            name, data = event.event, event.json()
            if name == "start":
                start = sent_at + data["started_ms"] / 1000
            elif name in ("reasoning", "answer") and data["text"]:
                assert start is not None, "a text event came before the start event"
                elapsed = (arrived - start) * 1000
                arrivals.append([elapsed, data["chunk"], name[0], len(data["text"])])
            elif name == "end":
                break
    return arrivals


def run_compare(app: RunningApp, mode: str) -> int:
    """Send one compare run, read every column at once, post the times; return the run id."""
    with httpx.Client(base_url=app.url, timeout=120) as client:
        sent_at = time.perf_counter()
        response = client.post("/compare", data={**FORM, "mode": mode})
        assert response.status_code == 200, response.text
        run_id = int(response.headers["HX-Push-Url"].rsplit("/", 1)[1])
        answer_ids = [int(i) for i in re.findall(r'data-answer-id="(\d+)"', response.text)]
        assert len(answer_ids) == 2
        measured: dict[int, list[list]] = {}

        def read(answer_id: int) -> None:
            measured[answer_id] = read_column(client, answer_id, sent_at)

        readers = [threading.Thread(target=read, args=(i,)) for i in answer_ids]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout=120)
        for answer_id in answer_ids:
            posted = client.post(
                f"/compare/answers/{answer_id}/browser", json={"arrivals": measured[answer_id]}
            )
            assert posted.status_code == 200, posted.text
            assert "data-metrics-panel" in posted.text
            assert "data-timeline" in posted.text
        listed = client.get("/runs")
        assert f'href="/runs/{run_id}"' in listed.text
        metrics = client.get("/metrics").text
        for engine in ("vllm", "ollama"):
            assert f'duet_engine_requests_total{{engine="{engine}",outcome="complete"}}' in metrics
            assert f'duet_time_to_first_token_seconds_count{{engine="{engine}"}} 1.0' in metrics
            assert f'duet_inter_token_latency_seconds_count{{engine="{engine}"}}' in metrics
    return run_id


def check_answers_stored_with_metrics(run: runs.CompareRun) -> None:
    assert [answer.engine for answer in run.answers] == ["vllm", "ollama"]
    for answer in run.answers:
        assert answer.status == "complete", answer.error
        assert answer.output_tokens and answer.output_tokens > 0
        assert answer.prompt_tokens and answer.prompt_tokens > 0
        assert answer.browser_arrivals, "the posted browser times were not stored"
        numbers = answer_metrics(answer).as_dict()
        assert numbers["server_ttft_ms"] > 0
        assert numbers["server_chunks"] > 1
        assert numbers["browser_chunks"] == numbers["server_chunks"]
        assert numbers["chunks_preserved"] is True
        # The browser hop measures from before the server received the prompt: never earlier.
        assert numbers["added_ttft_ms"] >= 0
        assert numbers["server_itl_p50_ms"] is not None
        assert numbers["server_output_tokens_per_s"] > 0
    ollama = run.answers[1]
    assert ollama.engine_timings.get("eval_duration", 0) > 0


def test_concurrent_compare_stores_both_answers_with_both_hops(app: RunningApp) -> None:
    run = stored_run(app, run_compare(app, "concurrent"))
    assert run.mode == "concurrent"
    check_answers_stored_with_metrics(run)
    vllm, ollama = run.answers
    assert vllm.started_ms is not None and ollama.started_ms is not None
    # Both requests went out before either answer was over.
    first_end = min(
        a.started_ms + answer_metrics(a).server.e2e * 1000  # type: ignore[operator]
        for a in run.answers
    )
    assert max(vllm.started_ms, ollama.started_ms) < first_end


def test_sequential_compare_starts_the_second_answer_after_the_first_ended(
    app: RunningApp,
) -> None:
    run = stored_run(app, run_compare(app, "sequential"))
    check_answers_stored_with_metrics(run)
    first, second = run.answers
    assert first.started_ms is not None and second.started_ms is not None
    first_end = first.started_ms + answer_metrics(first).server.e2e * 1000  # type: ignore[operator]
    assert second.started_ms >= first_end
