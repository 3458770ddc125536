"""The plots of a `duet bench load` run, with matplotlib, every series overlaid.

One colour per engine route, a solid line straight to the engine and a dashed one through
Duet; each point is the median of its repeats, its bar the lowest to the highest repeat.

- ttft:       TTFT p50 and p99 against the load (two panels, log scale)
- tpot:       TPOT p50 against the load
- throughput: output tokens/s against the load
- per_user:   one user's tokens/s (1 / TPOT p50) against the total output tokens/s, each
              point labelled with its load: the trade-off a sweep walks along
Each is written as PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

# Figures made directly, not through pyplot: no display, no global state, on any server.
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from duet.bench.load_report import PointResult
from duet.engines.routes import ROUTE_NAMES

PATH_STYLES = {"direct": "-", "duet": "--"}
PATH_WORDS = {"direct": "straight", "duet": "through Duet"}


def route_colour(route: str) -> str:
    """One colour per engine route, the same in every plot: matplotlib's cycle (C0 blue, C1
    orange, ...) in the order the registry lists the routes."""
    return f"C{ROUTE_NAMES.index(route) % 10}" if route in ROUTE_NAMES else "C9"


def series_label(result: PointResult) -> str:
    return f"{result.series.route}, {PATH_WORDS[result.series.path]}"


def by_series(results: Sequence[PointResult]) -> dict[str, list[PointResult]]:
    grouped: dict[str, list[PointResult]] = {}
    for result in results:
        grouped.setdefault(series_label(result), []).append(result)
    for points in grouped.values():
        points.sort(key=lambda r: r.point.x)
    return grouped


def x_label(results: Sequence[PointResult]) -> str:
    if any(r.point.rate is not None for r in results):
        return "request rate (requests/s)"
    return "concurrency (requests in flight)"


def plot_metric(axes: Axes, results: Sequence[PointResult], key: str, ylabel: str) -> None:
    """One line per series: the point medians of `key`, bars from the lowest to the highest
    repeat."""
    for label, points in by_series(results).items():
        shown = [p for p in points if key in p.spread]
        if not shown:
            continue
        xs = [p.point.x for p in shown]
        middle = [p.spread[key]["median"] for p in shown]
        low = [m - p.spread[key]["min"] for m, p in zip(middle, shown, strict=True)]
        high = [p.spread[key]["max"] - m for m, p in zip(middle, shown, strict=True)]
        first = shown[0].series
        axes.errorbar(
            xs,
            middle,
            yerr=[low, high],
            label=label,
            color=route_colour(first.route),
            linestyle=PATH_STYLES[first.path],
            marker="o",
            capsize=3,
        )
    axes.set_xlabel(x_label(results))
    loads = sorted({r.point.x for r in results})
    if all(r.point.rate is None for r in results) and loads and loads[0] > 0:
        # Concurrencies are usually powers of two: evenly spaced on a log-2 axis.
        axes.set_xscale("log", base=2)
    axes.set_xticks(loads, [f"{x:g}" for x in loads])
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")


def titled(figure: Figure, title: str, subtitle: str) -> Figure:
    figure.suptitle(f"{title}\n{subtitle}", fontsize="medium")
    figure.tight_layout()
    return figure


def ttft_figure(results: Sequence[PointResult], subtitle: str) -> Figure:
    figure = Figure(figsize=(11, 4.5))
    p50, p99 = figure.subplots(1, 2)
    plot_metric(p50, results, "median_ttft_ms", "TTFT p50 (ms)")
    p50.set_title("time to first token, median")
    plot_metric(p99, results, "p99_ttft_ms", "TTFT p99 (ms)")
    p99.set_title("time to first token, 99th percentile")
    for axes in (p50, p99):
        # A queue makes one engine's wait many times another's: both stay readable.
        axes.set_yscale("log")
    return titled(figure, "Time to first token under load", subtitle)


def single_figure(
    results: Sequence[PointResult], key: str, ylabel: str, title: str, subtitle: str
) -> Figure:
    figure = Figure(figsize=(6.5, 4.5))
    plot_metric(figure.subplots(), results, key, ylabel)
    return titled(figure, title, subtitle)


def per_user_figure(results: Sequence[PointResult], subtitle: str) -> Figure:
    figure = Figure(figsize=(6.5, 4.5))
    axes = figure.subplots()
    for label, points in by_series(results).items():
        shown = [
            p
            for p in points
            if p.medians.get("output_throughput") and p.medians.get("output_throughput_per_user")
        ]
        if not shown:
            continue
        first = shown[0].series
        xs = [p.medians["output_throughput"] for p in shown]
        ys = [p.medians["output_throughput_per_user"] for p in shown]
        axes.plot(
            xs,
            ys,
            label=label,
            color=route_colour(first.route),
            linestyle=PATH_STYLES[first.path],
            marker="o",
        )
        for x, y, p in zip(xs, ys, shown, strict=True):
            axes.annotate(f"{p.point.x:g}", (x, y), textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("total output tokens/s (all users)")
    axes.set_ylabel("tokens/s per user (1 / TPOT p50)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return titled(figure, "Per-user speed against total throughput", subtitle)


def figures(results: Sequence[PointResult], subtitle: str) -> dict[str, Figure]:
    """Every plot of the run, by file name stem."""
    return {
        "ttft": ttft_figure(results, subtitle),
        "tpot": single_figure(
            results, "median_tpot_ms", "TPOT p50 (ms)", "Time per output token", subtitle
        ),
        "throughput": single_figure(
            results, "output_throughput", "output tokens/s", "Output throughput", subtitle
        ),
        "per_user": per_user_figure(results, subtitle),
    }


def write_plots(results: Sequence[PointResult], subtitle: str, out: Path) -> list[Path]:
    """Each plot as PNG and SVG in `out`; the files written."""
    written = []
    for stem, figure in figures(results, subtitle).items():
        written += save_figure(figure, out, stem)
    return written


def save_figure(figure: Figure, out: Path, stem: str) -> list[Path]:
    """The figure as `stem`.png and `stem`.svg in `out`; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in ("png", "svg"):
        path = out / f"{stem}.{suffix}"
        # No date in the SVG's metadata: the same run draws the same file. Its text stays
        # text (not glyph outlines): smaller, searchable, and readable by a test.
        metadata = {"Date": None} if suffix == "svg" else {}
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            figure.savefig(path, dpi=110, metadata=metadata)
        written.append(path)
    return written
