"""The Load page without engines: a sweep started from the form runs as the server's
background task (the benchmark replaced by a stand-in that reports requests and points as
`duet bench load` does), its progress, its table, its charts (drawn by the benchmark's own
plots), its exports, one sweep at a time, stopping, failing, bad input, who may use it, and
two runs side by side."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import random
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from down_engine import DownEngine, closed_port
from duet import load_sweeps
from duet.app import create_app
from duet.auth.sessions import COOKIE
from duet.bench.load_report import PointResult, point_document
from duet.bench.load_run import Limits, LoadPoint, RunOutcome, new_state, run_once
from duet.bench.load_workload import Job
from duet.settings import Settings
from duet.store import load_runs, open_database
from duet.views.load import DEFAULTS
from fastapi.testclient import TestClient
from test_authorization import add_user
from test_bench_load import RECORDS, FakeSender, fake_results

LOCAL = "http://127.0.0.1:8080"
HX = {"HX-Request": "true"}
FORM = {
    "routes": ["vllm", "ollama"],
    "paths": ["direct", "duet"],
    "concurrency": "1,2,4",
    "input_len": "32",
    "output_len": "16",
    "requests": "8",
    "repeats": "3",
}
CONFIG = {
    "date": "2026-12-01T15:00:00+0000",
    "machine": "a test machine",
    "workload": "random",
    "input_len": 32,
    "output_len": 16,
    "thinking": False,
    "engines": {"ollama": {"version": "0.24.0", "settings": {"OLLAMA_NUM_PARALLEL": "1"}}},
}
SERIES_LABELS = {"vllm, straight", "vllm, through Duet", "ollama, straight", "ollama, through Duet"}
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(svg: str) -> set[str]:
    """Every text of an SVG drawing (matplotlib keeps its labels as text: load_plots)."""
    root = ET.fromstring(svg)
    return {"".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")}


def results_with_requests() -> list[PointResult]:
    """test_bench_load's results (2 routes x 2 paths x concurrency 1, 2, 4; 3 repeats), the
    first with one run's requests."""
    results = fake_results()
    first = results[0]
    first.outcomes.append(
        RunOutcome(first.series, first.point, 0, list(RECORDS), 0.5, None, None, 6)
    )
    return results


@dataclass
class StandIn:
    """The benchmark, as far as the page sees it: told each request and each point, and held
    at `gate` after the first point until the test opens it."""

    results: list[PointResult] = field(default_factory=results_with_requests)
    gate: threading.Event = field(default_factory=threading.Event)
    failure: Exception | None = None
    seen: list[Any] = field(default_factory=list)

    async def __call__(
        self, options: Any, settings: Settings, on_point: Callable[..., None]
    ) -> tuple[dict[str, Any], list[PointResult]]:
        self.seen.append(options)
        for index, record in enumerate(RECORDS):
            options.on_record(f"vllm direct · concurrency 1 · {index + 1}/3", record)
        on_point(CONFIG, self.results[:4])
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        if self.failure is not None:
            raise self.failure
        on_point(CONFIG, self.results)
        return {**CONFIG, "complete": True}, self.results


def build(tmp_path: Path, settings: Settings) -> Any:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    return create_app(settings, engines=engines, database=tmp_path / "duet.sqlite3")  # type: ignore[arg-type]


@pytest.fixture
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture
def client(tmp_path: Path, stand_in: StandIn) -> Iterator[TestClient]:
    app = build(tmp_path, Settings())
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as test_client:
        app.state.load_sweeps.measure = stand_in
        yield test_client
        stand_in.gate.set()


