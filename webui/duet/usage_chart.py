"""The admin page's chart: completion tokens per day, stacked, one series per user and engine.

`build_chart` computes the geometry; the template `_usage_chart.html` draws it as an SVG inside
the page. That needs nothing the Content-Security-Policy forbids: SVG presentation attributes
(`fill`, `stroke`) are not inline style, and each bar's tooltip is its own `<title>`. Each bar's
element id names its series and day (`bar-<series>-<YYYY-MM-DD>`, series numbered in legend
order).

Not matplotlib, though it was tried: one render of this chart cost about 0.35 s of CPU after a
2 s import, and the dependency brings numpy, Pillow and fonttools into the web UI's image. On a
box whose engines share the CPU, that time is taken from them, and, in a worker thread, the GIL
from the event loop that streams answers, whose timing Duet exists to report. The chart is a
few dozen rectangles.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from duet.store import api_usage
from duet.store.api_usage import DailyUsage

# Okabe and Ito's palette, told apart with most kinds of colour blindness; cycled past eight.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 8, 24  # margins: the y labels on the left, dates below
Y_TICKS = 4
DATE_LABELS = 8

Series = tuple[str, str]  # (user name, engine)


@dataclass(frozen=True, slots=True)
class Bar:
    series: int
    day: str  # YYYY-MM-DD
    tokens: int
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # x for a date, y for a token count
    label: str


@dataclass(frozen=True, slots=True)
class LegendEntry:
    label: str
    color: str
    tokens: int  # over the chart's days


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    legend: tuple[LegendEntry, ...]
    first_day: str
    last_day: str

    @property
    def empty(self) -> bool:
        return not self.bars


def series_label(series: Series, labels: Mapping[str, str]) -> str:
    user_name, engine = series
    return f"{user_name} · {labels.get(engine, engine)}"


def tokens_by_series(rows: Sequence[DailyUsage], days: Sequence[date]) -> dict[Series, list[int]]:
    """Completion tokens per series and day (0 where it had none), series in name order."""
    position = {day.isoformat(): index for index, day in enumerate(days)}
    found: dict[Series, list[int]] = {}
    for row in rows:
        if row.day in position:
            series = found.setdefault((row.user_name, row.engine), [0] * len(days))
            series[position[row.day]] += row.completion_tokens
    return dict(sorted(found.items(), key=lambda item: (item[0][0].lower(), item[0][1])))


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2, 2.5 or 5 times a power of ten, times Y_TICKS, at or above `value`:
    the top of the chart, so that every tick is a round number."""
    step = max(value, 1) / Y_TICKS
    power = 10 ** math.floor(math.log10(step))
    multiple = next(m for m in (1, 2, 2.5, 5, 10) if m * power >= step)
    # Whole tokens: a tick step below 1 (a chart of a few tokens) becomes 1.
    return math.ceil(multiple * power) * Y_TICKS


def build_chart(
    rows: Sequence[DailyUsage], first_day: date, day_count: int, labels: Mapping[str, str]
) -> Chart:
    """The chart of `day_count` UTC days from `first_day`; `labels` names the engines."""
    days = [first_day + timedelta(days=offset) for offset in range(day_count)]
    by_series = tokens_by_series(rows, days)
    totals = [sum(tokens[index] for tokens in by_series.values()) for index in range(day_count)]
    top_value = nice_ceiling(max(totals, default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / day_count
    scale = plot_height / top_value
    bars = []
    stacked = [0] * day_count
    for number, (series, tokens) in enumerate(by_series.items()):
        color = PALETTE[number % len(PALETTE)]
        label = series_label(series, labels)
        for index, count in enumerate(tokens):
            if not count:
                continue
            base = HEIGHT - BOTTOM - stacked[index] * scale
            bars.append(
                Bar(
                    series=number,
                    day=days[index].isoformat(),
                    tokens=count,
                    x=round(LEFT + index * slot + slot * 0.1, 2),
                    y=round(base - count * scale, 2),
                    width=round(slot * 0.8, 2),
                    height=round(count * scale, 2),
                    color=color,
                    title=f"{label}, {days[index].isoformat()}: {count:,} tokens",
                )
            )
            stacked[index] += count
    every = max(1, math.ceil(day_count / DATE_LABELS))
    x_ticks = tuple(
        Tick(round(LEFT + (index + 0.5) * slot, 2), days[index].strftime("%b %d"))
        for index in range(0, day_count, every)
    )
    y_ticks = tuple(
        Tick(
            round(HEIGHT - BOTTOM - step * plot_height / Y_TICKS, 2),
            f"{step * top_value // Y_TICKS:,}",
        )
        for step in range(Y_TICKS + 1)
    )
    legend = tuple(
        LegendEntry(series_label(series, labels), PALETTE[number % len(PALETTE)], sum(tokens))
        for number, (series, tokens) in enumerate(by_series.items())
    )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        bars=tuple(bars),
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        legend=legend,
        first_day=days[0].isoformat(),
        last_day=days[-1].isoformat(),
    )


def chart_of_days(db: sqlite3.Connection, today: date, day_count: int) -> Chart:
    """The chart of the `day_count` UTC days up to `today`, from the stored requests."""
    first_day = today - timedelta(days=day_count - 1)
    rows = api_usage.daily_usage(db, first_day.isoformat())
    return build_chart(rows, first_day, day_count, {})
