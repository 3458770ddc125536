"""The relay benchmark (`duet.bench`): its arithmetic on hand-made measurements, its verdicts,
what a run writes, the SSE reader it shares with the tests, and the reference relay's stamps
against the real engines.

The benchmark itself runs against the real engines and prints numbers (docs/benchmarks/); these
tests only pin down how it pairs, summarises and judges what it measured, and that the floor it
measures Duet against stamps the right moment.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import aiohttp
import pytest
from app_server import serve_asgi
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.bench.measured import (
    ACCOUNTS_PATHS,
    PATHS,
    EngineResult,
    Measured,
    PathName,
    Run,
    added_ttft_ms,
    mark_stalls,
)
from duet.bench.reference_relay import create_relay
from duet.bench.relay import (
    CLIENT_KEEP_ALIVE_SECONDS,
    COOKIE,
    DuetStream,
    DuetUnderTest,
    Rounds,
    api_body,
    bench_client,
    bench_request,
    create_account,
    duet_environment,
    reference_relay_command,
    run_bench_relay,
    run_paths,
    run_rounds,
    send_message,
    server_timing_ms,
    sign_in,
    stream_through_duet,
    stream_through_reference,
)
from duet.bench.report import raw_document, report_lines, summary_document
from duet.bench.sse_client import ServerSentEvent, parse_events, stamped_events
from duet.bench.stall_watch import Stall, StallWatch, overlap_ms, watch
from duet.bench.summary import (
    LOCAL,
    SIGNED_IN,
    describe_verdict,
    duet_rows,
    format_table,
    missed,
    rows_of,
    summarize,
    verdicts,
)
from duet.engines import build_engines
from duet.settings import Settings
from duet.sse import format_event


def direct(ttft: float, pre_wire: float, chunks: int = 3) -> Measured:
    return Measured("direct", ttft, chunks, (10.0, 10.0), pre_wire_ms=pre_wire)


def through_duet(
    ttft: float,
    server_ttft: float,
    chunks: int = 3,
    pre_wire: float = 1.0,
    path: PathName = "duet",
) -> Measured:
    return Measured(
        path,
        ttft,
        chunks,
        (10.0, 10.5),
        server_ttft_ms=server_ttft,
        before_engine_ms=1.0,
        pre_wire_ms=pre_wire,
    )


def through_reference(added: float, engine_ms: float = 30.0, chunks: int = 3) -> Measured:
    """A request through the reference relay that added `added` ms (its pre-wire time is 1 ms)."""
    return Measured(
        "reference",
        engine_ms + 1.0 + added,
        chunks,
        (10.0, 10.0),
        server_ttft_ms=engine_ms,
        pre_wire_ms=1.0,
    )


def engine_result(
    duet_added: list[float], reference_added: list[float], chunks: int = 3
) -> EngineResult:
    """One engine's run with the added TTFT of each request through Duet and the reference."""
    result = EngineResult("vllm")
    for added in duet_added:
        result.direct.append(direct(31.0, 1.0))
        result.duet.append(through_duet(31.0 + added, 30.0, chunks=chunks))
        # Through /v1 the same Duet adds a little more here (not a measurement: test data).
        result.api.append(through_duet(31.2 + added, 30.0, chunks=chunks, path="api"))
    result.reference.extend(through_reference(added) for added in reference_added)
    return result


def with_accounts(
    result: EngineResult, signed_in_added: list[float], chunks: int = 3
) -> EngineResult:
    """The same run with accounts on: the path through Duet signed in added these."""
    signed_in = [
        through_duet(31.0 + added, 30.0, chunks=chunks, path="signed_in")
        for added in signed_in_added
    ]
    return replace(result, signed_in=signed_in, paths=ACCOUNTS_PATHS)


def test_added_ttft_takes_out_the_engine_and_the_clients_own_pre_wire_time() -> None:
    # Engine 30 ms from the wire; this client needs 1.2 ms to put a request on the wire.
    # Through Duet the client saw 34 ms while Duet's server saw 30 ms: 4 ms beyond the engine,
    # of which 1.2 ms is the client's own (it pays that on a direct request too).
    assert added_ttft_ms(through_duet(34.0, 30.0, pre_wire=1.2)) == 2.8
    assert added_ttft_ms(through_duet(34.0, None)) is None  # type: ignore[arg-type]


