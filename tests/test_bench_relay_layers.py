"""The layers `duet bench relay` measures in front of Duet or of an engine (nginx as shipped and
buffering, Open WebUI): their rows, their checks, the run's paths, and how the benchmark asks
Open WebUI and writes nginx's site. Pure functions over made-up requests; the same checks on
real nginx are tests/test_bench_relay_nginx.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from duet.bench import open_webui
from duet.bench.measured import EngineResult, Measured, PathName, Run
from duet.bench.nginx import SITE, VARIANTS, Box, NginxError, site_for
from duet.bench.relay import bench_request, paths_of_engine, run_setting
from duet.bench.report import report_lines, summary_document
from duet.bench.summary import (
    NGINX_BUFFERING_LAYER,
    NGINX_LAYER,
    OPEN_WEBUI_LAYER,
    format_table,
    layer_checks,
    summarize,
)
from duet.engines import build_engines
from duet.settings import Settings

WRITTEN_GAPS = (30.0, 30.0, 30.0, 30.0)


def through(
    path: PathName, *, merged: bool | None = None, chunks: int = 5, ttft: float = 40.0
) -> Measured:
    """A request on `path`; with `merged` set, through Duet's web UI path (its write stamps
    and Duet's verdict on the hop from them to this client)."""
    stamped = merged is not None
    gaps = (0.1, 0.1, 0.1, 90.0) if merged else WRITTEN_GAPS
    return Measured(
        path,
        ttft,
        chunks,
        gaps,
        server_ttft_ms=30.0 if stamped else None,
        pre_wire_ms=1.0,
        written_itl_ms=WRITTEN_GAPS if stamped else (),
        collapsed_share=(0.75 if merged else 0.0) if stamped else None,
        written_collapsed_share=0.0 if stamped else None,
        merged=merged,
    )


def run_through(nginx: list[bool], buffering: list[bool]) -> EngineResult:
    """Ollama's requests on every path, with nginx's and the buffering nginx's merged or not."""
    paths: tuple[PathName, ...] = ("direct", "duet", "nginx", "nginx_buffering", "open_webui")
    result = EngineResult("ollama", paths=paths)
    for shipped, buffered in zip(nginx, buffering, strict=True):
        result.direct.append(through("direct"))
        result.duet.append(through("duet", merged=False))
        result.nginx.append(through("nginx", merged=shipped))
        result.nginx_buffering.append(through("nginx_buffering", merged=buffered, ttft=300.0))
        result.open_webui.append(through("open_webui", ttft=60.0))
    return result


def outcomes(summary: dict, layer: object) -> list[bool]:
    return [check.met for check in layer_checks(summary, layer)]  # type: ignore[arg-type]


def test_a_layer_that_merges_every_request_is_caught_and_one_that_passes_them_is_not() -> None:
    summary = summarize(run_through(nginx=[False, False], buffering=[True, True]))
    assert outcomes(summary, NGINX_LAYER) == [True, True]
    assert outcomes(summary, NGINX_BUFFERING_LAYER) == [False, False]
    assert summary["nginx_buffering_merged_requests"] == 2
    assert summary["nginx_buffering_itl_p50_ratio_client_to_writes"] < 0.5
    # What the buffering layer adds: its TTFT over Duet's, by Duet's own stamps and unpaired.
    assert summary["nginx_buffering_added_over_beneath_p50_ms"] == 260.0
    assert summary["nginx_buffering_ttft_p50_over_beneath_ms"] == 260.0
    assert summary["nginx_added_over_beneath_p50_ms"] == 0.0


def test_a_stall_merging_one_request_of_two_does_not_make_a_layer_buffer() -> None:
    summary = summarize(run_through(nginx=[True, False], buffering=[True, True]))
    assert outcomes(summary, NGINX_LAYER)[0] is True
    summary = summarize(run_through(nginx=[True, True, False], buffering=[True] * 3))
    assert outcomes(summary, NGINX_LAYER)[0] is False


def test_open_webui_is_judged_against_the_direct_requests_of_the_same_rounds() -> None:
    result = run_through(nginx=[False, False], buffering=[True, True])
    summary = summarize(result)
    assert outcomes(summary, OPEN_WEBUI_LAYER) == [True, True]
    assert summary["open_webui_ttft_p50_over_beneath_ms"] == 20.0
    assert "open_webui_merged_requests" not in summary  # it gives no stamps to judge by
    # Chunks merged on the way show as fewer chunks than the direct request's.
    result.open_webui[:] = [through("open_webui", chunks=2), through("open_webui", chunks=2)]
    assert outcomes(summarize(result), OPEN_WEBUI_LAYER)[0] is False


