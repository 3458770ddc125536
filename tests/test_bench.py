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
from duet.bench import (
    EngineResult,
    Measured,
    added_ttft_ms,
    bench_request,
    stream_through_reference,
    verdicts,
)
from duet.engines import build_engines
from duet.reference_relay import create_relay
from duet.settings import Settings


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
    # The engine's TTFT swings from 30 to 300 ms, and the client once stalls for 80 ms before
    # its requests leave; what Duet adds stays at 1.5 ms (the stall is the client's own).
    for engine_ms, pre_wire in ((30.0, 1.0), (300.0, 80.0), (45.0, 1.0)):
        result.direct.append(direct(engine_ms + pre_wire, pre_wire))
        result.duet.append(through_duet(engine_ms + pre_wire + 1.5, engine_ms, pre_wire=pre_wire))
    summary = result.summary()
    assert summary["requests"] == 3
    assert summary["client_pre_wire_p50_ms"] == 1.0
    assert summary["client_stalls"] == 1
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