def started(client: TestClient, form: dict[str, Any] = FORM) -> int:
    response = client.post("/load", data=form)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def ended(client: TestClient, load_id: int) -> str:
    """The live section once the sweep has ended (polled as the page polls it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        section = client.get(f"/load/runs/{load_id}/progress", headers=HX).text
        if 'data-status="running"' not in section:
            return section
        time.sleep(0.05)
    raise AssertionError("the sweep did not end")


def test_a_sweep_shows_its_progress_then_its_table_charts_and_exports(
    client: TestClient, stand_in: StandIn
) -> None:
    page = client.get("/load")
    assert page.status_code == 200
    assert "A sweep loads the engines everyone here is chatting with" in page.text
    assert 'href="/load" aria-current="page"' in page.text
    load_id = started(client)
    (options,) = stand_in.seen
    assert options.routes == ("vllm", "ollama") and options.paths == ("direct", "duet")
    assert [p.concurrency for p in options.points] == [1, 2, 4]
    assert (options.workload.input_len, options.workload.output_len) == (32, 16)
    assert (options.requests, options.repeats, options.workload.thinking) == (8, 3, False)
    live = client.get(f"/load/runs/{load_id}/progress", headers=HX).text
    # 2 routes x 2 paths x 3 points x 3 repeats x 8 requests; three have ended.
    assert 'hx-trigger="every 1s"' in live and "3 of 288 requests" in live
    assert "1 failed" in live and "vllm direct · concurrency 1 · 3/3" in live
    assert "Points so far" in live and "vllm duet" in live and "ollama direct" not in live
    assert f"#{load_id}</a> is running" in client.get("/load").text
    again = client.post("/load", data=FORM, headers=HX)
    assert again.status_code == 409 and f"load run #{load_id}" in again.text
    assert again.headers["HX-Retarget"] == "#flash"
    stand_in.gate.set()
    done = ended(client, load_id)
    assert 'data-status="complete"' in done and "hx-trigger" not in done
    page = client.get(f"/load/runs/{load_id}").text
    for heading in ("TTFT p50", "TPOT p50", "out tok/s", "+TTFT Duet"):
        assert f'<th scope="col">{heading}</th>' in page
    assert page.count('<th scope="row">') == 12  # a row per series and point
    for name in ("ttft", "tpot", "throughput", "per_user"):
        assert f'src="/load/runs/{load_id}/charts/{name}.svg"' in page
        drawn = client.get(f"/load/runs/{load_id}/charts/{name}.svg")
        assert drawn.headers["content-type"] == "image/svg+xml"
        assert "img-src 'self'" in drawn.headers["content-security-policy"]
        texts = svg_texts(drawn.text)
        assert texts >= SERIES_LABELS, name
    ttft = svg_texts(client.get(f"/load/runs/{load_id}/charts/ttft.svg").text)
    assert {"TTFT p50 (ms)", "TTFT p99 (ms)", "concurrency (requests in flight)"} <= ttft

    rows = list(csv.DictReader(io.StringIO(client.get(f"/load/runs/{load_id}/export.csv").text)))
    assert len(rows) == 12
    vllm_2 = next(r for r in rows if r["series"] == "vllm direct" and r["x"] == "2.0")
    assert float(vllm_2["median_ttft_ms"]) == 21.0 and vllm_2["sent"] == "24"
    document = client.get(f"/load/runs/{load_id}/export.json").json()
    assert document["benchmark"] == "duet bench load" and document["complete"] is True
    assert document["load_run"]["status"] == "complete" and len(document["results"]) == 12
    assert document["results"][0]["median"]["median_ttft_ms"] == 11.0
    lines = client.get(f"/load/runs/{load_id}/requests.jsonl").text.splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2]


def test_a_stopped_sweep_keeps_the_points_it_finished(
    client: TestClient, stand_in: StandIn
) -> None:
    load_id = started(client)
    assert client.post(f"/load/runs/{load_id}/stop", headers=HX).status_code == 204
    done = ended(client, load_id)
    assert 'data-status="stopped"' in done and "Stopped from the Load page." in done
    document = client.get(f"/load/runs/{load_id}/export.json").json()
    assert document["complete"] is False and len(document["results"]) == 4
    assert 'data-chart="ttft"' in done
    again = client.post(f"/load/runs/{load_id}/stop", headers=HX)
    assert again.status_code == 409 and "not running" in again.text
    # The next sweep may start.
    stand_in.gate.set()
    ended(client, started(client))


def test_a_failed_sweep_says_why(client: TestClient, stand_in: StandIn) -> None:
    stand_in.failure = RuntimeError("http://127.0.0.1:9/compare did not answer in 60 s")
    stand_in.gate.set()
    done = ended(client, started(client))
    assert 'data-status="failed"' in done
    assert "RuntimeError: http://127.0.0.1:9/compare did not answer in 60 s" in done


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"routes": []}, "Choose at least one engine route."),
        ({"routes": ["vllm", "tgi"]}, "Unknown engine route 'tgi'"),
        ({"paths": []}, "Choose at least one path."),
        ({"concurrency": ""}, "Concurrency: give one or more numbers"),
        ({"concurrency": "1,x"}, "Each concurrency must be a whole number (got 'x')."),
        ({"concurrency": "1,65"}, "Each concurrency must be between 1 and 64 (got 65)."),
        ({"concurrency": "0"}, "Each concurrency must be between 1 and 64 (got 0)."),
        ({"concurrency": "1,2,2"}, "Concurrency: each number once (got 2 twice)."),
        ({"concurrency": "1,2,3,4,5,6,7,8,9"}, "at most 8 points (got 9)"),
        ({"input_len": "0"}, "Input length must be between 1 and 4,096 (got 0)."),
        ({"output_len": "1e3"}, "Output length must be a whole number (got '1e3')."),
        ({"requests": "257"}, "Requests per point must be between 1 and 256"),
        ({"repeats": "6"}, "Repeats must be between 1 and 5 (got 6)."),
        (
            {"routes": ["vllm", "ollama"], "requests": "256", "repeats": "5"},
            "This sweep would send 15,360 requests; the page runs at most 2,000",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    client: TestClient, changes: dict[str, Any], message: str
) -> None:
    response = client.post("/load", data={**FORM, **changes}, headers=HX)
    assert response.status_code == 422 and message in html.unescape(response.text), response.text
    db: sqlite3.Connection = client.app.state.db  # type: ignore[attr-defined]
    assert load_runs.list_load_runs(db) == []


def test_without_the_bench_packages_the_page_says_what_to_install(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load_sweeps, "missing_modules", lambda: ["matplotlib"])
    assert "pip install &#39;duet[bench]&#39;" in client.get("/load").text
    refused = client.post("/load", data=FORM, headers=HX)
    assert refused.status_code == 503 and "matplotlib missing" in refused.text


def stored_run(db: sqlite3.Connection, parallel: str, slower: float) -> int:
    """A finished run whose Ollama had OLLAMA_NUM_PARALLEL=`parallel`, its TTFT `slower` times
    test_bench_load's."""
    results = fake_results()
    for result in results:
        for run in result.runs:
            run["median_ttft_ms"] *= slower
    config = json.loads(json.dumps(CONFIG))
    config["engines"]["ollama"]["settings"]["OLLAMA_NUM_PARALLEL"] = parallel
    run = load_runs.create_load_run(db, 1, asdict(DEFAULTS))
    load_runs.save_points(db, run.id, config, [point_document(r) for r in results])
    load_runs.finish_load_run(db, run.id, "complete", None, charts={"ttft": "<svg/>"})
    return run.id


