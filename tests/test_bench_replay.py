"""`duet bench load --replay`: Duet's own capacity, driven by the replay source, which
measures Duet, not an engine. Not an engine test: no engine runs here, and nothing here says
anything about vLLM or Ollama; a tiny sweep checks the run end to end (the source and a
`duet serve` started and stopped, both paths, the capacity verdicts) and that every output
says what it measured. The verdict arithmetic is checked on hand-made points.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from duet.bench.load import LoadOptions
from duet.bench.load_replay import (
    LABEL,
    CapacityPoint,
    ReplayOptions,
    capacity,
    limits_passed,
    run_bench_replay,
)
from duet.bench.load_run import LoadPoint
from duet.bench.load_workload import Workload
from duet.bench.replay_source import Pace

pytestmark = pytest.mark.replay

SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def point(concurrency: int, within: bool, kept_pace: bool = True) -> CapacityPoint:
    return CapacityPoint(
        route="vllm",
        concurrency=concurrency,
        added_ttft_ms=1.0,
        added_itl_ms=0.0,
        added_e2el_ms=2.0,
        cpu_ms_per_chunk=0.1,
        mib_per_open_stream=0.01,
        chunks_per_s=100.0 * concurrency,
        straight_pace=1.01,
        straight_kept_pace=kept_pace,
        within=within,
        why_not=() if within else ("+TTFT p50 30.0 > 25 ms",),
    )


def test_the_capacity_is_the_largest_concurrency_before_the_first_point_past_a_limit() -> None:
    verdict = capacity([point(1, True), point(8, True), point(32, False), point(64, True)])
    assert verdict["vllm"]["largest_within"] == 8
    assert verdict["vllm"]["first_past"] == 32
    assert capacity([point(1, False)])["vllm"]["largest_within"] is None
    whole = capacity([point(1, True), point(8, True, kept_pace=False)])["vllm"]
    assert (whole["largest_within"], whole["first_past"]) == (8, None)
    assert whole["straight_fell_behind_at"] == [8]


def test_the_limits_are_on_added_ttft_itl_and_e2el_and_unmeasured_is_past() -> None:
    replay = ReplayOptions(Pace(100), max_added_ttft_ms=25)
    assert replay.itl_limit_ms == pytest.approx(1.0)  # a tenth of 10 ms
    fine = {"added_ttft_ms": 24.0, "added_itl_ms": 0.9, "added_e2el_ms": 24.5}
    assert limits_passed(fine, replay) == ()
    behind = {**fine, "added_itl_ms": -2.0, "added_e2el_ms": 80.0}
    assert limits_passed(behind, replay) == ("+E2EL p50 80.0 > 25 ms",)
    assert limits_passed({**fine, "added_itl_ms": 1.5}, replay) == ("+ITL p50 1.5 > 1 ms",)
    assert limits_passed({**fine, "added_ttft_ms": None}, replay) == ("TTFT not measured",)


def test_a_replay_run_needs_both_paths_and_a_pace(tmp_path: Path) -> None:
    options = LoadOptions(
        routes=("vllm",),
        paths=("duet",),
        points=(LoadPoint(1),),
        workload=Workload("random", 16, 64, thinking=False),
        out=tmp_path,
    )
    assert run_bench_replay(options, ReplayOptions(Pace(100))) == 2
    both = replace(options, paths=("direct", "duet"))
    assert run_bench_replay(both, ReplayOptions(Pace(0))) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_tiny_replay_sweep_end_to_end_says_it_measures_duet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = LoadOptions(
        routes=("vllm", "ollama"),
        paths=("direct", "duet"),
        points=(LoadPoint(1), LoadPoint(4)),
        workload=Workload("random", 16, 64, thinking=False),
        out=tmp_path,
        requests=4,
        repeats=1,
        warmup=1,
        progress=False,
    )
    assert run_bench_replay(options, ReplayOptions(Pace(400, first_token_ms=5))) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(LABEL)
    assert "Capacity (added TTFT and E2EL p50 at most 25 ms" in printed

    document = json.loads((tmp_path / "load.json").read_text())
    assert document["source"] == LABEL and LABEL in document["benchmark"]
    assert document["complete"] is True
    assert set(document["engines"]) == {"replay source"}
    assert set(document["capacity"]) == {"vllm", "ollama"}
    for capacity_point in document["capacity_points"]:  # what the machine did meanwhile
        assert 0 <= capacity_point["machine_idle_share"] <= 1
        assert capacity_point["benchmark_cores"] > 0 and capacity_point["other_cores"] >= 0
    for result in document["results"]:
        run = result["runs"][0]
        assert run["completed"] == run["sent"] == 4, result["series"]
        if result["path"] == "duet":
            assert run["added_itl_ms"] is not None and run["duet_cpu_ms_per_chunk"] > 0
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["source"] == LABEL for line in lines)

    for stem in ("capacity", "ttft", "tpot", "throughput", "per_user"):
        root = ET.parse(tmp_path / f"{stem}.svg").getroot()
        texts = " ".join("".join(node.itertext()) for node in root.iter(SVG_TEXT))
        assert LABEL in texts, stem
    capacity_texts = {
        "".join(node.itertext()).strip()
        for node in ET.parse(tmp_path / "capacity.svg").getroot().iter(SVG_TEXT)
    }
    assert {"vllm, through Duet", "ollama, through Duet", "added ITL p50 (ms)"} <= capacity_texts
