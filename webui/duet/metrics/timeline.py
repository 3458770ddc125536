"""The token-arrival timeline: where each chunk landed in time, at the server and in the browser.

One tick per text-carrying chunk, on one row per hop, all answers of a run on the same time scale
so columns can be compared by eye. A steady stream is an even comb; a buffering hop shows as
clumps of ticks with empty stretches between them on the browser row only. The geometry is worked
out here and drawn as SVG by templates/_timeline.html.

Chunks that arrive together draw one line however many they are, so a clump is also marked as a
*burst*: consecutive chunks whose gaps are all collapsed, by the threshold the hop verdict uses
(`HopComparison.collapsed_gap_s`, docs/metrics.md "Bursts"), on each row. The marks show every
collapsed gap the verdict counts: a buffering hop marks most of the browser row and few of the
server row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from duet.metrics.answers import chunk_arrivals
from duet.metrics.stream import ChunkArrival
from duet.store.messages import Arrival
from duet.store.runs import CompareAnswer

WIDTH = 600
LABEL_WIDTH = 64
PLOT_RIGHT = WIDTH - 4
ROW_HEIGHT = 18
ROW_GAP = 6
AXIS_HEIGHT = 14
# A burst's chunks can share one x: its mark is at least this wide, so it stays visible.
BURST_MIN_WIDTH = 10.0


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    kind: str  # "reasoning" | "answer"
    ms: float


@dataclass(frozen=True, slots=True)
class Burst:
    """Consecutive chunks of one row that arrived with every gap between them collapsed."""

    x: float  # left edge of its mark
    width: float
    chunks: int
    first_ms: float
    span_ms: float  # its first chunk to its last


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    y: float
    ticks: tuple[Tick, ...]
    bursts: tuple[Burst, ...] = ()

    @property
    def burst_chunks(self) -> int:
        """How many of the row's chunks arrived in a burst."""
        return sum(burst.chunks for burst in self.bursts)


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: int
    plot_left: int
    plot_right: int
    scale_ms: float
    rows: tuple[Row, ...]

    burst_gap_ms: float | None = None  # gaps under this were collapsed; None: not judged

    @property
    def tick_count(self) -> int:
        return sum(len(row.ticks) for row in self.rows)

    @property
    def has_bursts(self) -> bool:
        return any(row.bursts for row in self.rows)

    @property
    def plot_width(self) -> int:
        """The width of the part where ticks go (labels and axis are drawn beside it)."""
        return self.plot_right - self.plot_left

    @property
    def rows_height(self) -> int:
        return len(self.rows) * (ROW_HEIGHT + ROW_GAP)


def scale_for(answers: Iterable[CompareAnswer]) -> float:
    """The time span that fits every answer's last chunk, at both hops (at least 1 ms)."""
    last = 1.0
    for answer in answers:
        for stored in (answer.server_arrivals, answer.browser_arrivals or []):
            last = max(last, *(entry[0] for entry in stored if entry[3] > 0), 0.0)
    return last


def build_timeline(
    answer: CompareAnswer, scale_ms: float | None = None, burst_gap_s: float | None = None
) -> Timeline:
    """The answer's timeline on `scale_ms` (its own span when None), with bursts marked where
    gaps are shorter than `burst_gap_s` (none marked when None)."""
    hops: list[tuple[str, Sequence[Arrival]]] = [("server", answer.server_arrivals)]
    if answer.browser_arrivals is not None:
        hops.append(("browser", answer.browser_arrivals))
    scale = scale_ms if scale_ms is not None else scale_for([answer])
    span = PLOT_RIGHT - LABEL_WIDTH
    rows = []
    for index, (label, stored) in enumerate(hops):
        arrivals = one_per_chunk(stored)
        ticks = tuple(
            Tick(
                x=round(LABEL_WIDTH + span * min(arrival.at * 1000 / scale, 1.0), 2),
                kind=arrival.kind,
                ms=round(arrival.at * 1000, 1),
            )
            for arrival in arrivals
        )
        bursts = () if burst_gap_s is None else bursts_of(arrivals, ticks, burst_gap_s)
        rows.append(Row(label, index * (ROW_HEIGHT + ROW_GAP), ticks, bursts))
    height = len(rows) * (ROW_HEIGHT + ROW_GAP) + AXIS_HEIGHT
    gap_ms = None if burst_gap_s is None else burst_gap_s * 1000
    return Timeline(WIDTH, height, LABEL_WIDTH, PLOT_RIGHT, scale, tuple(rows), gap_ms)


def bursts_of(
    arrivals: Sequence[ChunkArrival], ticks: Sequence[Tick], gap_s: float
) -> tuple[Burst, ...]:
    """Runs of two or more chunks, in arrival order, each less than `gap_s` after the one
    before (`collapsed_fraction`'s test); `ticks[i]` is where `arrivals[i]` is drawn."""
    groups: list[list[tuple[float, Tick]]] = []
    for at, tick in sorted(zip((a.at for a in arrivals), ticks, strict=True), key=itemgetter(0)):
        if groups and at - groups[-1][-1][0] < gap_s:
            groups[-1].append((at, tick))
        else:
            groups.append([(at, tick)])
    return tuple(_burst(group) for group in groups if len(group) > 1)


def _burst(group: Sequence[tuple[float, Tick]]) -> Burst:
    (first_at, first), (last_at, last) = group[0], group[-1]
    width = max(last.x - first.x, BURST_MIN_WIDTH)
    centre = (first.x + last.x) / 2
    # Kept inside the plot: a burst at either end still shows its whole mark.
    left = min(max(centre - width / 2, LABEL_WIDTH), PLOT_RIGHT - width)
    return Burst(
        x=round(left, 2),
        width=round(width, 2),
        chunks=len(group),
        first_ms=first.ms,
        span_ms=round((last_at - first_at) * 1000, 1),
    )


def one_per_chunk(stored: Sequence[Arrival]) -> list[ChunkArrival]:
    """A chunk holding reasoning and answer text is drawn once, as answer, at its first stamp."""
    by_chunk: dict[int, ChunkArrival] = {}
    for arrival in chunk_arrivals(stored):
        seen = by_chunk.get(arrival.chunk)
        if seen is None or (arrival.kind == "answer" and seen.kind != "answer"):
            at = arrival.at if seen is None else min(seen.at, arrival.at)
            by_chunk[arrival.chunk] = ChunkArrival(at=at, kind=arrival.kind, chunk=arrival.chunk)
    return list(by_chunk.values())
