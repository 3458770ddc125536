"""The relay benchmark (`duet.bench`): its arithmetic on hand-made measurements, and the
reference relay's stamps against the real engines.

The benchmark itself runs against the real engines and prints numbers (docs/benchmarks/); these
tests only pin down how it pairs and summarises what it measured, and that the floor it measures
Duet against stamps the right moment.
"""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest
from app_server import serve_asgi
from duet.bench.relay import (
    EngineResult,
    Measured,
    added_ttft_ms,
    bench_request,
    mark_stalls,
    stream_through_reference,
    verdicts,
)
from duet.engines import build_engines
from duet.bench.reference_relay import create_relay
from duet.settings import Settings
from duet.bench.stall_watch import Stall, StallWatch, overlap_ms, watch


def direct(ttft: float, pre_wire: float, chunks: int = 3) -> Measured:
    return Measured("direct", ttft, chunks, (10.0, 10.0), pre_wire_ms=pre_wire)


def through_duet(
    ttft: float, server_ttft: float, chunks: int = 3, pre_wire: float = 1.0
) -> Measured:
    return Measured(
        "duet",
        ttft,
        chunks,
        (10.0, 10.5),
        server_ttft_ms=server_ttft,
        before_engine_ms=1.0,
        pre_wire_ms=pre_wire,
    )


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
    summary = result.summary()
    assert summary["requests"] == 3
    assert summary["client_pre_wire_p50_ms"] == 1.0
    assert summary["stalled_requests"] == [0, 0, 0]
    assert summary["added_ttft_p50_ms"] == 1.5
    assert summary["added_ttft_max_ms"] == 1.5
    assert summary["chunk_counts_identical"] is True
    assert summary["itl_p50_ratio"] == 1.025  # gaps of 10 ms direct; 10 and 10.5 through Duet
    assert verdicts(summary) == []

    result.duet[1] = through_duet(330.0, 300.0, chunks=2)
    missed = verdicts(result.summary())
    assert "chunk counts differ" in missed
    assert any(m.startswith("added TTFT p95") for m in missed)


def test_the_parts_of_duets_added_time_add_up_to_it() -> None:
    # Through Duet the client saw 3.5 ms beyond the engine: 1.6 ms until Duet received the POST
    # (1.0 of it the client's own time to send a form, against 0.4 ms for an engine's JSON),
    # 1.0 ms until the engine request left, 0.2 ms holding the first chunk and 0.7 ms for it to
    # reach the client.
    result = EngineResult("ollama")
    for engine_ms in (200.0, 210.0, 190.0):
        result.direct.append(direct(engine_ms + 0.4, 0.4))
        result.duet.append(
            Measured(
                "duet",
                engine_ms + 3.5,
                3,
                (10.0, 10.0),
                server_ttft_ms=engine_ms,
                before_engine_ms=1.0,
                first_chunk_held_ms=0.2,
                request_in_ms=1.6,
                first_chunk_out_ms=0.7,
                pre_wire_ms=1.0,
                server_itl_ms=(10.0, 10.0, 11.0),
            )
        )
    summary = result.summary()
    assert summary["added_ttft_p50_ms"] == 2.5
    assert summary["request_in_p50_ms"] == 0.6
    parts = ("request_in", "before_engine", "first_chunk_held", "first_chunk_out")
    assert round(sum(summary[f"{part}_p50_ms"] for part in parts), 3) == 2.5
    # The gaps left Duet as they came in (10 ms p50 on both sides).
    assert summary["itl_p50_ratio_across_duet"] == 1.0


def test_the_watcher_notes_only_wake_ups_that_came_far_too_late() -> None:
    # A clock that moves as scripted: the watcher asks for 5 ms and wakes 5.2 ms, 30 ms (the
    # scheduler, busy cores) and 405 ms (the machine stood still) after its previous wake-up.
    readings = iter([0.0, 0.0052, 0.0352, 0.4402, 0.4452])
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
    summary = result.summary()
    assert summary["stalled_requests"] == [0, 1, 0]
    assert summary["added_ttft_max_ms"] == 501.5
    assert summary["added_ttft_p95_clear_ms"] == 1.5
    assert any(m.startswith("added TTFT p95") for m in verdicts(summary))
    assert verdicts(summary, clear_of_stalls=True) == []


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
        time.sleep(1.0)  # its interpreter starts and begins to watch
        frozen_at = time.perf_counter()
        os.kill(stall_watch.process.pid, signal.SIGSTOP)
        time.sleep(0.4)
        os.kill(stall_watch.process.pid, signal.SIGCONT)
        thawed_at = time.perf_counter()
        time.sleep(0.2)
    finally:
        stalls = stall_watch.stop()
    caught = [s for s in stalls if s.start < thawed_at and s.end > frozen_at]
    assert caught, f"the watcher saw no stall around the freeze: {stalls}"
    # All of the freeze but the first moments (the watcher may have just woken: one interval).
    frozen_ms = (thawed_at - frozen_at) * 1000
    assert overlap_ms(caught, frozen_at, thawed_at) >= frozen_ms - 20


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