def test_summary_pairs_requests_in_order_and_checks_the_targets() -> None:
    result = EngineResult("vllm")
    # The engine's TTFT swings from 30 to 300 ms, and the client once takes 80 ms before its
    # requests leave; what Duet adds stays at 1.5 ms (the delay is the client's own).
    for engine_ms, pre_wire in ((30.0, 1.0), (300.0, 80.0), (45.0, 1.0)):
        result.direct.append(direct(engine_ms + pre_wire, pre_wire))
        result.duet.append(through_duet(engine_ms + pre_wire + 1.5, engine_ms, pre_wire=pre_wire))
        result.reference.append(through_reference(1.0, engine_ms))
    summary = summarize(result)
    assert summary["requests"] == 3
    assert summary["client_pre_wire_p50_ms"] == 1.0
    assert summary["stalled_requests"] == [0, 0, 0, 0]
    assert summary["added_ttft_p50_ms"] == 1.5
    assert summary["added_ttft_max_ms"] == 1.5
    assert summary["reference_added_ttft_p50_ms"] == 1.0
    assert summary["duet_beyond_reference_p50_ms"] == 0.5
    assert summary["chunk_counts_identical"] is True
    assert summary["itl_p50_ratio"] == 1.025  # gaps of 10 ms direct; 10 and 10.5 through Duet
    assert missed(verdicts(summary)) == []

    result.duet[1] = through_duet(330.0, 300.0, chunks=2)
    summary = summarize(result)
    assert summary["chunk_counts_differing"] == 1
    assert missed(verdicts(summary)) == ["added TTFT p95", "chunk counts"]


def test_the_added_ttft_p50_target_is_the_reference_relays_p50_of_the_same_run_plus_1_ms() -> None:
    # Duet adds 1.9 ms: within 1 ms of a reference relay that adds 1.0 ms, not of one at 0.8 ms.
    met = verdicts(summarize(engine_result([1.9] * 5, [1.0] * 5)))
    assert missed(met) == []
    assert met[0].measured == "1.90 ms"
    assert met[0].target == "<= 2.00 ms (the reference relay's 1.00 ms + 1.0 ms)"
    assert missed(verdicts(summarize(engine_result([1.9] * 5, [0.8] * 5)))) == ["added TTFT p50"]
    # Without the reference relay's number there is nothing to meet.
    assert missed(verdicts(summarize(engine_result([0.1] * 5, [])))) == ["added TTFT p50"]


def test_the_added_ttft_p95_target_is_10_ms_whatever_the_reference_relay_did() -> None:
    # Two requests in twenty add 12 ms through Duet; the reference relay was as slow twice.
    slow_twice = [12.0 if index in (4, 13) else 1.5 for index in range(20)]
    summary = summarize(engine_result(slow_twice, [1.0 if a < 12 else a for a in slow_twice]))
    assert summary["added_ttft_p50_ms"] == 1.5
    checks = verdicts(summary)
    assert missed(checks) == ["added TTFT p95"]
    assert checks[1].describe() == "added TTFT p95: 12.00 ms; target <= 10 ms: MISSED"
    assert missed(verdicts(summarize(engine_result([1.5] * 20, [1.0] * 20)))) == []


def test_the_itl_p50_through_duet_must_stay_within_5_percent_of_the_direct_one() -> None:
    result = engine_result([1.5] * 4, [1.0] * 4)
    assert missed(verdicts(summarize(result))) == []  # 10.25 / 10 ms
    result.duet[:] = [replace(m, itl_ms=(11.0, 11.0)) for m in result.duet]  # 10 % slower
    checks = verdicts(summarize(result))
    assert missed(checks) == ["ITL p50 ratio"]
    assert checks[3].describe() == (
        "ITL p50 ratio: Duet 11.00 ms / direct 10.00 ms = 1.100; target 0.95-1.05: MISSED"
    )


def test_the_printed_verdict_says_each_target_and_what_was_measured() -> None:
    summary = summarize(engine_result([1.9] * 5, [0.5] * 5, chunks=4))
    assert describe_verdict("vllm", verdicts(summary)) == [
        "vllm: MISSED added TTFT p50, chunk counts",
        "  added TTFT p50: 1.90 ms; target <= 1.50 ms (the reference relay's 0.50 ms + 1.0 ms)"
        ": MISSED",
        "  added TTFT p95: 1.90 ms; target <= 10 ms: met",
        "  chunk counts: direct 3, Duet 4; 5 of 5 pairs differ; target identical in every pair"
        ": MISSED",
        "  ITL p50 ratio: Duet 10.25 ms / direct 10.00 ms = 1.025; target 0.95-1.05: met",
    ]
    assert describe_verdict("ollama", verdicts(summarize(engine_result([1.2], [0.5]))))[0] == (
        "ollama: all targets met"
    )