def test_a_path_only_one_engine_went_shows_n_a_for_the_other() -> None:
    ollama = summarize(run_through(nginx=[False], buffering=[True]))
    vllm = {key: value for key, value in ollama.items() if not key.startswith("open_webui")}
    table = format_table([{**vllm, "engine": "vllm"}, ollama]).splitlines()
    row = next(line for line in table if line.startswith("TTFT p50 through Open WebUI"))
    assert row.split()[-2:] == ["n/a", "60.00"]


def test_the_runs_paths_and_open_webui_goes_to_ollama_only() -> None:
    assert run_setting(accounts=False, nginx=True, open_webui=False) == (
        "direct", "duet", "reference", "api", "nginx", "nginx_buffering",
    )  # fmt: skip
    every = run_setting(accounts=True, nginx=True, open_webui=True)
    assert every[-1] == "open_webui" and "signed_in" in every
    assert run_setting(accounts=False, nginx=False, open_webui=False) == (
        "direct", "duet", "reference", "api",
    )  # fmt: skip
    assert "open_webui" in paths_of_engine("ollama", every)
    assert "open_webui" not in paths_of_engine("vllm", every)


def test_open_webui_is_asked_for_the_same_answer_as_ollama_is() -> None:
    ollama = build_engines(Settings(ollama_model="qwen3-duet-tiny"))["ollama"]
    payload = ollama.payload(bench_request(32))  # type: ignore[attr-defined]
    body = open_webui.chat_body(payload)
    assert body["model"] == "qwen3-duet-tiny:latest"
    assert body["stream"] is True
    assert body["messages"] == payload["messages"]
    # Sampling goes in `params`, which Open WebUI hands back to Ollama as its options.
    assert body["params"] == {**payload["options"], "think": False}
    assert (body["params"]["num_predict"], body["params"]["temperature"]) == (32, 0.0)
    assert open_webui.model_name("qwen3:8b") == "qwen3:8b"


def test_each_nginx_variant_changes_only_its_buffering_line() -> None:
    box = Box(8081, 8443, 8880, Path("/c.crt"), Path("/c.key"))
    sites = {variant: site_for(box, variant, SITE.read_text()) for variant in VARIANTS}
    assert "proxy_buffering off;" in sites["shipped"]
    assert "server 127.0.0.1:8081;" in sites["shipped"]
    assert "listen 127.0.0.1:8443 ssl;" in sites["shipped"]
    assert "proxy_buffering on;" in sites["header_only"]
    assert "X-Accel-Buffering" not in sites["header_only"].split("proxy_buffering on;")[1][:80]
    assert "proxy_ignore_headers X-Accel-Buffering;" in sites["buffering"]
    shipped_lines = set(sites["shipped"].splitlines())
    for variant in ("header_only", "buffering"):
        changed = set(sites[variant].splitlines()) - shipped_lines
        assert all("proxy_" in line for line in changed), changed


def test_a_site_file_of_another_shape_is_refused_not_run_half_changed() -> None:
    box = Box(8081, 8443, 8880, Path("/c.crt"), Path("/c.key"))
    with pytest.raises(NginxError, match="occurs 0 times"):
        site_for(box, "shipped", SITE.read_text().replace("proxy_buffering off;", ""))


def test_the_report_and_the_summary_say_what_each_layer_did() -> None:
    result = run_through(nginx=[False, False], buffering=[True, True])
    run = Run(
        command="duet bench relay --open-webui http://127.0.0.1:8090",
        date="2026-12-01T19:00:00+0000",
        machine="a test",
        load_before=(1.0, 1.0, 1.0),
        load_after=(1.0, 1.0, 1.0),
        prompt="Tell me",
        max_tokens=16,
        requests=2,
        warmup_rounds=0,
        stalls=(),
        results=(replace(result, engine="ollama"),),
        workdir=Path("/tmp"),
        paths=result.paths,
    )
    summaries = [summarize(result)]
    lines = report_lines(run, summaries)
    assert "ollama through nginx (shipped site): stream passed on as written" in lines
    assert "ollama through nginx (buffering): ALTERED: chunks apart, ITL not falling" in lines
    assert "ollama through Open WebUI: stream passed on as written" in lines
    verdicts = summary_document(run, summaries)["engines"][0]["verdicts"]
    assert [check["met"] for check in verdicts["nginx_buffering_layer"]] == [False, False]
    assert [check["met"] for check in verdicts["open_webui_layer"]] == [True, True]
