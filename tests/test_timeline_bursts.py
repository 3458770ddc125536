"""The timeline's burst marks (metrics/timeline.py): runs of chunks whose gaps collapsed, by the
same test the hop verdict applies (a gap shorter than the threshold), marked on each row."""

from __future__ import annotations

from itertools import pairwise

from duet.metrics.stream import ChunkArrival, collapsed_fraction
from duet.metrics.timeline import BURST_MIN_WIDTH, LABEL_WIDTH, PLOT_RIGHT, Tick, bursts_of

GAP_S = 0.002


def row(times_ms: list[float], scale_ms: float = 300.0) -> tuple[list[ChunkArrival], list[Tick]]:
    arrivals = [
        ChunkArrival(at=ms / 1000, kind="answer", chunk=number)
        for number, ms in enumerate(times_ms, start=1)
    ]
    span = PLOT_RIGHT - LABEL_WIDTH
    ticks = [Tick(x=LABEL_WIDTH + span * ms / scale_ms, kind="answer", ms=ms) for ms in times_ms]
    return arrivals, ticks


def test_two_clumps_are_two_bursts_and_a_steady_row_has_none() -> None:
    clumps = [145.0, 145.2, 145.4, 205.0, 205.2, 205.4]
    bursts = bursts_of(*row(clumps), GAP_S)
    assert [burst.chunks for burst in bursts] == [3, 3]
    assert [burst.first_ms for burst in bursts] == [145.0, 205.0]
    assert [burst.span_ms for burst in bursts] == [0.4, 0.4]
    # Chunks drawn on one line still get a mark wide enough to see.
    assert all(burst.width == BURST_MIN_WIDTH for burst in bursts)
    assert bursts_of(*row([100.0 + 20 * i for i in range(6)]), GAP_S) == ()


def test_the_marks_hold_every_gap_the_verdict_counts_as_collapsed() -> None:
    # A gap of exactly the threshold is not collapsed, for the verdict nor for the marks.
    times = [10.0, 10.5, 12.5, 40.0, 41.0, 41.9, 80.0]
    bursts = bursts_of(*row(times), GAP_S)
    gaps = [(later - earlier) / 1000 for earlier, later in pairwise(times)]
    collapsed = collapsed_fraction(gaps, GAP_S)
    assert collapsed is not None
    # A burst of n chunks holds n - 1 collapsed gaps.
    assert sum(burst.chunks - 1 for burst in bursts) == round(collapsed * len(gaps))
    assert [burst.chunks for burst in bursts] == [2, 3]


def test_a_burst_at_either_end_stays_inside_the_plot() -> None:
    for times in ([0.0, 0.1, 0.2], [299.8, 299.9, 300.0]):
        (burst,) = bursts_of(*row(times), GAP_S)
        assert burst.x >= LABEL_WIDTH and burst.x + burst.width <= PLOT_RIGHT + 1e-9