async def test_each_request_of_a_run_starts_after_the_settling_pause_in_rotating_order() -> None:
    calls: list[tuple[str, float, float]] = []

    async def one(path: PathName) -> Measured:
        started = time.perf_counter()
        await asyncio.sleep(0)
        calls.append((path, started, time.perf_counter()))
        return Measured(path=path, ttft_ms=1.0, chunks=1, itl_ms=())

    paths: tuple[PathName, ...] = ("direct", "duet", "reference")
    given = [
        (path, measured.path)
        async for path, measured in run_rounds(
            one, paths, Rounds(3, warmup=1, settle_seconds=0.05), "test"
        )
    ]
    # The warm-up round runs but is not given; then each round starts one path later.
    assert [path for path, _ in given] == [
        "direct", "duet", "reference", "duet", "reference", "direct",
        "reference", "direct", "duet",
    ]  # fmt: skip
    assert all(path == measured for path, measured in given)
    assert len(calls) == 12
    gaps = [later[1] - earlier[2] for earlier, later in pairwise(calls)]
    assert min(gaps) >= 0.05


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"requests": 0}, "--requests must be at least 1"),
        ({"settle_seconds": -0.001}, "--settle-ms must not be negative"),
        ({"engine_names": ["nope"]}, "unknown engine 'nope'"),
    ],
)
def test_a_relay_run_refuses_bad_arguments_before_it_starts_anything(
    arguments: dict, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    given = {"engine_names": ["vllm"], "requests": 3, "max_tokens": 4, **arguments}
    assert run_bench_relay(**given) == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("paths", [PATHS, ACCOUNTS_PATHS])
def test_every_number_is_one_row_of_the_table_and_one_key_of_the_summary(
    paths: tuple[PathName, ...],
) -> None:
    result = engine_result([1.5] * 3, [1.0] * 3)
    if paths == ACCOUNTS_PATHS:
        result = with_accounts(result, [2.5] * 3)
    summary = summarize(result)
    rows = rows_of(paths)
    keys = [row.key for row in rows]
    assert len(set(keys)) == len(keys), "two rows share a key: one would hide the other"
    labels = [row.label for row in rows]
    assert len(set(labels)) == len(labels), "two rows share a label"
    assert list(summary) == ["engine", *keys]
    table = format_table([summary, {**summary, "engine": "ollama"}]).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[0].split() == ["vllm", "ollama"]
    assert table[2 + keys.index("added_ttft_p50_ms")].split()[-2:] == ["1.50", "1.50"]


def test_a_run_without_accounts_has_no_signed_in_numbers() -> None:
    summary = summarize(engine_result([1.5] * 3, [1.0] * 3))
    assert not [key for key in summary if key.startswith("signed_in")]
    assert "signed in" not in format_table([summary]).replace("[,signed in]", "")
    assert summary["stalled_requests"] == [0, 0, 0, 0]


def test_with_accounts_the_signed_in_path_has_every_number_of_duets_and_its_own_verdict() -> None:
    # Duet in local mode adds 1.5 ms, signed in 2.5 ms, the reference relay 1.0 ms: the target
    # (the reference's p50 + 1 ms) is met by the one and missed by the other.
    summary = summarize(with_accounts(engine_result([1.5] * 5, [1.0] * 5), [2.5] * 5))
    for row in duet_rows(LOCAL):
        assert SIGNED_IN.key(row.key) in summary, row.key
    assert summary["added_ttft_p50_ms"] == 1.5
    assert summary["signed_in_added_ttft_p50_ms"] == 2.5
    assert summary["signed_in_over_local_added_ttft_p50_ms"] == 1.0
    assert summary["stalled_requests"] == [0, 0, 0, 0, 0]
    assert missed(verdicts(summary)) == []
    checks = verdicts(summary, SIGNED_IN)
    assert missed(checks) == ["added TTFT p50"]
    assert checks[0].describe() == (
        "added TTFT p50: 2.50 ms; target <= 2.00 ms (the reference relay's 1.00 ms + 1.0 ms)"
        ": MISSED"
    )
    assert checks[3].describe().startswith("ITL p50 ratio: Duet signed in 10.25 ms / direct")
    table = format_table([summary])
    assert "added TTFT p50, signed in (ms) [<= ref + 1.0]" in table
    assert "chunk counts identical, signed in" in table


def test_the_signed_in_paths_chunk_counts_are_paired_with_the_direct_requests() -> None:
    summary = summarize(with_accounts(engine_result([1.5] * 4, [1.0] * 4), [1.5] * 4, chunks=5))
    checks = verdicts(summary, SIGNED_IN)
    assert missed(checks) == ["chunk counts"]
    assert checks[2].measured == "direct 3, Duet signed in 5; 4 of 4 pairs differ"
    assert missed(verdicts(summary)) == []


def a_run(requests: int, accounts: bool = False) -> Run:
    results = tuple(
        replace(engine_result([1.5] * requests, [1.0] * requests), engine=engine)
        for engine in ("vllm", "ollama")
    )
    if accounts:
        results = tuple(with_accounts(result, [1.8] * requests) for result in results)
    return Run(
        command="duet bench relay",
        date="2026-12-01T08:00:00+0000",
        machine="a test",
        load_before=(1.0, 1.0, 1.0),
        load_after=(1.0, 1.0, 1.0),
        prompt="Tell me",
        max_tokens=64,
        requests=requests,
        warmup_rounds=2,
        stalls=(Stall(1.0, 1.5),),
        results=results,
        workdir=Path("/tmp"),
        paths=ACCOUNTS_PATHS if accounts else PATHS,
    )


def test_the_summary_document_stays_small_and_the_raw_one_holds_every_request() -> None:
    run = a_run(requests=200)
    summaries = [summarize(result) for result in run.results]
    summary_text = json.dumps(summary_document(run, summaries), indent=2)
    assert len(summary_text.splitlines()) < 400
    document = json.loads(summary_text)
    assert [engine["engine"] for engine in document["engines"]] == ["vllm", "ollama"]
    assert document["engines"][0]["added_ttft_p50_ms"] == 1.5
    assert [c["met"] for c in document["engines"][0]["verdicts"]["all_requests"]] == [True] * 4
    assert "requests" not in document and document["requests_per_path"] == 200
    raw = raw_document(run)
    assert len(raw["requests"]["vllm"]) == 4 * 200
    assert raw["requests"]["vllm"][0]["path"] == "direct"
    report = "\n".join(report_lines(run, summaries))
    assert "machine stalls (the watcher woke 100+ ms late): 1, of 500 ms" in report
    assert "vllm: all targets met" in report and "ollama: all targets met" in report
    assert "accounts: off" in report and "signed in:" not in report
    assert document["accounts"] is False and list(document["paths"]) == list(PATHS)


def test_with_accounts_the_report_and_both_documents_say_so() -> None:
    run = a_run(requests=4, accounts=True)
    # A machine stall caught one request through Duet signed in.
    stalled = replace(run.results[0].signed_in[2], stalled_ms=300.0)
    run.results[0].signed_in[2] = stalled
    summaries = [summarize(result) for result in run.results]
    report = report_lines(run, summaries)
    assert any(line.startswith("accounts: on, the path 'signed in': ") for line in report)
    assert "vllm: all targets met" in report
    assert "vllm, signed in: all targets met" in report
    assert (
        "vllm, signed in, the 3 requests through Duet signed in clear of machine stalls:"
        " all targets met"
    ) in report
    assert "ollama, signed in: all targets met" in report
    document = json.loads(json.dumps(summary_document(run, summaries)))
    assert document["accounts"] is True
    assert "DUET_MODE=accounts" in document["paths"]["signed_in"]
    vllm = document["engines"][0]
    assert vllm["signed_in_added_ttft_p50_ms"] == 1.8
    assert list(vllm["verdicts"]) == [
        "all_requests",
        "api_all_requests",
        "signed_in_all_requests",
        "signed_in_clear_of_stalls",
    ]
    raw = raw_document(run)
    assert len(raw["requests"]["vllm"]) == 5 * 4
    assert raw["requests"]["vllm"][-1]["path"] == "signed_in"


def test_each_round_rotates_over_every_path_of_the_run() -> None:
    local = DuetUnderTest("duet", "http://127.0.0.1:1")
    signed_in = DuetUnderTest("signed_in", "http://127.0.0.1:2", {"Cookie": "duet_session=x"})
    api = DuetUnderTest("api", local.url, {"Authorization": "Bearer x"})
    assert run_paths([local, api]) == PATHS
    assert run_paths([local, api, signed_in]) == ACCOUNTS_PATHS
    nginx = DuetUnderTest("nginx", "https://127.0.0.1:3")
    assert run_paths([nginx, local], reference=False) == ("direct", "duet", "nginx")


def test_the_signed_in_duet_runs_in_accounts_mode_on_a_database_of_its_own() -> None:
    database = Path("/tmp/bench-signed_in.sqlite3")
    served = Settings.from_env(duet_environment(Settings(), database, "accounts"))
    assert served.mode == "accounts"
    assert served.database == str(database)
    assert Settings.from_env(duet_environment(Settings(), database)).mode == "local"


async def test_the_benchmarks_account_signs_in_and_its_cookie_carries_the_whole_path(
    tmp_path: Path,
) -> None:
    """The account made in the database before Duet starts signs in through the form, and
    with its cookie both requests of the path pass: the answer's stream is read to its end
    (the engine is down here, so the answer failed). Without it Duet refuses the send."""
    database = tmp_path / "duet.sqlite3"
    create_account(database, "bench", "a password long enough")
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    app = create_app(Settings(mode="accounts"), engines=engines, database=database)  # type: ignore[arg-type]
    with serve_asgi(app) as url:
        token = sign_in(url, "bench", "a password long enough")
        with pytest.raises(RuntimeError, match="failed"):
            sign_in(url, "bench", "not the password at all")
        signed_in = DuetUnderTest("signed_in", url, {"Cookie": f"{COOKIE}={token}"})
        async with bench_client() as client:
            with pytest.raises(RuntimeError, match=r"ended failed"):
                await stream_through_duet(client, signed_in, "vllm", 8)
            with pytest.raises(RuntimeError, match=r"refused the request \(401\)"):
                await send_message(client, replace(signed_in, headers={}), "vllm", 8)


async def stamped(lines: list[tuple[float, str]]) -> AsyncIterator[tuple[float, str]]:
    for line in lines:
        yield line


def test_events_end_at_a_blank_line_and_comments_are_skipped() -> None:
    lines = [
        ": waiting",
        "",
        "id: 3",
        "event: answer",
        'data: {"text": "Hel"}',
        "",
        "data: first line",
        "data:second line",
        "",
        "event: nothing",
        "",
        "data: [DONE]",
    ]
    assert list(parse_events(lines)) == [
        ServerSentEvent("answer", '{"text": "Hel"}', "3"),
        ServerSentEvent("message", "first line\nsecond line"),
    ]


async def test_duets_own_events_read_back_with_or_without_their_blank_lines() -> None:
    written = (
        format_event("sent", {"t": 0.0}, 0) + b": waiting\n\n" + format_event("end", {"s": 2}, 1)
    ).decode()
    expected = [ServerSentEvent("sent", '{"t":0.0}', "0"), ServerSentEvent("end", '{"s":2}', "1")]
    assert list(parse_events(written.split("\n"))) == expected
    # As `read_lines` hands them over: blank lines dropped, each line stamped on arrival.
    lines = [(float(at), line) for at, line in enumerate(written.split("\n")) if line]
    assert [item async for item in stamped_events(stamped(lines))] == [
        (2.0, expected[0]),
        (8.0, expected[1]),
    ]


async def test_duets_stream_gives_the_first_chunks_time_in_and_out_of_duet() -> None:
    """Duet received the POST at 10.000 s (this machine's clock), put the engine request on the
    wire 1 ms later, read the first text 20 ms after that and wrote it at 20.3 ms; this client
    read it at 10.0218 s: 0.5 ms on the way out."""
    events = [
        ServerSentEvent(
            "sent", json.dumps({"t": 0.0, "after_receipt_ms": 1.0, "received_at": 10.0})
        ),
        ServerSentEvent("answer", json.dumps({"text": "Hel", "t": 20.0, "s": 20.3, "chunk": 0})),
        ServerSentEvent("answer", json.dumps({"text": "lo", "t": 30.0, "s": 30.1, "chunk": 1})),
        ServerSentEvent("end", json.dumps({"status": "complete", "error": None})),
    ]
    stream = DuetStream()
    for arrived, event in zip((10.0, 10.0218, 10.0315, 10.032), events, strict=True):
        stream.read(arrived, event)
    assert stream.status == "complete"
    assert stream.server_ts == [20.0, 30.0]
    assert round(stream.first_chunk_held_ms or 0, 3) == 0.3
    assert round(stream.first_chunk_out_ms or 0, 3) == 0.5
    assert [a.chunk for a in stream.arrivals] == [0, 1]


def test_the_relays_under_test_keep_idle_connections_longer_than_the_benchs_clients() -> None:
    """Else a client now and then sends a POST on a connection the relay is closing at that
    moment, and the request fails (aiohttp retries only idempotent ones)."""
    served = Settings.from_env(duet_environment(Settings(), Path("/tmp/bench.sqlite3")))
    assert served.keep_alive_timeout > CLIENT_KEEP_ALIVE_SECONDS
    command = reference_relay_command(Settings(), 18601)
    assert float(command[command.index("--keep-alive") + 1]) > CLIENT_KEEP_ALIVE_SECONDS


def test_the_watcher_notes_only_wake_ups_that_came_far_too_late() -> None:
    # A clock that moves as scripted: the watcher asks for 5 ms and wakes 5.2 ms, 30 ms (the
    # scheduler, busy cores) and 405 ms (the machine stood still) after its previous wake-up.
    readings = iter([0.0, 0.0052, 0.0352, 0.4402, 0.4452, 0.4453])
    wakes = iter([False, False, False, False, True])
    stalls = watch(
        lambda: next(wakes),
        interval=0.005,
        stall_ms=100,
        clock=lambda: next(readings),
        sleep=lambda seconds: None,
    )
    assert stalls == [Stall(start=0.0352 + 0.005, end=0.4402)]
    assert round(stalls[0].ms, 3) == 400.0


def test_a_stall_that_ends_with_the_stop_request_is_still_seen() -> None:
    # Frozen right after its first look at the clock, the watcher is thawed with the stop
    # request already waiting: it never sleeps again, yet the stall is in its report.
    readings = iter([0.0, 0.5])
    stalls = watch(
        lambda: True, interval=0.005, clock=lambda: next(readings), sleep=lambda seconds: None
    )
    assert stalls == [Stall(start=0.005, end=0.5)]


def test_a_stall_counts_for_the_requests_it_overlaps() -> None:
    stalls = [Stall(10.0, 10.5), Stall(20.0, 20.1)]
    assert overlap_ms(stalls, 9.0, 9.9) == 0.0
    assert round(overlap_ms(stalls, 10.4, 11.0), 3) == 100.0
    assert round(overlap_ms(stalls, 9.0, 21.0), 3) == 600.0
    caught = replace(through_duet(610.0, 30.0), started_at=10.0, first_text_at=10.61)
    assert mark_stalls(caught, stalls).stalled_ms == 500.0
    assert mark_stalls(through_duet(34.0, 30.0), stalls).stalled_ms == 0.0  # no stamps: left be


def test_the_summary_gives_the_added_time_clear_of_machine_stalls_beside_the_whole() -> None:
    result = EngineResult("vllm")
    for index in range(20):
        result.direct.append(direct(31.0, 1.0))
        # One request in twenty was caught in a 500 ms stall while Duet held its first chunk.
        added = 501.5 if index == 7 else 1.5
        measured = through_duet(30.0 + 1.0 + added, 30.0)
        result.duet.append(replace(measured, stalled_ms=500.0 if index == 7 else 0.0))
    result.reference.extend(through_reference(1.0) for _ in range(20))
    summary = summarize(result)
    assert summary["stalled_requests"] == [0, 1, 0, 0]
    assert summary["added_ttft_max_ms"] == 501.5
    assert summary["added_ttft_p95_clear_ms"] == 1.5
    assert missed(verdicts(summary)) == ["added TTFT p95"]
    assert missed(verdicts(summary, clear_of_stalls=True)) == []


def test_the_watcher_process_sees_the_machine_stand_still() -> None:
    """The real watcher process, frozen for 0.4 s (SIGSTOP, SIGCONT): to it, that is exactly a
    machine that stopped running it."""
    import os
    import signal
    import time

    stall_watch = StallWatch()
    stall_watch.start()
    try:
        assert stall_watch.process is not None
        frozen_at = time.perf_counter()
        os.kill(stall_watch.process.pid, signal.SIGSTOP)
        time.sleep(0.4)
        os.kill(stall_watch.process.pid, signal.SIGCONT)
        thawed_at = time.perf_counter()
    finally:
        stalls = stall_watch.stop()
    caught = [s for s in stalls if s.start < thawed_at and s.end > frozen_at]
    assert caught, f"the watcher saw no stall around the freeze: {stalls}"
    # All of the freeze but the first moments (the watcher may have just woken: one interval).
    frozen_ms = (thawed_at - frozen_at) * 1000
    assert overlap_ms(caught, frozen_at, thawed_at) >= frozen_ms - 20


def test_a_watcher_stopped_at_once_has_watched_and_one_closed_is_gone() -> None:
    """`start` returns once the watcher watches, so even a benchmark that fails on its first
    request stops it cleanly; `close` ends one that a failure left running."""
    stall_watch = StallWatch()
    stall_watch.start()
    assert stall_watch.stop() == []
    stall_watch.start()
    process = stall_watch.process
    stall_watch.close()
    assert process is not None and process.poll() is not None
    assert stall_watch.stop() == []


@pytest.mark.engines
async def test_a_signed_in_answer_streams_through_duet_in_accounts_mode(
    engine_settings: Settings, tmp_path: Path
) -> None:
    """Against the real engines: the path the benchmark measures with accounts on, through an
    accounts-mode app, gives Duet's stamps and every chunk for both engines."""
    database = tmp_path / "duet.sqlite3"
    create_account(database, "bench", "a password long enough")
    settings = replace(engine_settings, mode="accounts")
    app = create_app(settings, database=database)
    with serve_asgi(app) as url:
        token = sign_in(url, "bench", "a password long enough")
        signed_in = DuetUnderTest("signed_in", url, {"Cookie": f"{COOKIE}={token}"})
        async with bench_client() as client:
            for name in ("vllm", "ollama"):
                measured = await stream_through_duet(client, signed_in, name, 8)  # type: ignore[arg-type]
                assert measured.path == "signed_in"
                assert measured.chunks > 0, name
                assert measured.server_ttft_ms is not None and measured.before_engine_ms is not None
                assert added_ttft_ms(measured) is not None, name


@pytest.mark.engines
async def test_the_reference_relay_stamps_each_engines_first_text(
    engine_settings: Settings,
) -> None:
    """Against the real engines: the reference relay finds the read that holds the first text in
    both wire formats (vLLM's stream opens with an event that carries only the role), so the
    benchmark's engine time for it ends where the client's first token is."""
    relay = create_relay({"vllm": engine_settings.vllm_url, "ollama": engine_settings.ollama_url})
    with serve_asgi(relay) as url:
        via_relay = build_engines(
            replace(engine_settings, vllm_url=f"{url}/vllm", ollama_url=f"{url}/ollama")
        )
        try:
            async with aiohttp.ClientSession() as client:
                for name in ("vllm", "ollama"):
                    engine = via_relay[name]
                    measured = await stream_through_reference(engine, bench_request(8), client, url)
                    async with client.get(url + "/stamps") as response:
                        stamps = await response.json(content_type=None)
                    assert measured.chunks > 0, name
                    assert stamps["wire"] < stamps["first_bytes"] <= stamps["first_text"], name
                    assert measured.first_text_at is not None
                    assert stamps["first_text"] <= measured.first_text_at, name
                    assert measured.server_ttft_ms is not None and measured.server_ttft_ms > 0
        finally:
            for engine in via_relay.values():
                await engine.aclose()


def test_the_v1_path_reads_duets_own_spans_from_server_timing() -> None:
    header = (
        'duet;desc="receipt to engine request";dur=1.234, '
        'engine;desc="engine request to first token";dur=20.5'
    )
    assert server_timing_ms(header) == {"duet": 1.234, "engine": 20.5}
    assert server_timing_ms("") == {}


def test_the_v1_path_asks_for_the_same_answer_as_the_others() -> None:
    engines = build_engines(Settings(vllm_model="qwen3-duet-tiny"))
    body = api_body(engines["vllm"], bench_request(32))
    assert body["model"] == "vllm/qwen3-duet-tiny"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["seed"]) == (32, 0.0, 0, 0)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
