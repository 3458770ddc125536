"""`duet bench load` against the real engines: a small sweep on every route and both paths,
vLLM held to a fixed output length, and Ollama's own 503s when its queue is full, every one
of them in the report (completed + failed == sent at every point)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from duet.bench.load import LoadOptions, measure
from duet.bench.load_plots import write_plots
from duet.bench.load_report import PointResult, write_documents
from duet.bench.load_run import LoadPoint
from duet.bench.load_workload import Workload
from duet.devstack import DevStack
from duet.settings import Settings

pytestmark = pytest.mark.engines

# An Ollama of this test's own, with one slot and a queue of one, that unloads the model as
# soon as it is idle. Ollama refuses a request with 503 (OLLAMA_MAX_QUEUE) only while its
# scheduler holds requests back, as it does while it loads a model; once the model is loaded
# it hands every request to the model's runner, where they wait for a slot however many
# there are (server/sched.go, llm/server.go in v0.24.0). So each run here starts with the
# model unloaded and six requests at once: the scheduler keeps one, and refuses the rest.
SMALL_QUEUE_PORT = 21600


def small_run(out: Path, **changes: object) -> LoadOptions:
    """A short run: the tests change only what they are about."""
    base = LoadOptions(
        routes=("vllm",),
        paths=("direct",),
        points=(LoadPoint(1),),
        workload=Workload("random", 32, 12, thinking=False),
        out=out,
        requests=3,
        repeats=1,
        warmup=1,
        progress=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def accounted(results: list[PointResult]) -> None:
    for result in results:
        for run in result.runs:
            assert run["completed"] + run["failed"] == run["sent"], (result.series, run)
            assert sum(run["failed_by_cause"].values()) == run["failed"]


def test_a_small_sweep_on_every_route_and_both_paths(
    engine_settings: Settings, tmp_path: Path
) -> None:
    options = small_run(
        tmp_path,
        routes=("vllm", "ollama", "ollama-openai"),
        paths=("direct", "duet"),
        points=(LoadPoint(1), LoadPoint(2)),
    )
    config, results = measure(options, engine_settings)
    accounted(results)
    assert len(results) == 3 * 2 * 2
    for result in results:
        (run,) = result.runs
        assert run["completed"] == 3, (result.series, run)
        # The tiny model answers a random prompt at more length than 12 tokens: the cap holds.
        assert run["total_output_tokens"] == 3 * 12, result.series
        assert run["median_ttft_ms"] > 0 and run["median_tpot_ms"] > 0
        assert run["probe_ttft_ms"] > 0
        assert run["peak_concurrency"] <= result.point.concurrency + 1  # the probe beside them
        if result.series.path == "duet":
            assert run["duet_chunks_relayed"] >= 3 * 12
            assert run["duet_cpu_ms_per_chunk"] > 0 and run["added_ttft_ms"] is not None
        else:
            assert "duet_cpu_ms_per_chunk" not in run
    assert config["engines"]["vllm"]["version"] and config["engines"]["ollama"]["version"]
    assert config["engines"]["ollama"]["loaded_context_length"] and config["complete"]
    summary, raw = write_documents(tmp_path, config, results)
    lines = raw.read_text().splitlines()
    assert len(lines) == 12 * 3 + 12  # every request, and each run's probe
    plots = write_plots(results, "test", tmp_path)
    svg = (tmp_path / "ttft.svg").read_text()
    for label in ("vllm, straight", "ollama-openai, through Duet", "ollama, through Duet"):
        assert label in svg
    assert summary.exists() and len(plots) == 8


def test_vllm_straight_gives_exactly_the_asked_length_with_fixed_output(
    engine_settings: Settings, tmp_path: Path
) -> None:
    # The tiny model stops a random prompt's answer well before 48 tokens of its own accord.
    options = small_run(
        tmp_path,
        points=(LoadPoint(2),),
        workload=Workload("random", 32, 48, thinking=False, fixed_output=True),
        requests=2,
        warmup=0,
    )
    _, results = measure(options, engine_settings)
    (result,) = results
    assert [r.output_tokens for r in result.outcomes[0].records] == [48, 48]
    capped = replace(options, workload=replace(options.workload, fixed_output=False))
    _, results = measure(capped, engine_settings)
    assert all(r.output_tokens < 48 for r in results[0].outcomes[0].records)


@pytest.fixture
def small_queue_ollama(dev_stack: DevStack, tmp_path: Path) -> Iterator[str]:
    """The dev stack's Ollama binary and model store, served again on a port of its own as
    said above; stopped (by its PID) when the test ends."""
    url = f"http://127.0.0.1:{SMALL_QUEUE_PORT}"
    env = os.environ | {
        "OLLAMA_HOST": f"127.0.0.1:{SMALL_QUEUE_PORT}",
        "OLLAMA_MODELS": str(dev_stack.paths.ollama_models),
        "OLLAMA_NUM_PARALLEL": "1",
        "OLLAMA_MAX_QUEUE": "1",
        "OLLAMA_KEEP_ALIVE": "0",
        "OLLAMA_CONTEXT_LENGTH": "4096",
        "OLLAMA_NOPRUNE": "1",  # the store is shared with the dev stack's Ollama: prune nothing
    }
    with open(tmp_path / "ollama.log", "wb") as log:
        process = subprocess.Popen(
            [str(dev_stack.paths.ollama_binary), "serve"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/api/tags", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail(f"Ollama did not start on {url}:\n{(tmp_path / 'ollama.log').read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_ollamas_503s_with_a_full_queue_are_counted_on_both_paths(
    engine_settings: Settings, small_queue_ollama: str, tmp_path: Path
) -> None:
    settings = replace(engine_settings, ollama_url=small_queue_ollama)
    options = small_run(
        tmp_path,
        routes=("ollama", "ollama-openai"),
        paths=("direct", "duet"),
        points=(LoadPoint(6),),
        workload=Workload("random", 32, 24, thinking=False),
        requests=12,
        warmup=0,
    )
    config, results = measure(options, settings)
    accounted(results)
    assert config["engines"]["ollama"]["settings"]["OLLAMA_MAX_QUEUE"] == "1"
    for result in results:
        (outcome,) = result.outcomes
        refused = [r for r in outcome.records if r.cause == "queue full (503)"]
        assert refused, (result.series, result.runs[0]["failed_by_cause"])
        assert all(r.status == 503 for r in refused)
