"""`duet bench load` without engines: the metric arithmetic against hand-computed values, the
accounting (completed + failed == sent, whatever stops a run), saturation, arrivals, the
prompts' lengths, and the plots' content."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import pytest
from duet.bench.load import LoadOptions, check_options, requests_for
from duet.bench.load_compare import compare, duet_command, report, vllm_command
from duet.bench.load_config import flag_values, local_process
from duet.bench.load_cost import cost_numbers
from duet.bench.load_metrics import (
    RequestRecord,
    failures_by_cause,
    parse_slos,
    peak_concurrency,
    run_metrics,
    spread,
    tpot,
)
from duet.bench.load_plots import figures, write_plots
from duet.bench.load_report import PointResult, add_duet_overhead, format_table
from duet.bench.load_run import (
    PROBE_PROMPT,
    Limits,
    LoadPoint,
    arrival_offsets,
    new_state,
    run_once,
    saturation,
)
from duet.bench.load_send import Series, cause_of, failed
from duet.bench.load_workload import (
    Job,
    PromptMaker,
    Workload,
    bundled_conversations,
    jobs_for_run,
    tokenizer_source,
)
from duet.bench.relay import message_form

WORKLOAD = Workload("random", 32, 16, thinking=False)


def ok(index: int, start: float, ttft: float, itl: tuple[float, ...], tokens: int) -> RequestRecord:
    latency = ttft + sum(itl)
    return RequestRecord(
        series="vllm direct",
        index=index,
        start_time=start,
        end_time=start + latency,
        success=True,
        ttft=ttft,
        itl=itl,
        latency=latency,
        prompt_tokens=10,
        output_tokens=tokens,
        chunks=len(itl) + 1,
    )


def refused(index: int, start: float, end: float) -> RequestRecord:
    return RequestRecord(
        series="vllm direct",
        index=index,
        start_time=start,
        end_time=end,
        success=False,
        cause="queue full (503)",
        status=503,
    )


# Hand-computed below: TTFT 100 and 300 ms; TPOT (200-100)/3 = 33.33 and (400-300)/1 = 100 ms;
# ITL pooled 20, 30, 50, 100 ms; E2EL 200 and 400 ms; 6 output tokens in 0.5 s.
RECORDS = [
    ok(0, 0.0, 0.1, (0.02, 0.03, 0.05), 4),
    ok(1, 0.05, 0.3, (0.1,), 2),
    refused(2, 0.1, 0.11),
]


def test_the_metrics_are_vllms_over_hand_computed_values() -> None:
    got = run_metrics(RECORDS, 0.5, {"ttft": 250})
    assert (got["completed"], got["failed"]) == (2, 1)
    assert got["failed_by_cause"] == {"queue full (503)": 1}
    assert got["total_input_tokens"] == 20 and got["total_output_tokens"] == 6
    assert got["request_throughput"] == pytest.approx(4.0)
    assert got["output_throughput"] == pytest.approx(12.0)
    assert got["total_token_throughput"] == pytest.approx(52.0)
    assert got["mean_ttft_ms"] == pytest.approx(200) and got["median_ttft_ms"] == pytest.approx(200)
    assert got["std_ttft_ms"] == pytest.approx(100)  # population deviation, as numpy's np.std
    assert got["p99_ttft_ms"] == pytest.approx(100 + 0.99 * 200)  # linear, as np.percentile
    assert got["mean_tpot_ms"] == pytest.approx((100 / 3 + 100) / 2)
    assert got["mean_itl_ms"] == pytest.approx(50) and got["median_itl_ms"] == pytest.approx(40)
    assert got["p90_itl_ms"] == pytest.approx(50 + 0.7 * 50)
    assert got["mean_e2el_ms"] == pytest.approx(300) and got["p50_e2el_ms"] == pytest.approx(300)
    assert got["request_goodput"] == pytest.approx(2.0)  # only the first met TTFT <= 250 ms
    assert got["output_throughput_per_user"] == pytest.approx(1000 / got["median_tpot_ms"])
    # vLLM's one-second buckets: all six chunks in the first second, two requests in it.
    assert got["max_output_tokens_per_s"] == 6 and got["max_concurrent_requests"] == 2
    # Exactly: at 0.1 s the refused request overlapped both others.
    assert got["peak_concurrency"] == 3


def test_goodput_needs_every_slo_and_a_single_token_has_tpot_zero() -> None:
    both = run_metrics(RECORDS, 0.5, {"ttft": 250, "tpot": 50})
    assert both["request_goodput"] == pytest.approx(2.0)
    single = ok(0, 0.0, 0.1, (), 1)
    assert tpot(single) is None
    assert run_metrics([single], 1.0, {"tpot": 1})["request_goodput"] == pytest.approx(1.0)
    assert run_metrics([single], 1.0, {"e2el": 50})["request_goodput"] == 0


def test_no_values_is_none_not_zero_and_chunks_stand_in_for_missing_counts() -> None:
    got = run_metrics([refused(0, 0.0, 1.0)], 1.0)
    assert got["completed"] == 0 and got["median_ttft_ms"] is None
    assert got["output_throughput_per_user"] is None and got["request_goodput"] is None
    uncounted = RequestRecord("s", 0, 0.0, 0.3, True, 0.1, (0.1, 0.1), 0.3, None, None, 3)
    assert run_metrics([uncounted], 1.0)["total_output_tokens"] == 3
    assert tpot(uncounted) == pytest.approx(0.1)


def test_peak_concurrency_does_not_count_one_ending_as_another_starts() -> None:
    back_to_back = [ok(0, 0.0, 0.5, (), 1), ok(1, 0.5, 0.5, (), 1)]
    assert peak_concurrency(back_to_back) == 1
    assert peak_concurrency([]) == 0


def test_spread_is_the_median_and_range_of_the_repeats() -> None:
    runs = [{"a": 1.0, "b": None}, {"a": 5.0, "b": 2.0}, {"a": 3.0, "text": "x"}]
    assert spread(runs) == {
        "a": {"median": 3.0, "min": 1.0, "max": 5.0},
        "b": {"median": 2.0, "min": 2.0, "max": 2.0},
    }


def test_slos_parse_as_vllms_goodput_option() -> None:
    assert parse_slos(["ttft:500", "tpot:50"]) == {"ttft": 500.0, "tpot": 50.0}
    for bad in (["itl:5"], ["ttft:0"], ["ttft:fast"]):
        with pytest.raises(ValueError):
            parse_slos(bad)


@pytest.mark.parametrize(
    ("status", "message", "cause"),
    [
        (503, "server busy, maximum pending requests exceeded", "queue full (503)"),
        (400, "bad request", "refused"),
        (None, "vLLM is not reachable at http://x: refused", "connection"),
        (None, "Ollama closed the connection mid-stream: reset", "connection"),
        (None, "vLLM did not answer in time (TimeoutError)", "timeout"),
        (None, "something else", "engine error"),
    ],
)
def test_failure_causes_follow_the_adapters_words(status, message, cause) -> None:
    assert cause_of(status, message) == cause


def test_saturation_by_failures_and_by_ttft_growing_past_the_ramp() -> None:
    failures = [ok(i, 0, 0.1, (), 1) for i in range(6)] + [refused(i, 0, 1) for i in range(6, 9)]
    assert "3 of 9 requests failed (3 queue full (503))" in saturation(failures, 0, 4.0)
    # A closed loop of 4: the first four queue up, then hold steady: not saturated.
    steady = [ok(i, 0, t, (), 1) for i, t in enumerate([0.1, 1, 2, 3] + [3.1] * 12)]
    assert saturation(steady, 4, 4.0) is None
    growing = [ok(i, 0, 0.2 * (i + 1), (), 1) for i in range(20)]
    assert "TTFT keeps growing" in saturation(growing, 0, 4.0)
    assert saturation(growing[:9], 0, 4.0) is None  # too few to tell


def test_arrivals_are_gamma_with_the_rates_mean_and_burstier_below_one() -> None:
    def gaps(burstiness: float) -> list[float]:
        offsets = arrival_offsets(4001, 4.0, burstiness, random.Random(1))
        return [b - a for a, b in pairwise(offsets)]

    assert arrival_offsets(3, 4.0, 1.0, random.Random(1))[0] == 0.0
    for burstiness in (0.5, 1.0, 4.0):
        assert statistics.fmean(gaps(burstiness)) == pytest.approx(0.25, rel=0.08)
    cv = {b: statistics.pstdev(gaps(b)) / statistics.fmean(gaps(b)) for b in (0.5, 1.0, 4.0)}
    # A gamma's coefficient of variation is 1 / sqrt(shape).
    assert cv[1.0] == pytest.approx(1.0, rel=0.1) and cv[0.5] > 1.3 > 0.7 > cv[4.0]
    assert arrival_offsets(5, 2.0, 1.0, random.Random(7)) == arrival_offsets(
        5, 2.0, 1.0, random.Random(7)
    )


@dataclass
class FakeSender:
    """A sender whose requests take `seconds` and fail with a 503 when `refuse` says so."""

    seconds: float
    refuse: set[int] = field(default_factory=set)
    series: Series = field(default_factory=lambda: Series("ollama", "direct"))
    in_flight: int = 0
    most_in_flight: int = 0
    contents: list[str] = field(default_factory=list)

    async def send(self, content, chat, index, turn, max_tokens=None) -> RequestRecord:
        self.contents.append(content)
        start = asyncio.get_running_loop().time()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.in_flight -= 1
        if index in self.refuse:
            return failed(self.series, index, turn, start, "queue full (503)", "busy", 503)
        return replace(ok(index, start, self.seconds / 2, (self.seconds / 2,), 2), turn=turn)


def one_run(sender, point, jobs, requests, limits=None):
    limits = limits or Limits()

    async def go():
        state = new_state(point, requests, limits)
        return await run_once(sender, point, jobs, limits, random.Random(0), state)

    return asyncio.run(go())


def accounted(outcome) -> None:
    numbers = run_metrics(outcome.records, outcome.duration)
    assert numbers["completed"] + numbers["failed"] == len(outcome.records)
    assert sorted(r.index for r in outcome.records) == list(range(len(outcome.records)))


def test_a_closed_loop_keeps_its_concurrency_and_sends_the_probe_once() -> None:
    sender = FakeSender(0.02)
    jobs = [Job((f"prompt {i}",)) for i in range(10)]
    outcome = one_run(sender, LoadPoint(3), jobs, 10)
    accounted(outcome)
    assert len(outcome.records) == 10 and outcome.stopped_early is None
    # Three requests and, once half were sent, the probe beside them.
    assert sender.most_in_flight == 4
    assert outcome.probe is not None and outcome.probe.success
    assert sender.contents.count(PROBE_PROMPT) == 1


def test_a_saturated_run_stops_early_and_counts_what_it_cancelled() -> None:
    sender = FakeSender(0.05, refuse={0, 1, 2, 3})
    jobs = [Job((f"p{i}",)) for i in range(40)]
    outcome = one_run(sender, LoadPoint(4), jobs, 40)
    accounted(outcome)
    assert outcome.stopped_early.startswith("saturated: ")
    causes = failures_by_cause(outcome.records)
    assert causes["queue full (503)"] >= 3 and len(outcome.records) < 40
    assert all(r.cause in ("queue full (503)", "cancelled: saturated") for r in outcome.records)


def test_the_time_limit_cancels_what_is_in_flight_and_says_so() -> None:
    sender = FakeSender(10.0)
    outcome = one_run(sender, LoadPoint(2), [Job(("a",)), Job(("b",))], 2, Limits(0.2))
    accounted(outcome)
    assert outcome.stopped_early == "time limit: 0.2 s, after 2 of 2 requests"
    assert [r.cause for r in outcome.records] == ["cancelled: time limit"] * 2
    assert outcome.duration < 1.0


def test_a_rate_point_spaces_its_arrivals() -> None:
    sender = FakeSender(0.001)
    jobs = [Job((f"p{i}",)) for i in range(5)]
    outcome = one_run(sender, LoadPoint(None, 20.0, float("1")), jobs, 5)
    accounted(outcome)
    starts = [r.start_time for r in outcome.records]
    assert starts == sorted(starts) and starts[-1] - starts[0] > 0.05
    assert requests_for(LoadPoint(None, 2.0), None) == 60 and requests_for(LoadPoint(8), None) == 32


def test_a_chat_job_sends_its_turns_in_order_and_stops_at_the_runs_count() -> None:
    sender = FakeSender(0.001)
    jobs = jobs_for_run(Workload("chat", 0, 16, False), 5, 3, None)
    outcome = one_run(sender, LoadPoint(1), jobs, 5)
    accounted(outcome)
    assert len(outcome.records) == 5
    # The first chat's three turns, then the second's first two: the run's five requests.
    assert [r.turn for r in outcome.records] == [0, 1, 2, 0, 1]
    chats = bundled_conversations()
    assert [c for c in sender.contents if c != PROBE_PROMPT] == [
        f"(chat 3-0) {chats[0][0]}",
        chats[0][1],
        chats[0][2],
        f"(chat 3-1) {chats[1][0]}",
        chats[1][1],
    ]


def test_every_run_draws_prompts_of_the_asked_length_and_its_own() -> None:
    maker = PromptMaker(tokenizer_source())
    jobs = jobs_for_run(WORKLOAD, 4, seed=1, prompts=maker)
    assert [maker.length(job.turns[0]) for job in jobs] == [32] * 4
    assert jobs != jobs_for_run(WORKLOAD, 4, seed=2, prompts=maker)
    assert jobs == jobs_for_run(WORKLOAD, 4, seed=1, prompts=maker)
    assert maker.length(maker.prompt(300, random.Random(0))) == 300


def test_fixed_output_is_refused_through_duet_whose_form_cannot_carry_it() -> None:
    fixed = Workload("random", 32, 16, False, fixed_output=True)
    options = LoadOptions(("vllm",), ("direct", "duet"), (LoadPoint(1),), fixed, Path("x"))
    assert "--fixed-output needs --paths direct" in check_options(options)
    assert (
        check_options(LoadOptions(("vllm",), ("direct",), (LoadPoint(1),), fixed, Path("x")))
        is None
    )
    assert message_form("ollama", 16, "hi", True, 7) | {} == {
        "content": "hi", "engine": "ollama", "temperature": "0", "top_p": "1", "top_k": "0",
        "max_tokens": "16", "system_prompt": "", "thinking": "on", "conversation_id": "7",
    }  # fmt: skip


def test_duets_cost_per_chunk_and_per_open_stream() -> None:
    mib = 1024 * 1024
    cost = cost_numbers(
        0.5, 1000, 100 * mib, 104 * mib, [(1, 101 * mib), (4, 103 * mib), (2, 104 * mib)]
    )
    assert cost["duet_cpu_ms_per_chunk"] == pytest.approx(0.5)
    assert cost["duet_streams_at_busiest"] == 4
    assert cost["duet_mib_per_open_stream"] == pytest.approx(3 / 4)
    assert cost["duet_rss_peak_mib"] == pytest.approx(104)
    assert cost_numbers(0.1, 0, mib, mib, [])["duet_cpu_ms_per_chunk"] is None


SERIES = [Series(route, path) for route in ("vllm", "ollama") for path in ("direct", "duet")]


def fake_results() -> list[PointResult]:
    results = []
    for s_index, series in enumerate(SERIES):
        for concurrency in (1, 2, 4):
            result = PointResult(series, LoadPoint(concurrency))
            for repeat in range(3):
                base = 10.0 * (s_index + 1) * concurrency + repeat
                result.runs.append(
                    {
                        "repeat": repeat, "sent": 8, "completed": 8, "failed": 0,
                        "failed_by_cause": {}, "stopped_early": None,
                        "median_ttft_ms": base, "p99_ttft_ms": 2 * base,
                        "median_tpot_ms": 20.0 + concurrency,
                        "output_throughput": 30.0 * concurrency,
                        "output_throughput_per_user": 1000 / (20.0 + concurrency),
                    }
                )  # fmt: skip
            results.append(result)
    add_duet_overhead(results)
    return results


def test_through_duet_each_run_gets_its_ttft_over_the_straight_median() -> None:
    results = fake_results()
    through = next(r for r in results if r.series == Series("vllm", "duet") and r.point.x == 2)
    # vllm direct at concurrency 2: 20, 21, 22 (median 21); through Duet 40, 41, 42.
    assert [run["added_ttft_ms"] for run in through.runs] == [19.0, 20.0, 21.0]
    table = format_table(results)
    assert "+TTFT Duet" in table and "vllm duet" in table and "24/24" in table


def test_the_plots_hold_a_labelled_series_per_route_and_path() -> None:
    drawn = figures(fake_results(), "a subtitle")
    assert set(drawn) == {"ttft", "tpot", "throughput", "per_user"}
    labels = {
        "vllm, straight", "vllm, through Duet", "ollama, straight", "ollama, through Duet",
    }  # fmt: skip
    for name, figure in drawn.items():
        for axes in figure.axes:
            legend = {text.get_text() for text in axes.get_legend().get_texts()}
            assert legend == labels, name
            assert axes.get_xlabel() and axes.get_ylabel(), name
    p50, p99 = drawn["ttft"].axes
    assert p50.get_ylabel() == "TTFT p50 (ms)" and p99.get_ylabel() == "TTFT p99 (ms)"
    assert p50.get_xlabel() == "concurrency (requests in flight)"
    # The medians of the repeats, per point: vllm straight's TTFT p50 at 1, 2, 4.
    bars = next(bars for bars in p50.containers if bars.get_label() == "vllm, straight")
    line = bars.lines[0]
    assert list(line.get_xdata()) == [1, 2, 4] and list(line.get_ydata()) == [11.0, 21.0, 41.0]
    assert len(p50.containers) == len(p99.containers) == 4
    per_user = drawn["per_user"].axes[0]
    assert per_user.get_xlabel().startswith("total output tokens/s")


def test_the_svg_files_carry_the_series_and_axes_as_text(tmp_path: Path) -> None:
    written = write_plots(fake_results(), "a subtitle", tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{stem}.{suffix}"
        for stem in ("ttft", "tpot", "throughput", "per_user")
        for suffix in ("png", "svg")
    )
    assert all(p.stat().st_size > 1000 for p in written)
    root = ET.parse(tmp_path / "throughput.svg").getroot()
    texts = {
        "".join(node.itertext()).strip() for node in root.iter("{http://www.w3.org/2000/svg}text")
    }
    assert {"vllm, straight", "ollama, through Duet", "output tokens/s"} <= texts
    assert any(re.fullmatch(r"concurrency \(requests in flight\)", text) for text in texts)
    assert (tmp_path / "ttft.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_comparison_with_vllm_bench_serve_takes_medians_of_the_repeats() -> None:
    duet = [
        {"completed": 20, "median_ttft_ms": t, "median_tpot_ms": 20.0, "output_throughput": 100.0}
        for t in (90, 100, 200)
    ]
    vllm = [
        {"completed": 20, "median_ttft_ms": t, "median_tpot_ms": 22.0, "output_throughput": 96.0}
        for t in (300, 96, 98)
    ]
    rows = compare(duet, vllm)
    # Medians 100 and 98: +2.0 %, within 5 % although single runs differ by far more.
    assert (
        rows["median_ttft_ms"]["duet_median"] == 100 and rows["median_ttft_ms"]["vllm_median"] == 98
    )
    assert rows["median_ttft_ms"]["difference"] == pytest.approx(100 / 98 - 1)
    assert rows["median_ttft_ms"]["within_tolerance"]
    assert not rows["median_tpot_ms"]["within_tolerance"]  # 20 against 22: -9 %
    assert rows["output_throughput"]["difference"] == pytest.approx(100 / 96 - 1)
    assert "over 5%" in report(rows)[2] and report(rows)[1].endswith("ok")
    # vLLM's client writes 0 where every request failed; Duet writes None: neither is a median.
    ours = [{**run, "completed": 20} for run in duet[:2]]
    ours.append({"completed": 0, "median_ttft_ms": None, "median_tpot_ms": None})
    theirs = [{"completed": 0, "median_ttft_ms": 0.0, "median_tpot_ms": 0.0}] * 3
    rows = compare(ours, theirs)
    assert rows["median_ttft_ms"]["duet_median"] == 95  # of 90 and 100; the failed one left out
    assert rows["median_ttft_ms"]["vllm_median"] is None
    assert not rows["median_ttft_ms"]["within_tolerance"]
    assert "not measured by both" in report(rows)[1]


def test_both_tools_get_the_same_workload() -> None:
    args = argparse.Namespace(
        vllm_python=Path("py"), vllm_url="http://127.0.0.1:8000", model="m", tokenizer=Path("t"),
        concurrency=2, requests=20, input_len=128, output_len=64, warmup=2,
    )  # fmt: skip
    theirs = vllm_command(args, 3, Path("out/v.json"))
    ours = duet_command(args, 3, Path("out/d"))

    def value(command: list[str], flag: str) -> str:
        return command[command.index(flag) + 1]

    assert value(theirs, "--max-concurrency") == value(ours, "--concurrency") == "2"
    assert value(theirs, "--num-prompts") == value(ours, "--requests") == "20"
    assert value(theirs, "--random-input-len") == value(ours, "--input-len") == "128"
    assert value(theirs, "--random-output-len") == value(ours, "--output-len") == "64"
    assert "--ignore-eos" in theirs and "--fixed-output" in ours and "--no-probe" in ours
    assert value(theirs, "--temperature") == "0"
    assert json.loads(value(theirs, "--extra-body")) == {
        "chat_template_kwargs": {"enable_thinking": False}
    }


def test_engine_settings_are_read_from_the_command_line_or_recorded_as_defaults() -> None:
    command = ["python", "-m", "vllm", "--max-num-seqs", "16", "--max-model-len=4096"]
    flags = ("--max-num-seqs", "--max-model-len", "--dtype")
    assert flag_values(command, flags) == {
        "--max-num-seqs": "16",
        "--max-model-len": "4096",
        "--dtype": "not set (the engine's default)",
    }
    # Another machine's engine cannot be looked into: its settings are unknown, not defaults.
    assert local_process("http://vllm:8000") is None