def test_two_runs_side_by_side(client: TestClient) -> None:
    db: sqlite3.Connection = client.app.state.db  # type: ignore[attr-defined]
    before, after = stored_run(db, "1", 2.0), stored_run(db, "4", 1.0)
    listing = client.get("/load").text
    assert 'action="/load/compare"' in listing and f'data-load-id="{after}"' in listing
    page = client.get(f"/load/compare?a={before}&b={after}")
    assert page.status_code == 200
    text = page.text
    assert (
        '<th scope="row">engines.ollama.settings.OLLAMA_NUM_PARALLEL</th><td>1</td><td>4</td>'
        in text
    )
    # vllm direct at concurrency 1: TTFT p50 22 ms before, 11 ms after.
    assert "<td>22</td><td>11</td><td>-50 %</td>" in text
    assert f'src="/load/runs/{before}/charts/ttft.svg"' in text
    assert f'src="/load/runs/{after}/charts/ttft.svg"' in text
    assert f"No chart in run #{before}" not in text
    same = client.get(f"/load/compare?a={before}&b={before}", headers=HX)
    assert same.status_code == 422 and "two different load runs" in same.text
    assert client.get(f"/load/compare?a={before}&b=999").status_code == 404


def test_a_run_left_running_by_a_stopped_server_reads_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "duet.sqlite3"
    db = open_database(path)
    run = load_runs.create_load_run(db, 1, {"routes": ["vllm"]})
    db.close()
    db = open_database(path)
    again = load_runs.get_load_run(db, run.id)
    assert again is not None and again.status == "interrupted" and again.finished_at
    assert "server stopped" in (again.error or "")
    db.close()


def test_in_accounts_mode_only_admins_see_and_use_it(tmp_path: Path) -> None:
    app = build(tmp_path, Settings(mode="accounts"))
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        db: sqlite3.Connection = app.state.db
        _, member = add_user(db, "bob", "user")
        _, admin = add_user(db, "ada", "admin")
        client.cookies.set(COOKIE, member)
        assert client.get("/load").status_code == 403
        refused = client.post("/load", data=FORM, headers=HX)
        assert refused.status_code == 403 and load_runs.list_load_runs(db) == []
        assert 'href="/load"' not in client.get("/").text
        client.cookies.set(COOKIE, admin)
        assert client.get("/load").status_code == 200
        assert 'href="/load"' in client.get("/").text


def test_a_run_cancelled_from_outside_leaves_no_request_sending() -> None:
    """What Stop does to the benchmark's run at one load: every request it had in flight (the
    probe too) is cancelled with it, none left running on the server's event loop."""
    sender = FakeSender(30.0)
    jobs = [Job((f"prompt {i}",)) for i in range(8)]

    async def go() -> int:
        limits = Limits()
        state = new_state(LoadPoint(4), 8, limits)
        run = asyncio.create_task(
            run_once(sender, LoadPoint(4), jobs, limits, random.Random(0), state)
        )
        while sender.in_flight < 4:
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        others = asyncio.all_tasks() - {asyncio.current_task()}
        return sender.in_flight + len(others)

    assert asyncio.run(go()) == 0
