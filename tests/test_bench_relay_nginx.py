"""`duet bench relay`'s paths through nginx, on Debian's nginx and the real engines, at a small
size: the benchmark's own verdicts find the buffering variant merging chunks and the shipped
site passing them apart.

The run is the benchmark's (`measure_run`): a `duet serve` of its own, nginx in front of it
twice (`duet.bench.nginx`: the shipped site, and buffering on with Duet's X-Accel-Buffering
ignored), the same request on each path in rotating rounds. Only the paths these verdicts need
are run (no reference relay, no /v1), with Ollama, a few short answers: the layer checks of
`duet.bench.summary` read each request's hop as Duet does (`compare_hops`, from Duet's writes
to this client), so a buffering proxy, which merges every stream, is caught in every request.
"""

from __future__ import annotations

import pytest
from duet.bench.measured import PathName
from duet.bench.relay import Rounds, measure_run
from duet.bench.report import report_lines
from duet.bench.summary import NGINX_BUFFERING_LAYER, NGINX_LAYER, layer_checks, summarize
from duet.engines import build_engines
from duet.settings import Settings

PATHS: tuple[PathName, ...] = ("direct", "duet", "nginx", "nginx_buffering")
# Two rounds: a buffering proxy merges both requests, a stall of the machine at most one, which
# the layer's verdict (at most half merged) lets through. No warm-up: connecting first does not
# touch the gaps between chunks. Answers long enough for Duet's burst verdict (it needs a few
# gaps), short enough to stay cheap.
ROUNDS = Rounds(requests=2, warmup=0)
MAX_TOKENS = 16


@pytest.mark.engines
def test_the_benchmark_finds_buffering_nginx_merging_chunks_and_the_shipped_site_not(
    engine_settings: Settings,
) -> None:
    run = measure_run(
        engine_settings, build_engines(engine_settings), ["ollama"], ROUNDS, MAX_TOKENS, PATHS
    )
    summary = summarize(run.results[0])
    report = "\n".join(report_lines(run, [summary]))
    assert run.paths == PATHS, report
    assert summary["requests"] == ROUNDS.requests, report

    shipped = layer_checks(summary, NGINX_LAYER)
    assert [check.met for check in shipped] == [True, True], report

    buffering = layer_checks(summary, NGINX_BUFFERING_LAYER)
    # Chunks merged in every request, and ITL fell across the hop.
    assert [check.met for check in buffering] == [False, False], report
    assert summary["nginx_buffering_merged_requests"] == ROUNDS.requests, report
    # Nothing is lost on the way: every chunk Duet wrote reached the client, merged or not.
    assert summary["nginx_buffering_chunk_counts_differing"] == 0, report
    assert summary["nginx_chunk_counts_differing"] == 0, report
    assert "nginx (buffering): ALTERED: chunks apart, ITL not falling" in report
