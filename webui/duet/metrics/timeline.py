"""The token-arrival timeline: where each chunk landed in time, at the server and in the browser.

One tick per text-carrying chunk, on one row per hop, all answers of a run on the same time scale
so columns can be compared by eye. A steady stream is an even comb; a buffering hop shows as
clumps of ticks with empty stretches between them on the browser row only. The geometry is worked
out here and drawn as SVG by templates/_timeline.html.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from duet.metrics.answers import chunk_arrivals
from duet.metrics.stream import ChunkArrival
from duet.store.messages import Arrival
from duet.store.runs import CompareAnswer

WIDTH = 600
LABEL_WIDTH = 64
ROW_HEIGHT = 18
ROW_GAP = 6
AXIS_HEIGHT = 14


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    kind: str  # "reasoning" | "answer"
    ms: float


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    y: float
    ticks: tuple[Tick, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: int
    plot_left: int
    plot_right: int
    scale_ms: float
    rows: tuple[Row, ...]

    @property
    def tick_count(self) -> int:
        return sum(len(row.ticks) for row in self.rows)

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


def build_timeline(answer: CompareAnswer, scale_ms: float | None = None) -> Timeline:
    hops: list[tuple[str, Sequence[Arrival]]] = [("server", answer.server_arrivals)]
    if answer.browser_arrivals is not None:
        hops.append(("browser", answer.browser_arrivals))
    scale = scale_ms if scale_ms is not None else scale_for([answer])
    plot_right = WIDTH - 4
    span = plot_right - LABEL_WIDTH
    rows = []
    for index, (label, stored) in enumerate(hops):
        ticks = tuple(
            Tick(
                x=round(LABEL_WIDTH + span * min(arrival.at * 1000 / scale, 1.0), 2),
                kind=arrival.kind,
                ms=round(arrival.at * 1000, 1),
            )
            for arrival in one_per_chunk(stored)
        )
        rows.append(Row(label=label, y=index * (ROW_HEIGHT + ROW_GAP), ticks=ticks))
    height = len(rows) * (ROW_HEIGHT + ROW_GAP) + AXIS_HEIGHT
    return Timeline(WIDTH, height, LABEL_WIDTH, plot_right, scale, tuple(rows))


def one_per_chunk(stored: Sequence[Arrival]) -> list[ChunkArrival]:
    """A chunk holding reasoning and answer text is drawn once, as answer, at its first stamp."""
    by_chunk: dict[int, ChunkArrival] = {}
    for arrival in chunk_arrivals(stored):
        seen = by_chunk.get(arrival.chunk)
        if seen is None or (arrival.kind == "answer" and seen.kind != "answer"):
            at = arrival.at if seen is None else min(seen.at, arrival.at)
            by_chunk[arrival.chunk] = ChunkArrival(at=at, kind=arrival.kind, chunk=arrival.chunk)
    return list(by_chunk.values())
